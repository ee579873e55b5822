"""Arrays of points in request bodies, decoded slice by slice from the body's bytes.

A request body can hold millions of points. Decoding it whole into Python dicts takes about ten
times its size in memory; here an array (`data` of POST /values, `rows` of POST /values/bulk)
stays as the raw bytes of the body and is decoded in ~1 MB slices with msgspec, once to
validate it (in the body validator) and again each time the rows are needed (the COPY), so a
request needs little more memory than its body.

The structs below mirror the spec's `DataPoint` and `BulkRow` schemas (tests/unit/test_points.py
checks that they agree). Timestamps take a fast path (msgspec's RFC 3339 datetimes) and fall
back, per slice, to the strings and `timedb.timestamps.parse_timestamp`, which accept every form
of the spec's Timestamp pattern exactly as the rest of the API does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec
import pyarrow as pa

from timedb import bulk_columns as bc
from timedb.errors import InvalidInput, SchemaViolation, Unprocessable
from timedb.timestamps import TIMESTAMP_PATTERN, parse_timestamp

# (valid_time, valid_time_end, value)
Point = tuple[datetime, datetime | None, float | None]
# a series: its id, or (name, sorted label pairs)
SeriesKey = int | tuple[str, tuple[tuple[str, str], ...]]
# (series, valid_time, valid_time_end, value, known_time)
Row = tuple[SeriesKey, datetime, datetime | None, float | None, datetime | None]

SLICE_BYTES = 1 << 20
Timestamp = Annotated[str, msgspec.Meta(pattern=TIMESTAMP_PATTERN)]
SeriesId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]


class FastPoint(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """DataPoint with RFC 3339 timestamps decoded in C."""

    valid_time: datetime
    valid_time_end: datetime | None = None
    value: float | None = None


class TextPoint(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """DataPoint with timestamps as text, for every form of the spec's pattern."""

    valid_time: Timestamp
    valid_time_end: Timestamp | None = None
    value: float | None = None


class FastBulkRow(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """BulkRow with RFC 3339 timestamps decoded in C."""

    valid_time: datetime
    series_id: SeriesId | None = None
    name: Text | None = None
    labels: dict[str, Text] | None = None
    valid_time_end: datetime | None = None
    value: float | None = None
    known_time: datetime | None = None


class TextBulkRow(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """BulkRow with timestamps as text."""

    valid_time: Timestamp
    series_id: SeriesId | None = None
    name: Text | None = None
    labels: dict[str, Text] | None = None
    valid_time_end: Timestamp | None = None
    value: float | None = None
    known_time: Timestamp | None = None


class LooseBulkRow(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """BulkRow with timestamps as plain strings, checked and parsed a column at a time."""

    valid_time: str
    series_id: SeriesId | None = None
    name: Text | None = None
    labels: dict[str, Text] | None = None
    valid_time_end: str | None = None
    value: float | None = None
    known_time: str | None = None


# the end of one point (splitting `data` where a point holds no object, and no '}' in a valid
# string); `rows` hold labels (objects, free strings): they are split by msgspec instead
_SPLIT = re.compile(rb"\}\s*,")
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
RAW_SLICE_ITEMS = 10_000
# where msgspec's datetimes differ from parse_timestamp: more than 6 fractional digits (rounded,
# not truncated) and the years 1 and 9999 (offsets that leave the datetime range)
_TEXT_ONLY = re.compile(rb'\.[0-9]{7}|"0001-|"9999-')
_AT = re.compile(r" - at `\$\[(\d+)\]([^`]*)`")
_NON_FINITE = re.compile(rb"(?:^|[\[,:])\s*-?(?:NaN|Infinity)\b")

T = TypeVar("T")


def _split_points(raw: memoryview) -> Iterator[bytes]:
    """JSON arrays of ~SLICE_BYTES of the points of an array text, cut after a point's '}'.

    If every piece decodes, the array decodes to their concatenation: a cut inside a string
    or a nested value leaves a piece that does not decode.
    """
    start, end = 1, len(raw) - 1
    while start < end:
        cut = _SPLIT.search(raw, min(start + SLICE_BYTES, end), end)
        stop = cut.start() + 1 if cut else end
        yield b"[" + raw[start:stop] + b"]"
        start = cut.end() if cut else end


class _SplitItems:
    """JSON arrays of RAW_SLICE_ITEMS items of an array text, cut where msgspec's parser found
    the items (any content; its raw items reference the body, ~50 bytes each)."""

    def __init__(self) -> None:
        self.items: list[msgspec.Raw] | None = None

    def __call__(self, raw: memoryview) -> Iterator[bytes]:
        if self.items is None:
            try:
                self.items = _RAW_ITEMS.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise SchemaViolation("rows must be an array of objects.", body="/rows") from None
        for i in range(0, len(self.items), RAW_SLICE_ITEMS):
            yield b"[" + b",".join(self.items[i : i + RAW_SLICE_ITEMS]) + b"]"


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _utc_or_none(dt: datetime | None) -> datetime | None:
    return None if dt is None else _utc(dt)


class Sliced(Generic[T]):
    """An array of a request body decoded slice by slice each time it is iterated.

    fast/text: msgspec decoders of a list of structs (RFC 3339 datetimes / timestamp strings);
    convert(struct, index): the item as T from a fast struct; convert_text(struct, index, parse):
    the same from a text struct, parse(text, field) parsing its timestamps.
    """

    def __init__(
        self,
        raw: memoryview,
        name: str,
        split: Callable[[memoryview], Iterator[bytes]],
        fast: msgspec.json.Decoder[Any],
        text: msgspec.json.Decoder[Any],
        convert: Callable[[Any, int], T],
        convert_text: Callable[[Any, int, Callable[[str, str], datetime]], T],
    ) -> None:
        self.raw = raw
        self.name = name
        self.split = split
        self.fast, self.text = fast, text
        self.convert, self.convert_text = convert, convert_text
        self.count = 0

    def _problem(self, exc: msgspec.ValidationError, offset: int) -> Exception:
        """msgspec's message with its `$[i].field` path as the body's JSON pointer."""

        def repl(m: re.Match[str]) -> str:
            rest = m.group(2).replace(".", "/").replace("[", "/").replace("]", "")
            return f" (at /{self.name}/{int(m.group(1)) + offset}{rest})"

        message = _AT.sub(repl, str(exc))
        if message.startswith("Number out of range"):
            return Unprocessable("Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed.")
        return SchemaViolation(message)

    def _decode(self, text: bytes, offset: int) -> list[T]:
        if _TEXT_ONLY.search(text) is None:
            try:
                return [self.convert(item, offset + i) for i, item in enumerate(self.fast.decode(text))]
            except msgspec.ValidationError:
                pass  # another form of the pattern, or a real error: the text decoder tells
        try:
            items = self.text.decode(text)
        except msgspec.ValidationError as exc:
            raise self._problem(exc, offset) from None
        except msgspec.DecodeError:
            raise SchemaViolation(
                f"The request body is not valid JSON (in {self.name}).", body=f"/{self.name}"
            ) from None
        return [self.convert_text(item, offset + i, parse_timestamp) for i, item in enumerate(items)]

    def chunks(self) -> Iterator[list[T]]:
        """Lists of items, one per slice of the body."""
        if bytes(self.raw[:1]) != b"[" or bytes(self.raw[-1:]) != b"]":
            raise SchemaViolation(f"{self.name} must be an array.", body=f"/{self.name}")
        offset = 0
        for piece in self.split(self.raw):
            items = self._decode(piece, offset)
            yield items
            offset += len(items)

    def __iter__(self) -> Iterator[T]:
        for chunk in self.chunks():
            yield from chunk

    def validate(self) -> None:
        """Decode every item once (keeping none), which checks them all; count them."""
        self.count = sum(len(chunk) for chunk in self.chunks())
        if self.count == 0:
            raise SchemaViolation(f"{self.name} must hold at least one item (at /{self.name}).")


def _interval(vt: datetime, vte: datetime | None, where: str) -> datetime | None:
    if vte is not None and vte <= vt:
        raise Unprocessable(f"{where}: valid_time_end must be later than valid_time.")
    return vte


def _point(p: FastPoint, i: int) -> Point:
    vt = _utc(p.valid_time)
    return vt, _interval(vt, _utc_or_none(p.valid_time_end), f"data[{i}]"), p.value


def _text_point(p: TextPoint, i: int, parse: Callable[[str, str], datetime]) -> Point:
    vt = parse(p.valid_time, f"data[{i}].valid_time")
    vte = None if p.valid_time_end is None else parse(p.valid_time_end, f"data[{i}].valid_time_end")
    return vt, _interval(vt, vte, f"data[{i}]"), p.value


def series_key(series_id: int | None, name: str | None, labels: dict[str, str] | None, where: str) -> SeriesKey:
    """The series a row names: its id wins; else its name and labels."""
    if series_id is not None:
        return series_id
    if name is None:
        raise InvalidInput(f"{where}: give series_id, or name (and labels), to say which series the row is for.")
    return name, tuple(sorted((labels or {}).items()))


def _row(r: FastBulkRow, i: int) -> Row:
    vt = _utc(r.valid_time)
    return (
        series_key(r.series_id, r.name, r.labels, f"rows[{i}]"),
        vt,
        _interval(vt, _utc_or_none(r.valid_time_end), f"rows[{i}]"),
        r.value,
        _utc_or_none(r.known_time),
    )


def _text_row(r: TextBulkRow, i: int, parse: Callable[[str, str], datetime]) -> Row:
    vt = parse(r.valid_time, f"rows[{i}].valid_time")
    vte = None if r.valid_time_end is None else parse(r.valid_time_end, f"rows[{i}].valid_time_end")
    kt = None if r.known_time is None else parse(r.known_time, f"rows[{i}].known_time")
    return (series_key(r.series_id, r.name, r.labels, f"rows[{i}]"), vt, _interval(vt, vte, f"rows[{i}]"), r.value, kt)


_FAST_POINTS = msgspec.json.Decoder(list[FastPoint])
_TEXT_POINTS = msgspec.json.Decoder(list[TextPoint])
_FAST_ROWS = msgspec.json.Decoder(list[FastBulkRow])
_TEXT_ROWS = msgspec.json.Decoder(list[TextBulkRow])

_LOOSE_ROWS = msgspec.json.Decoder(list[LooseBulkRow])

Points = Sliced[Point]


class Rows(Sliced[Row]):
    """The `rows` of POST /values/bulk; validate() also keeps them as columns (`columns`).

    Each slice is decoded with the timestamps as strings, then checked and converted a column
    at a time (timedb.bulk_columns). A slice with anything wrong in it is decoded again row by
    row (Sliced's own decoding), which names the first problem exactly as it always has.
    """

    columns: bc.RowColumns

    def validate(self) -> None:
        """Decode every row once into columns, which checks them all; count them."""
        if bytes(self.raw[:1]) != b"[" or bytes(self.raw[-1:]) != b"]":
            raise SchemaViolation(f"{self.name} must be an array.", body=f"/{self.name}")
        parts: list[bc.RowColumns] = []
        offset = 0
        for piece in self.split(self.raw):
            part = self._columns(piece, offset)
            parts.append(part)
            offset += len(part)
        self.count = offset
        if self.count == 0:
            raise SchemaViolation(f"{self.name} must hold at least one item (at /{self.name}).")
        self.columns = bc.concat(parts)
        if isinstance(self.split, _SplitItems):
            self.split = _SplitItems()  # the raw items (~50 bytes a row) are made again if asked for

    def _columns(self, text: bytes, offset: int) -> bc.RowColumns:
        try:
            items = _LOOSE_ROWS.decode(text)
            return _row_columns(items) if items else bc.from_rows([])
        except (msgspec.ValidationError, msgspec.DecodeError, InvalidInput, Unprocessable):
            # the row-by-row decoding raises the problem (or, should it find none, gives the rows)
            return bc.from_rows(self._decode(text, offset))


def _text(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def _row_columns(items: list[LooseBulkRow]) -> bc.RowColumns:
    """Columns of decoded rows; raises on the first problem (the caller decodes again to name it)."""
    vt = bc.timestamps_from_text(_text([r.valid_time for r in items]), "valid_time")
    ends = [r.valid_time_end for r in items]
    vte = (
        pa.nulls(len(items), pa.int64())
        if ends.count(None) == len(ends)
        else bc.timestamps_from_text(_text(ends), "valid_time_end")
    )
    bc.check_interval(vt, vte)
    known = [r.known_time for r in items]
    kt = (
        pa.nulls(len(items), pa.int64())
        if known.count(None) == len(known)
        else bc.timestamps_from_text(_text(known), "known_time")
    )
    value = pa.array([r.value for r in items], pa.float64())
    ids = [r.series_id for r in items]
    if None not in ids:
        coded = pa.array(ids, pa.int64()).dictionary_encode()
        keys: list[SeriesKey] = coded.dictionary.to_pylist()
        key = coded.indices.cast(pa.int32())
    else:
        index: dict[SeriesKey, int] = {}
        codes = [index.setdefault(series_key(r.series_id, r.name, r.labels, "rows"), len(index)) for r in items]
        keys, key = list(index), pa.array(codes, pa.int32())
    return bc.RowColumns(keys, key, vt, vte, value, kt)


def point_columns(points: Points, series_id: int, known_time: datetime | None) -> bc.RowColumns:
    """The (validated) points of POST /values as the columns of one series' rows: the same
    column-at-a-time path as POST /values/bulk (skip_unchanged compares in Arrow)."""
    parts: list[bc.RowColumns] = []
    for piece in points.split(points.raw):
        items = _LOOSE_ROWS.decode(piece)  # (a point's fields are a subset of a row's)
        if items:
            for item in items:
                item.series_id = series_id
            parts.append(_row_columns(items))
    columns = bc.concat(parts)
    if known_time is not None:
        columns.known_time = pa.array([bc.micros(known_time)] * len(columns), pa.int64())
    return columns


def points(raw: memoryview) -> Points:
    """The `data` array of POST /values."""
    return Sliced(raw, "data", _split_points, _FAST_POINTS, _TEXT_POINTS, _point, _text_point)


def rows(raw: memoryview) -> Rows:
    """The `rows` array of POST /values/bulk."""
    return Rows(raw, "rows", _SplitItems(), _FAST_ROWS, _TEXT_ROWS, _row, _text_row)


SLICED = {"data": points, "rows": rows}


def non_finite(raw: bytes | bytearray | memoryview) -> bool:
    """True when a JSON text that failed to parse holds NaN or Infinity literals."""
    return _NON_FINITE.search(raw) is not None
