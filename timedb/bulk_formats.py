"""POST /values/bulk bodies other than JSON: NDJSON, CSV and Arrow IPC streams, as columns.

pyarrow parses each format into columns in C++ (pyarrow.json, pyarrow.csv, pyarrow.ipc);
timedb.bulk_columns then checks and converts them as the JSON body's rows are checked. The
columns are those of the spec's BulkRow: series_id | name (with labels as `label.<key>`
columns or one JSON `labels` column), valid_time, valid_time_end, value, known_time. Row
numbers in problems are 0-based and count rows (a CSV's header and blank NDJSON lines aside).

NDJSON keeps the JSON body's exact messages: a body pyarrow refuses, or whose rows fail a
check, is decoded again line by line with the JSON body's decoder (timedb.points), which
names the first problem as a JSON body's would.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from timedb import bulk_columns as bc
from timedb.errors import InvalidInput, SchemaViolation, TimedbError, Unprocessable
from timedb.media_types import ARROW, CSV, NDJSON
from timedb.points import non_finite
from timedb.points import rows as json_rows

MEDIA_TYPES = (NDJSON, CSV, ARROW)

FIELDS = ("series_id", "name", "labels", "valid_time", "valid_time_end", "value", "known_time")
LABEL_PREFIX = "label."
# metadata of a load: body fields of a JSON body, query parameters of the others
METADATA = ("workflow_id", "batch_params", "unit", "skip_unchanged")
MAX_DEPTH = 32


class _OneContentTypeNote(logging.Filter):
    """Connexion logs a warning each time it looks up the body of an operation with several
    request media types (this one, on every request): drop that line, keep the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("this operation accepts multiple content types")


logging.getLogger("connexion.operations.openapi3").addFilter(_OneContentTypeNote())


@dataclass
class RawBody:
    """A request body kept as bytes by the body validator, with its media type."""

    media_type: str
    data: bytes | bytearray


def read(body: RawBody) -> bc.RowColumns:
    """The rows of a NDJSON, CSV or Arrow body as checked columns (400/422 otherwise)."""
    readers = {NDJSON: read_ndjson, CSV: read_csv, ARROW: read_arrow}
    columns = readers[body.media_type](body.data)
    if len(columns) == 0:
        raise InvalidInput("rows must hold at least one item (the body holds no rows).", body="/rows")
    return columns


# ----------------------------------------------------------------------------- columns by name


def _check_names(names: list[str]) -> None:
    """400 naming unknown or repeated columns."""
    unknown = [n for n in names if n not in FIELDS and not n.startswith(LABEL_PREFIX)]
    if unknown:
        shown = ", ".join(repr(n[:100]) for n in unknown[: bc.SHOWN])
        raise InvalidInput(
            f"Unknown columns: {shown} (columns: series_id or name, labels or label.<key>, "
            "valid_time, valid_time_end, value, known_time).",
            body="/rows",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(
            f"Columns given more than once: {', '.join(repr(n[:100]) for n in repeated[: bc.SHOWN])}.", body="/rows"
        )
    if "labels" in names and any(n.startswith(LABEL_PREFIX) for n in names):
        raise InvalidInput("Give labels either as label.<key> columns or as one labels column, not both.", body="/rows")


def _assemble(table: pa.Table, *, text_only: bool) -> bc.RowColumns:
    """RowColumns of a table with the spec's column names (checked against FIELDS)."""
    _check_names(table.column_names)
    columns = {n: _one_chunk(table[n]) for n in table.column_names}
    if text_only:  # CSV: numbers that were read as text (to name a cell that is not one)
        if "series_id" in columns and _is_text(columns["series_id"].type):
            columns["series_id"] = _cast_text(columns["series_id"], pa.int64(), "series_id", "an integer")
        if "value" in columns and _is_text(columns["value"].type):
            columns["value"] = _cast_text(columns["value"], pa.float64(), "value", "a number")
    labels = {n[len(LABEL_PREFIX) :]: c for n, c in columns.items() if n.startswith(LABEL_PREFIX)}
    labels_json = columns.get("labels")
    if labels_json is not None and pa.types.is_struct(labels_json.type):
        labels = _struct_labels(labels_json)
        labels_json = None
    return bc.assemble(table.num_rows, columns, labels=labels, labels_json=labels_json)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_dictionary(t))


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _struct_labels(col: pa.Array) -> dict[str, pa.Array]:
    """label columns of a struct column of strings (a null child: the label is absent)."""
    labels = {}
    for i in range(col.type.num_fields):
        child = col.type.field(i)
        labels[child.name] = col.field(i)
    if col.null_count:  # a null labels struct: no labels in that row
        valid = pa.compute.is_valid(col)
        labels = {k: pa.compute.if_else(valid, v, pa.scalar(None, v.type)) for k, v in labels.items()}
    return labels


def _cast_text(col: pa.Array, to: pa.DataType, field: str, what: str) -> pa.Array:
    """Text cells (CSV) as numbers; a 400 naming the first row that is not one."""
    try:
        return col.cast(to)
    except pa.ArrowInvalid:
        for row, text in enumerate(col.to_pylist()):
            if text is None:
                continue
            try:
                pa.array([text]).cast(to)
            except pa.ArrowInvalid:
                raise InvalidInput(f"rows[{row}].{field}: {text[:100]!r} is not {what}.") from None
        raise InvalidInput(f"Column {field} holds something that is not {what}.", body="/rows") from None


# ----------------------------------------------------------------------------- CSV


def read_csv(data: bytes | bytearray) -> bc.RowColumns:
    """A CSV body: a header row, then one row per line; an empty field is null."""
    view = memoryview(data)
    if data.startswith(b"\xef\xbb\xbf"):  # a byte order mark (spreadsheet exports)
        view = view[3:]
    names = _header(view)
    _check_names(names)
    try:
        table = _read_csv(view, {n: _CSV_TYPES.get(n, pa.string()) for n in names})
    except pa.ArrowInvalid:
        # a cell that is not a number (or a broken line): read as text, to name the row
        try:
            table = _read_csv(view, {n: pa.string() for n in names})
        except pa.ArrowInvalid as exc:
            raise InvalidInput(f"The body is not CSV with a header row: {_arrow_message(exc)}", body="") from None
    return _assemble(table, text_only=True)


# numbers are converted while the CSV is read (in parallel); timestamps come as distinct strings
_TEXT_DICT = pa.dictionary(pa.int32(), pa.string())
_CSV_TYPES = {
    "series_id": pa.int64(),
    "value": pa.float64(),
    "valid_time": _TEXT_DICT,
    "valid_time_end": _TEXT_DICT,
    "known_time": _TEXT_DICT,
}


def _read_csv(data: memoryview, types: dict[str, pa.DataType]) -> pa.Table:
    return pa_csv.read_csv(
        pa.py_buffer(data),
        read_options=pa_csv.ReadOptions(use_threads=True, block_size=1 << 22),
        convert_options=pa_csv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
            check_utf8=True,
        ),
    )


def _header(data: memoryview) -> list[str]:
    """The column names of a CSV's first line."""
    end = bytes(data[: 1 << 16]).find(b"\n")
    first = bytes(data[: end if end >= 0 else 1 << 16])
    try:
        return next(csv.reader([first.decode("utf-8").rstrip("\r")]), [])
    except (UnicodeDecodeError, csv.Error):
        raise InvalidInput("The body is not CSV with a header row (of UTF-8 text).", body="") from None


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# ----------------------------------------------------------------------------- NDJSON

_SCHEMA = pa.schema(
    [
        ("series_id", pa.int64()),
        ("name", pa.string()),
        ("valid_time", pa.string()),
        ("valid_time_end", pa.string()),
        ("value", pa.float64()),
        ("known_time", pa.string()),
    ]
)
# two JSON values on one line (a cut in a string is a false alarm: the exact path decides)
_SAME_LINE = re.compile(rb"\}[ \t\r]*\{")
# a line that does not start with an object (blank, indented, `null`, ...)
_LINE_NOT_AN_OBJECT = re.compile(rb"\n(?!\{|\Z)")


def read_ndjson(data: bytes | bytearray) -> bc.RowColumns:
    """A NDJSON body: one BulkRow object per line (blank lines are skipped)."""
    fast = _ndjson_fast(data)
    return fast if fast is not None else _ndjson_exact(data)


def _ndjson_fast(data: bytes | bytearray) -> bc.RowColumns | None:
    """pyarrow.json's columns, or None where the exact path must decide (a problem, or a body
    whose meaning pyarrow might read differently)."""
    if b'"labels"' in data and b"null" in data:
        return None  # {"labels": {"k": null}} reads as an absent label in Arrow
    # every line one object, starting at the line's start: pyarrow 26's reader crashes (SIGSEGV)
    # on a block whose first value is not an object (a body `null`; apache/arrow#47409)
    if not data.startswith(b"{") or _LINE_NOT_AN_OBJECT.search(data) is not None:
        return None
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(block_size=1 << 22),
            parse_options=pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="infer"),
        )
        table.validate(full=True)  # UTF-8 of every string
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != data.count(b"\n") + (not data.endswith(b"\n")) or _SAME_LINE.search(data) is not None:
        return None  # blank lines, or two objects on a line
    if not set(table.column_names) <= set(FIELDS):
        return None
    if "labels" in table.column_names:
        labels_type = table.schema.field("labels").type
        if not (
            pa.types.is_null(labels_type)
            or (
                pa.types.is_struct(labels_type)
                and all(pa.types.is_string(labels_type.field(i).type) for i in range(labels_type.num_fields))
            )
        ):
            return None
    try:
        columns = {n: _one_chunk(table[n]) for n in table.column_names}
        labels = (
            _struct_labels(columns.pop("labels"))
            if "labels" in columns and pa.types.is_struct(columns["labels"].type)
            else {}
        )
        columns.pop("labels", None)
        return bc.assemble(table.num_rows, columns, timestamps=bc.timestamps_from_text, labels=labels)
    except TimedbError:
        return None


_LINE_ITEMS = msgspec.json.Decoder(msgspec.Raw)


def _ndjson_exact(data: bytes | bytearray) -> bc.RowColumns:
    """The rows decoded line by line as the JSON body's `rows` (exact messages)."""
    lines = [line for line in bytes(data).split(b"\n") if line.strip()]
    for number, line in enumerate(lines):
        try:
            _LINE_ITEMS.decode(line)
        except msgspec.DecodeError:
            if non_finite(line):
                raise Unprocessable(
                    "Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed."
                ) from None
            raise InvalidInput(
                f"rows[{number}]: the line is not one JSON object (NDJSON holds one row object per line)."
            ) from None
    rows = json_rows(memoryview(b"[" + b",".join(lines) + b"]"))
    try:
        rows.validate()
    except SchemaViolation as exc:  # (the spec describes NDJSON in prose: its rules, not a schema)
        raise InvalidInput(exc.detail, errors=exc.extra["errors"]) from None
    return rows.columns


# ----------------------------------------------------------------------------- Arrow


def read_arrow(data: bytes | bytearray) -> bc.RowColumns:
    """An Arrow IPC stream: one record batch or many, the columns of the spec's BulkRow."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        table = reader.read_all()
        table.validate(full=True)  # offsets and UTF-8, before any kernel reads them
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
        raise InvalidInput(f"The body is not an Arrow IPC stream: {_arrow_message(exc)}", body="") from None
    return _assemble(table, text_only=False)


# ----------------------------------------------------------------------------- metadata


def metadata(query: dict[str, Any]) -> dict[str, Any]:
    """The load's metadata from query parameters (batch_params: a JSON object as text)."""
    out = {k: v for k, v in query.items() if v is not None}
    if "batch_params" in out:
        out["batch_params"] = parse_batch_params(out["batch_params"])
    return out


def parse_batch_params(text: str) -> dict[str, Any] | None:
    """The batch_params query parameter: a JSON object (or null) as text."""
    message = 'batch_params must be a JSON object as text (e.g. \'{"model":"ecmwf"}\').'
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput(message, query="batch_params") from None
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(message, query="batch_params")
    from timedb.validation import too_deep

    if value is not None and too_deep(value, MAX_DEPTH):
        raise InvalidInput(f"batch_params nests deeper than {MAX_DEPTH} levels.", query="batch_params")
    return value  # type: ignore[no-any-return]
