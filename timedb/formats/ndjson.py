"""application/x-ndjson values answers: a metadata line, then one JSON record per line, each
the same object as in the JSON answer's `data`."""

from __future__ import annotations

from typing import Any

from timedb import media_types
from timedb.db.read_query import Mode
from timedb.db.values_copy import columns
from timedb.db.values_read import RowStream
from timedb.formats.json import DICTS, dump, series_list


class NdjsonBody:
    """An NDJSON answer from a RowStream, chunk by chunk.

    Always streamed, even when small: it has no document to validate as a whole (Connexion's
    JSON response validator, keyed `*/*json`, would take x-ndjson for JSON).
    """

    media_type = media_types.NDJSON

    def __init__(self, stream: RowStream, mode: Mode, series: list[dict[str, Any]] | None = None) -> None:
        self.stream = stream
        self.records = DICTS[(mode, series is not None)]
        self.texts = mode is Mode.AUDIT  # records with free text (annotation, changed_by, tags)
        meta: dict[str, Any] = {"mode": mode.value, "columns": list(columns(mode, series is not None))}
        if series is not None:
            meta["series"] = series_list(series)
        self.meta = dump(meta) + b"\n"
        self.count = 0

    def _lines(self) -> bytes | None:
        chunk = self.stream.next_chunk()
        if not chunk:
            return None
        self.count += len(chunk)
        records = self.records(chunk)
        if not self.texts:
            # records of numbers, timestamps and nulls only: "},{" is always between two
            # records (one dumps call per chunk is ~5x faster than one per record)
            return dump(records)[1:-1].replace(b"},{", b"}\n{") + b"\n"
        lines = bytearray()  # (a list of many orjson results is slow to build: its allocations)
        for record in records:
            lines += dump(record)
            lines += b"\n"
        return bytes(lines)

    def first(self) -> tuple[bytes, bool]:
        """The metadata line and the first records; never the whole answer."""
        return self.meta + (self._lines() or b""), False

    def next(self) -> bytes | None:
        """The next chunk's lines, or None after the last."""
        return self._lines()

    def close(self) -> None:
        self.stream.close()
