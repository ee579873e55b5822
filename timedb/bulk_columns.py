"""The rows of POST /values/bulk as columns, whatever the request format.

Every body format (JSON, NDJSON, CSV, Arrow) ends up as one `RowColumns`: a key per row into
the list of series keys the request names, and the timestamps and values as Arrow arrays,
checked as the JSON body is (timestamps as `timedb.timestamps.parse_timestamp` reads them,
valid_time_end later than valid_time, finite values, a series per row). The checks and
conversions run in Arrow's C++ kernels; Python sees a row only when it is wrong (to name it)
or for a timestamp in an unusual spelling. Row numbers in messages are 0-based.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from timedb.errors import InvalidInput, Unprocessable
from timedb.timestamps import TIMESTAMP_PATTERN, parse_timestamp

# (a series: its id, or (name, sorted label pairs)) -- as timedb.points.SeriesKey
SeriesKey = int | tuple[str, tuple[tuple[str, str], ...]]

US = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# the instants a JSON timestamp can name (Python's datetime range, in UTC)
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
MAX_TEXT = 1000  # name and label values, as the spec's BulkRow says
SHOWN = 10

# The spellings Arrow's ISO 8601 cast reads exactly as parse_timestamp does: 'T', seconds, at
# most 6 fractional digits, 'Z' or +hh:mm, years 0002-9998 (an offset cannot leave the
# datetime range). Anything else the spec's pattern allows goes through parse_timestamp.
_DATE = (
    r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8]|0[1-9][0-9]{2}|00[1-9][0-9]|000[2-9])"
    r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
)
_TIME = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
FAST_ZONED = f"^{_DATE}{_TIME}(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
FAST_NAIVE = f"^{_DATE}{_TIME}$"
_PATTERN = re.compile(TIMESTAMP_PATTERN)
_NO_TEXT = pa.scalar(None, pa.string())


@dataclass
class RowColumns:
    """Rows as columns: `key` indexes `keys`; times are UTC microseconds since 1970."""

    keys: list[SeriesKey]
    key: pa.Array  # int32, no nulls
    valid_time: pa.Array  # int64, no nulls
    valid_time_end: pa.Array  # int64, nullable
    value: pa.Array  # float64, nullable
    known_time: pa.Array  # int64, nullable

    def __len__(self) -> int:
        return len(self.key)


def instant(us: int) -> datetime:
    """The aware datetime of UTC microseconds since 1970."""
    return EPOCH + timedelta(microseconds=us)


def micros(dt: datetime) -> int:
    """UTC microseconds since 1970 of an aware datetime."""
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def rows_named(mask: pa.Array) -> list[int]:
    """The (0-based) numbers of the first rows where mask is true (null: false)."""
    found = pc.indices_nonzero(pc.fill_null(mask, False))
    return [int(i) for i in found[:SHOWN].to_pylist()]


def _listing(rows: Sequence[int]) -> str:
    return ", ".join(map(str, rows))


# ----------------------------------------------------------------------------- timestamps


def timestamps_from_text(text: pa.Array, field: str) -> pa.Array:
    """int64 UTC microseconds of timestamp strings (nulls stay null), as parse_timestamp
    reads them: a string off the spec's pattern is a 400, an impossible date a 422."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if len(text) == 0:
        return pa.array([], pa.int64())
    # bodies repeat their timestamps: parse each distinct string once
    coded = text if pa.types.is_dictionary(text.type) else _as_string(text).dictionary_encode()
    distinct, indices = _as_string(coded.dictionary), coded.indices
    zoned = pc.match_substring_regex(distinct, FAST_ZONED)
    out: pa.Array | None = None
    if pc.all(zoned).as_py():
        try:
            out = pc.cast(pc.cast(distinct, US), pa.int64())
        except pa.ArrowInvalid:
            out = None
    if out is None:
        out = _mixed_timestamps(distinct, zoned, field)
    bad = pc.is_null(out)
    if pc.any(bad).as_py():
        _raise_timestamp(pc.take(distinct, indices), pc.take(bad, indices), field)
    return pc.take(out, indices)


def _mixed_timestamps(distinct: pa.Array, zoned: pa.Array, field: str) -> pa.Array:
    """Distinct strings in several spellings: the fast ones cast by Arrow, the rest parsed
    one by one; null where a string is not a timestamp."""
    naive = pc.match_substring_regex(distinct, FAST_NAIVE)
    parsed: list[int | None] = [None] * len(distinct)
    fast = pc.or_(zoned, naive)
    try:
        as_zoned = pc.cast(pc.cast(pc.if_else(zoned, distinct, _NO_TEXT), US), pa.int64())
        as_naive = pc.cast(pc.cast(pc.if_else(naive, distinct, _NO_TEXT), pa.timestamp("us")), pa.int64())
        fast_values = pc.coalesce(as_zoned, as_naive).to_pylist()
    except pa.ArrowInvalid:  # e.g. 2025-02-30: every string the slow way, to tell which
        fast = pa.array([False] * len(distinct))
        fast_values = parsed
    for i, (is_fast, value, s) in enumerate(zip(fast.to_pylist(), fast_values, distinct.to_pylist(), strict=True)):
        if is_fast:
            parsed[i] = value
        elif _PATTERN.match(s) is not None:
            try:
                parsed[i] = micros(parse_timestamp(s, field))
            except Unprocessable:
                parsed[i] = None
    return pa.array(parsed, pa.int64())


def _raise_timestamp(text: pa.Array, bad: pa.Array, field: str) -> None:
    """The problem for the first row whose timestamp could not be read."""
    row = rows_named(bad)[0]
    s = text[row].as_py()
    where = f"rows[{row}].{field}"
    if _PATTERN.match(s) is None:
        raise InvalidInput(
            f"{where}: {s[:100]!r} is not a timestamp (ISO 8601 / RFC 3339, e.g. "
            f"2025-01-01T00:00:00Z; without an offset it is UTC)."
        )
    parse_timestamp(s, where)  # raises the 422 that names the impossible date
    raise Unprocessable(f"{where}: {s[:100]!r} is not a valid timestamp.")


def timestamps_from_arrow(arr: pa.Array, field: str) -> pa.Array:
    """int64 UTC microseconds of an Arrow column of timestamps (any unit; naive is UTC),
    dates (midnight UTC) or timestamp strings."""
    t = arr.type
    if pa.types.is_dictionary(t):
        if _is_text(t.value_type):
            return timestamps_from_text(arr, field)
        return timestamps_from_arrow(arr.cast(t.value_type), field)
    if _is_text(t):
        return timestamps_from_text(arr, field)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.int64())
    if pa.types.is_date(t):
        arr = arr.cast(pa.timestamp("s"))
        t = arr.type
    if not pa.types.is_timestamp(t):
        raise InvalidInput(f"Column {field} must hold timestamps (or ISO 8601 strings), not {t}.", body="/rows")
    raw = arr.view(pa.int64())
    if t.unit in ("s", "ms"):
        factor = 1_000_000 if t.unit == "s" else 1000
        lo, hi = -(-MIN_US // factor), MAX_US // factor
        _check_range(raw, lo, hi, field)
        return pc.multiply(raw, factor)
    if t.unit == "ns":  # truncated to the microsecond, toward the past (as 7-9 digit fractions)
        q = pc.divide(raw, 1000)
        raw = pc.if_else(pc.greater(pc.multiply(q, 1000), raw), pc.subtract(q, 1), q)
    _check_range(raw, MIN_US, MAX_US, field)
    return raw


def _check_range(values: pa.Array, lo: int, hi: int, field: str) -> None:
    """422 for an instant outside the years 1-9999 (what a JSON timestamp can name)."""
    out = pc.or_(pc.less(values, lo), pc.greater(values, hi))
    if pc.any(out).as_py():
        raise Unprocessable(f"rows[{rows_named(out)[0]}].{field}: the instant is outside the years 1-9999 (UTC).")


# ----------------------------------------------------------------------------- other columns


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _as_string(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


def text_column(arr: pa.Array, field: str) -> pa.Array:
    """A column of strings (dictionary-encoded strings decoded), or a 400 naming it."""
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if not _is_text(t):
        raise InvalidInput(f"Column {field} must hold strings, not {arr.type}.", body="/rows")
    return _as_string(arr)


def values_column(arr: pa.Array, field: str = "value") -> pa.Array:
    """float64 values of a numeric column (nulls stay); non-finite values are a 422."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.float64())
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise InvalidInput(f"Column {field} must hold numbers, not {t}.", body="/rows")
    out = arr if t == pa.float64() else pc.cast(arr, pa.float64(), safe=False)
    check_finite(out)
    return out


def check_finite(values: pa.Array) -> None:
    """422 when a value is NaN or infinite (as the JSON body's number range)."""
    if values.null_count == len(values) or not pa.types.is_floating(values.type):
        return
    bad = pc.invert(pc.is_finite(values))
    if pc.any(bad).as_py():
        rows = rows_named(bad)
        raise Unprocessable(
            f"Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed (rows {_listing(rows)})."
        )


def series_id_column(arr: pa.Array) -> pa.Array:
    """int64 series ids (nulls stay): integers from 1 to 2^63-1, else a 400 naming the row."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.int64())
    if not pa.types.is_integer(t):
        raise InvalidInput(f"Column series_id must hold integers, not {t}.", body="/rows")
    if pa.types.is_uint64(t):
        too_big = pc.greater(arr, pa.scalar(2**63 - 1, pa.uint64()))
        if pc.any(too_big).as_py():
            raise InvalidInput(f"rows[{rows_named(too_big)[0]}].series_id: must be at most 2^63-1.")
    ids = arr.cast(pa.int64())
    small = pc.less(ids, 1)
    if pc.any(small).as_py():
        raise InvalidInput(f"rows[{rows_named(small)[0]}].series_id: must be 1 or more.")
    return ids


def check_length(arr: pa.Array, field: str) -> None:
    """400 when a string is longer than the spec's 1,000 characters."""
    long = pc.greater(pc.utf8_length(arr), MAX_TEXT)
    if pc.any(long).as_py():
        raise InvalidInput(f"rows[{rows_named(long)[0]}].{field}: longer than {MAX_TEXT} characters.")


def check_interval(vt: pa.Array, vte: pa.Array) -> None:
    """422 when a valid_time_end is not later than its valid_time."""
    if vte.null_count == len(vte):
        return
    bad = pc.less_equal(vte, vt)
    if pc.any(bad).as_py():
        raise Unprocessable(f"rows[{rows_named(bad)[0]}]: valid_time_end must be later than valid_time.")


def require(arr: pa.Array | None, field: str) -> pa.Array:
    """A column every row needs a value in (400 naming the first row without one)."""
    if arr is None:
        raise InvalidInput(f"The rows need a {field} column.", body="/rows")
    if arr.null_count:
        raise InvalidInput(f"rows[{rows_named(pc.is_null(arr))[0]}].{field}: required, but empty.")
    return arr


# ----------------------------------------------------------------------------- series keys


def _codes(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(int64 codes with null as -1, distinct values) of a column."""
    coded = arr.dictionary_encode()
    return pc.fill_null(coded.indices.cast(pa.int64()), -1), coded.dictionary


def series_keys(
    n: int,
    series_id: pa.Array | None,
    name: pa.Array | None,
    labels: dict[str, pa.Array] | None = None,
    labels_json: pa.Array | None = None,
) -> tuple[list[SeriesKey], pa.Array]:
    """The series of each row: its id when given, else its name and labels. Returns the
    distinct keys (first appearance order) and each row's index into them."""
    if series_id is None and name is None:
        raise InvalidInput(
            "The rows need a series_id or a name column (with label.<key> columns or a "
            "labels column) to say which series each row is for.",
            body="/rows",
        )
    ids = series_id if series_id is not None else pa.nulls(n, pa.int64())
    has_id = pc.is_valid(ids)
    no_id = pc.invert(has_id)
    missing = no_id if name is None else pc.and_(no_id, pc.is_null(name))
    if pc.any(missing).as_py():
        raise InvalidInput(
            f"rows[{rows_named(missing)[0]}]: give series_id, or name (and labels), to say which series the row is for."
        )
    named = no_id
    id_coded = ids.dictionary_encode()
    keys: list[SeriesKey] = list(id_coded.dictionary.to_pylist())
    if name is None or not pc.any(named).as_py():
        return keys, id_coded.indices.cast(pa.int32())
    named_keys, named_codes = _named_keys(named, name, labels or {}, labels_json)
    code = pc.if_else(has_id, id_coded.indices.cast(pa.int64()), pc.add(named_codes, len(keys)))
    return keys + named_keys, code.cast(pa.int32())


def _named_keys(
    named: pa.Array, name: pa.Array, labels: dict[str, pa.Array], labels_json: pa.Array | None
) -> tuple[list[SeriesKey], pa.Array]:
    """Keys of the rows that name their series: each distinct (name, labels) once; codes
    (null for the other rows) index them."""

    def only_named(arr: pa.Array) -> pa.Array:
        return pc.if_else(named, arr, pa.scalar(None, arr.type))

    code, _ = _codes(only_named(name))
    parts: list[tuple[pa.Array, int]] = []  # (codes, number of distinct values) per label part
    parsed: list[tuple[tuple[str, str], ...]] = []
    if labels_json is not None:
        json_code, distinct = _codes(only_named(labels_json))
        parsed = [_parse_labels(text) for text in distinct.to_pylist()]
        parts.append((json_code, len(distinct)))
    columns = sorted(labels.items())
    for _, col in columns:
        col_code, distinct = _codes(only_named(col))
        parts.append((col_code, len(distinct)))
    for part, size in parts:
        # both factors are below the row count, so the product fits; compacted after each step
        code = pc.add(pc.multiply(code, size + 1), pc.add(part, 1))
        code = code.dictionary_encode().indices.cast(pa.int64())
    code = pc.if_else(named, code, pa.scalar(None, pa.int64()))
    coded = code.dictionary_encode()
    first = pc.index_in(coded.dictionary, value_set=code)  # a row of each group
    names = pc.take(name, first).to_pylist()
    keys: list[SeriesKey] = []
    if labels_json is not None:
        which = pc.take(parts[0][0], first).to_pylist()
        keys = [(n, parsed[w] if w >= 0 else ()) for n, w in zip(names, which, strict=True)]
    else:
        values = [(k, pc.take(col, first).to_pylist()) for k, col in columns]
        keys = [(n, tuple((k, vs[i]) for k, vs in values if vs[i] is not None)) for i, n in enumerate(names)]
    return keys, coded.indices.cast(pa.int64())


def _parse_labels(text: str | None) -> tuple[tuple[str, str], ...]:
    """Sorted label pairs of a labels JSON text (an object of strings), or a 400."""
    if text is None:
        return ()
    try:
        labels = orjson.loads(text)
    except orjson.JSONDecodeError:
        labels = None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidInput(
            f'labels must be a JSON object of strings (e.g. {{"site":"Gotland"}}), not {text[:100]!r}.', body="/rows"
        )
    long = [k for k, v in labels.items() if len(v) > MAX_TEXT]
    if long:
        raise InvalidInput(
            f"labels: the value of {long[0][:100]!r} is longer than {MAX_TEXT} characters.", body="/rows"
        )
    return tuple(sorted(labels.items()))


# ----------------------------------------------------------------------------- assembling

Reader = Callable[[pa.Array, str], pa.Array]


def assemble(
    n: int,
    columns: dict[str, Any],
    *,
    timestamps: Reader = timestamps_from_arrow,
    labels: dict[str, pa.Array] | None = None,
    labels_json: pa.Array | None = None,
) -> RowColumns:
    """RowColumns of checked Arrow columns by name (series_id, name, valid_time, valid_time_end,
    value, known_time); absent columns are all null."""

    def col(field: str) -> pa.Array | None:
        arr = columns.get(field)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        return arr

    sid = col("series_id")
    name = col("name")
    if sid is not None:
        sid = series_id_column(sid)
    if name is not None:
        name = text_column(name, "name")
        check_length(name, "name")
    labels = {key: text_column(arr, f"label.{key}") for key, arr in (labels or {}).items()}
    for key, arr in labels.items():
        check_length(arr, f"label.{key}")
    if labels_json is not None:
        labels_json = text_column(labels_json, "labels")
        for text in pc.unique(labels_json).to_pylist():  # every row's, as a JSON body's are checked
            _parse_labels(text)
    vt = timestamps(require(col("valid_time"), "valid_time"), "valid_time")
    vte = col("valid_time_end")
    vte = pa.nulls(n, pa.int64()) if vte is None else timestamps(vte, "valid_time_end")
    check_interval(vt, vte)
    kt = col("known_time")
    kt = pa.nulls(n, pa.int64()) if kt is None else timestamps(kt, "known_time")
    value = col("value")
    value = pa.nulls(n, pa.float64()) if value is None else values_column(value)
    keys, key = series_keys(n, sid, name, labels, labels_json)
    return RowColumns(keys, key, vt, vte, value, kt)


def from_rows(rows: Sequence[tuple[Any, datetime, datetime | None, float | None, datetime | None]]) -> RowColumns:
    """RowColumns of row tuples (series key, valid_time, valid_time_end, value, known_time)
    already checked one by one (the exact path of the JSON formats)."""
    index: dict[SeriesKey, int] = {}
    codes = [index.setdefault(r[0], len(index)) for r in rows]
    return RowColumns(
        keys=list(index),
        key=pa.array(codes, pa.int32()),
        valid_time=pa.array([micros(r[1]) for r in rows], pa.int64()),
        valid_time_end=pa.array([None if r[2] is None else micros(r[2]) for r in rows], pa.int64()),
        value=pa.array([r[3] for r in rows], pa.float64()),
        known_time=pa.array([None if r[4] is None else micros(r[4]) for r in rows], pa.int64()),
    )


def concat(parts: list[RowColumns]) -> RowColumns:
    """RowColumns of several parts in order (their keys merged)."""
    if len(parts) == 1:
        return parts[0]
    index: dict[SeriesKey, int] = {}
    keys_out: list[pa.Array] = []
    for part in parts:
        remap = pa.array([index.setdefault(k, len(index)) for k in part.keys], pa.int32())
        keys_out.append(pc.take(remap, part.key))
    return RowColumns(
        keys=list(index),
        key=pa.concat_arrays(keys_out),
        valid_time=pa.concat_arrays([p.valid_time for p in parts]),
        valid_time_end=pa.concat_arrays([p.valid_time_end for p in parts]),
        value=pa.concat_arrays([p.value for p in parts]),
        known_time=pa.concat_arrays([p.known_time for p in parts]),
    )
