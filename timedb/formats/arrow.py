"""application/vnd.apache.arrow.stream values answers: an Arrow IPC stream with typed columns.

PostgreSQL prints the rows as CSV (CopyStream, Printed.TYPED: timestamps as UTC wall times),
pyarrow parses each block in C and writes it as one record batch: no Python object per row.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.json as pjson

from timedb import media_types
from timedb.db.read_query import Mode
from timedb.db.values_copy import TIMESTAMPS, CopyStream
from timedb.formats.json import dump, series_list

# rows in the first record batch (answers up to this size go out as plain responses, as
# JSON's do), then in each further one
FIRST_ROWS = 5000
BATCH_ROWS = 32768

_TAGS = pa.list_(pa.utf8())
_TAGS_SCHEMA = pa.schema([("t", _TAGS)])
# columns other than timestamps: (type in the answer, nullable)
_TYPES: dict[str, tuple[pa.DataType, bool]] = {
    "series_id": (pa.int64(), False),
    "value": (pa.float64(), True),
    "changed_by": (pa.utf8(), True),
    "annotation": (pa.utf8(), True),
    "tags": (_TAGS, True),
    "batch_id": (pa.int64(), True),
    "inserted_by": (pa.utf8(), True),
}
_NULLABLE_TIMES = {"valid_time_end"}


def schema(names: tuple[str, ...], tz: str, metadata: dict[str, str]) -> pa.Schema:
    """The answer's schema: timestamps in microseconds, labelled with the zone tz."""
    fields = [
        pa.field(n, pa.timestamp("us", tz=tz), nullable=n in _NULLABLE_TIMES)
        if n in TIMESTAMPS
        else pa.field(n, _TYPES[n][0], nullable=_TYPES[n][1])
        for n in names
    ]
    return pa.schema(fields, metadata=metadata)


def _parsed_type(field: pa.Field) -> pa.DataType:
    """The type pyarrow.csv parses a column into (converted after)."""
    if pa.types.is_timestamp(field.type):
        return pa.timestamp("us")  # a UTC wall time: its value is the instant's
    if field.type == _TAGS:
        return pa.utf8()  # a JSON array
    return field.type


def _tags(texts: pa.Array) -> pa.Array:
    """JSON arrays of strings (or nulls) -> list<utf8>, parsed by pyarrow's JSON reader in one go."""
    if texts.null_count == len(texts):
        return pa.nulls(len(texts), _TAGS)
    lines = pc.binary_join_element_wise('{"t":', pc.coalesce(texts, "null"), "}", "")
    document = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")
    ndjson = document[0].as_buffer()
    table = pjson.read_json(
        pa.BufferReader(ndjson),
        read_options=pjson.ReadOptions(use_threads=False, block_size=ndjson.size + 1),
        parse_options=pjson.ParseOptions(explicit_schema=_TAGS_SCHEMA),
    )
    return table.column("t").combine_chunks()


class _Sink:
    """Where the IPC writer puts its bytes until the body takes them."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class ArrowBody:
    """An Arrow IPC stream from a CopyStream opened with Printed.TYPED: the schema, one
    record batch per block of rows, the end-of-stream marker."""

    media_type = media_types.ARROW

    def __init__(
        self, stream: CopyStream, mode: Mode, tz: str | None = None, series: list[dict[str, Any]] | None = None
    ) -> None:
        self.stream = stream
        metadata = {"mode": mode.value}
        if series is not None:
            metadata["series"] = dump(series_list(series)).decode()
        self.schema = schema(stream.names, tz or "UTC", metadata)
        self.read_options = pcsv.ReadOptions(column_names=list(stream.names), use_threads=False)
        # text columns may hold line breaks (quoted); the other reads need not look for them
        self.parse_options = pcsv.ParseOptions(newlines_in_values=mode is Mode.AUDIT)
        self.convert_options = pcsv.ConvertOptions(
            column_types={f.name: _parsed_type(f) for f in self.schema},
            # COPY writes a null as an empty field and an empty string as ""
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        self.sink = _Sink()
        self.writer = ipc.new_stream(self.sink, self.schema)
        self.count = 0
        self.ended = False

    def _batch(self, csv: bytes) -> pa.RecordBatch:
        table = pcsv.read_csv(
            pa.BufferReader(csv),
            read_options=self.read_options,
            parse_options=self.parse_options,
            convert_options=self.convert_options,
        )
        columns = []
        for field in self.schema:
            column = table.column(field.name).combine_chunks()
            if pa.types.is_timestamp(field.type):
                column = column.view(field.type)  # the same instants, labelled with the zone
            elif field.type == _TAGS:
                column = _tags(column)
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _part(self, rows: int) -> bytes:
        csv = self.stream.read(rows)
        if csv:
            batch = self._batch(csv)
            self.count += batch.num_rows
            self.writer.write_batch(batch)
        if self.stream.done:
            self.writer.close()  # the end-of-stream marker
            self.ended = True
        return self.sink.take()

    def first(self) -> tuple[bytes, bool]:
        """The schema and the first batch, and whether that is the whole stream."""
        return self._part(FIRST_ROWS), self.ended

    def next(self) -> bytes | None:
        """The next batch (and the end marker after the last), or None after that."""
        if self.ended:
            return None
        return self._part(BATCH_ROWS)

    def close(self) -> None:
        self.stream.close()
