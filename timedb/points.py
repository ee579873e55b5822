"""The `data` array of POST /values, decoded slice by slice from the request body.

A request body can hold millions of points. Decoding it whole into Python dicts takes about ten
times its size in memory; here the array stays as the raw bytes of the body and is decoded in
~1 MB slices with msgspec, once to validate it (in the body validator) and once more while the
rows are copied into PostgreSQL, so a request needs little more memory than its body.

The point structs below mirror the spec's `DataPoint` schema (tests/unit/test_points.py checks
that they agree). Timestamps take a fast path (msgspec's RFC 3339 datetimes) and fall back, per
slice, to the strings and `timedb.timestamps.parse_timestamp`, which accept every form of the
spec's Timestamp pattern exactly as the rest of the API does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from timedb.errors import InvalidInput, Unprocessable
from timedb.timestamps import TIMESTAMP_PATTERN, parse_timestamp

# (valid_time, valid_time_end, value)
Point = tuple[datetime, datetime | None, float | None]

SLICE_BYTES = 1 << 20
Timestamp = Annotated[str, msgspec.Meta(pattern=TIMESTAMP_PATTERN)]


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


FAST = msgspec.json.Decoder(list[FastPoint])
TEXT = msgspec.json.Decoder(list[TextPoint])
# the end of one point: a point holds no object, and no '}' in a valid string
_SPLIT = re.compile(rb"\}\s*,")
# where msgspec's datetimes differ from parse_timestamp: more than 6 fractional digits (rounded,
# not truncated) and the years 1 and 9999 (offsets that leave the datetime range)
_TEXT_ONLY = re.compile(rb'\.[0-9]{7}|"0001-|"9999-')
_AT = re.compile(r" - at `\$\[(\d+)\]([^`]*)`")
_NON_FINITE = re.compile(rb"(?:^|[\[,:])\s*-?(?:NaN|Infinity)\b")


def _slices(raw: memoryview) -> Iterator[memoryview]:
    """Pieces of the array text between its brackets, each ending after a point's '}'.

    If every '[' + piece + ']' decodes, the array decodes to their concatenation: a cut
    inside a string or a nested value leaves a piece that does not decode.
    """
    start, end = 1, len(raw) - 1
    while start < end:
        cut = _SPLIT.search(raw, min(start + SLICE_BYTES, end), end)
        stop = cut.start() + 1 if cut else end
        yield raw[start:stop]
        start = cut.end() if cut else end


def _pointer(exc: msgspec.ValidationError, offset: int) -> str:
    """msgspec's message with its `$[i].field` path as the body's JSON pointer /data/i/field."""
    def repl(m: re.Match[str]) -> str:
        rest = m.group(2).replace(".", "/").replace("[", "/").replace("]", "")
        return f" (at /data/{int(m.group(1)) + offset}{rest})"
    return _AT.sub(repl, str(exc))


def _problem(exc: msgspec.ValidationError, offset: int) -> Exception:
    message = _pointer(exc, offset)
    if message.startswith("Number out of range"):
        return Unprocessable("Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed.")
    return InvalidInput(message)


def _decode(piece: memoryview, offset: int) -> list[Point]:
    text = b"[" + piece + b"]"
    if _TEXT_ONLY.search(text) is None:
        try:
            return [(_utc(p.valid_time), None if p.valid_time_end is None else _utc(p.valid_time_end), p.value)
                    for p in FAST.decode(text)]
        except msgspec.ValidationError:
            pass  # another form of the pattern, or a real error: the text decoder tells
    try:
        points = TEXT.decode(text)
    except msgspec.ValidationError as exc:
        raise _problem(exc, offset) from None
    except msgspec.DecodeError:
        raise InvalidInput("The request body is not valid JSON (in data).") from None
    return [(parse_timestamp(p.valid_time, f"data[{offset + i}].valid_time"),
             None if p.valid_time_end is None
             else parse_timestamp(p.valid_time_end, f"data[{offset + i}].valid_time_end"),
             p.value) for i, p in enumerate(points)]


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


class Points:
    """The points of a request, decoded from the body's bytes each time they are iterated."""

    def __init__(self, raw: memoryview) -> None:
        self.raw = raw
        self.count = 0

    def chunks(self) -> Iterator[list[Point]]:
        """Lists of points, one per slice of the body."""
        if bytes(self.raw[:1]) != b"[" or bytes(self.raw[-1:]) != b"]":
            raise InvalidInput("data must be an array of points.")
        offset = 0
        for piece in _slices(self.raw):
            points = _decode(piece, offset)
            yield points
            offset += len(points)

    def __iter__(self) -> Iterator[Point]:
        for chunk in self.chunks():
            yield from chunk

    def validate(self) -> None:
        """Decode every point once (keeping none): types, timestamps, intervals; count them."""
        count = 0
        for chunk in self.chunks():
            for i, (vt, vte, _) in enumerate(chunk):
                if vte is not None and vte <= vt:
                    raise Unprocessable(f"data[{count + i}]: valid_time_end must be later than valid_time.")
            count += len(chunk)
        if count == 0:
            raise InvalidInput("data must hold at least one point (at /data).")
        self.count = count


def non_finite(raw: bytes | bytearray | memoryview) -> bool:
    """True when a JSON text that failed to parse holds NaN or Infinity literals."""
    return _NON_FINITE.search(raw) is not None
