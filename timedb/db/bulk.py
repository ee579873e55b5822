"""Bulk loads: rows for many series in one transaction, COPYed into the fact tables.

The rows arrive as columns (`timedb.bulk_columns.RowColumns`, whatever the request format):
the series are resolved once per distinct key, the (series, known_time) pairs, the unit
conversions, the skip_unchanged comparison and the duplicate search run in Arrow's kernels,
and each fact table gets one binary COPY built column by column (`timedb.db.copy_binary`).
Nothing is done row by row in SQL or in Python.

Prepared serves POST /values without skip_unchanged (one series, rows as tuples); with it, POST
/values loads its points as columns (timedb.points.point_columns) through `load`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.bulk_columns import RowColumns, SeriesKey, instant, micros
from timedb.db import caller, copy_binary, extent, partitions
from timedb.db.locks import lock_series
from timedb.db.series import resolve_statement
from timedb.errors import AmbiguousSeries, DuplicateValidTime, SeriesNotFound, Unprocessable, VersionConflict
from timedb.units import Conversion, conversion

SHOWN = 10  # rows or series named in a problem's detail


def _describe(key: SeriesKey) -> str:
    if isinstance(key, int):
        return f"series_id={key}"
    name, labels = key
    return f"name={name!r}" + (f" labels={dict(labels)}" if labels else "")


def resolve_keys(conn: psycopg.Connection, keys: list[SeriesKey]) -> dict[SeriesKey, dict[str, Any]]:
    """The series of every key, in one statement: 404 listing the keys that match none, 400
    listing those that match several (series outside the request's scope match no key).
    Series are never created here."""
    items = [
        {
            "idx": i,
            "series_id": k if isinstance(k, int) else None,
            "name": None if isinstance(k, int) else k[0],
            "labels": None if isinstance(k, int) else dict(k[1]),
        }
        for i, k in enumerate(keys)
    ]
    found: dict[SeriesKey, list[dict[str, Any]]] = {k: [] for k in keys}
    if items:
        for row in conn.cursor(row_factory=dict_row).execute(
            *resolve_statement(Jsonb(items, dumps=lambda o: orjson.dumps(o).decode()))
        ):
            if row["series_id"] is not None:
                found[keys[row.pop("idx")]].append(row)
    missing = [k for k, m in found.items() if not m]
    if missing:
        shown = "; ".join(_describe(k) for k in missing[:SHOWN])
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        raise SeriesNotFound(
            f"{len(missing)} series of the rows do not exist (create them first, e.g. with "
            f"POST /series/bulk): {shown}{more}.",
            missing=[_describe(k) for k in missing[:100]],
        )
    several = [k for k, m in found.items() if len(m) > 1]
    if several:
        shown = "; ".join(_describe(k) for k in several[:SHOWN])
        raise AmbiguousSeries(
            f"{len(several)} series names of the rows match several series each (give "
            f"series_id or all labels): {shown}.",
            body="/rows",
        )
    return {k: m[0] for k, m in found.items()}


# For each pair, what a latest read shows for its valid_times: overlapping series as known at
# the pair's known_time (a version of that very known_time included, so a run sent again is
# left out), flat series as they are now.
CURRENT = """
SELECT p.idx, x.valid_time, x.valid_time_end, x.value
FROM unnest(%(sids)s::bigint[], %(kts)s::timestamptz[], %(lo)s::timestamptz[], %(hi)s::timestamptz[],
            %(over)s::bool[]) WITH ORDINALITY AS p(sid, kt, lo, hi, overlapping, idx)
CROSS JOIN LATERAL (
    (SELECT DISTINCT ON (t.valid_time) t.valid_time, t.valid_time_end, t.value FROM overlapping t
     WHERE p.overlapping AND t.series_id = p.sid AND t.valid_time BETWEEN p.lo AND p.hi AND t.known_time <= p.kt
     ORDER BY t.valid_time, t.known_time DESC, t.change_time DESC)
    UNION ALL
    (SELECT DISTINCT ON (t.valid_time) t.valid_time, t.valid_time_end, t.value FROM flat t
     WHERE NOT p.overlapping AND t.series_id = p.sid AND t.valid_time BETWEEN p.lo AND p.hi
     ORDER BY t.valid_time, t.change_time DESC)
) x
"""


CREATE_BATCHES = """
INSERT INTO batches_table (series_id, workflow_id, batch_start_time, known_time, batch_params, inserted_by)
SELECT sid, %(workflow_id)s, %(start_time)s, kt, %(batch_params)s, %(inserted_by)s
FROM unnest(%(sids)s::bigint[], %(kts)s::timestamptz[]) AS b(sid, kt)
RETURNING batch_id, series_id, known_time
"""


@dataclass
class Loaded:
    rows_inserted: int
    rows_skipped: int
    batches: list[dict[str, Any]]


@dataclass
class Pairs:
    """The (series, known_time) pairs of the rows, in order of first appearance; `code` is
    each row's pair."""

    code: pa.Array  # int32 per row
    series_id: list[int]
    known_time: list[int]  # UTC microseconds (the write time where a row gave none)
    explicit: list[bool]  # some row of the pair gave its known_time
    rows: list[int]
    lo: list[int]
    hi: list[int]
    stored: list[int] = field(default_factory=list)
    batch_id: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.series_id)


def _pairs(sid: pa.Array, kt: pa.Array, explicit: pa.Array, vt: pa.Array) -> Pairs:
    sids, kts = sid.dictionary_encode(), kt.dictionary_encode()
    width = len(kts.dictionary)
    combined = pc.add(pc.multiply(sids.indices.cast(pa.int64()), width), kts.indices.cast(pa.int64()))
    coded = combined.dictionary_encode()
    code = coded.indices.cast(pa.int32())
    first = coded.dictionary
    stats = (
        pa.table({"p": code, "vt": vt, "x": explicit})
        .group_by("p", use_threads=False)
        .aggregate([("vt", "count"), ("vt", "min"), ("vt", "max"), ("x", "any")])
    )
    order = pc.sort_indices(stats["p"])
    n_rows, lo, hi, ex = (pc.take(stats[c], order).to_pylist() for c in ("vt_count", "vt_min", "vt_max", "x_any"))
    return Pairs(
        code=code,
        series_id=pc.take(sids.dictionary, pc.divide(first, width)).to_pylist(),
        known_time=pc.take(kts.dictionary, pc.modulo(first, width)).to_pylist(),
        explicit=ex,
        rows=n_rows,
        lo=lo,
        hi=hi,
    )


def _convert(cols: RowColumns, series: list[dict[str, Any]], unit: str | None) -> pa.Array:
    """The values in each series' unit (y = x * scale + offset per series)."""
    if unit is None:
        return cols.value
    conv = [conversion(unit, s["unit"]) for s in series]
    if all(c.identity for c in conv):
        return cols.value
    scale = pc.take(pa.array([c.scale for c in conv], pa.float64()), cols.key)
    offset = pc.take(pa.array([c.offset for c in conv], pa.float64()), cols.key)
    converted = pc.add(pc.multiply(cols.value, scale), offset)
    if any(c.identity for c in conv):  # (x * 1 + 0 would turn -0.0 into 0.0)
        same = pc.take(pa.array([c.identity for c in conv]), cols.key)
        converted = pc.if_else(same, cols.value, converted)
    return converted


def load(
    conn: psycopg.Connection,
    cols: RowColumns,
    *,
    unit: str | None,
    skip_unchanged: bool,
    workflow_id: str,
    batch_params: dict[str, Any] | None,
    start_time: datetime,
) -> Loaded:
    """Store the rows (all or nothing: the caller's transaction): one batch per overlapping
    (series, known_time); rows without known_time get the request's write time."""
    found = resolve_keys(conn, list(dict.fromkeys(cols.keys)))  # (two spellings may be one key)
    series = [found[k] for k in cols.keys]
    sid = pc.take(pa.array([s["series_id"] for s in series], pa.int64()), cols.key)
    overlapping = {s["series_id"]: bool(s["overlapping"]) for s in series}
    value = _convert(cols, series, unit)
    write_time = lock_series(conn, overlapping.keys())
    explicit = pc.is_valid(cols.known_time)
    kt = pc.fill_null(cols.known_time, micros(write_time))
    pairs = _pairs(sid, kt, explicit, cols.valid_time)
    keep = _changed(conn, cols, pairs, value, overlapping) if skip_unchanged else None
    if keep is None:
        pairs.stored = list(pairs.rows)
    else:
        kept = pc.value_counts(pc.filter(pairs.code, keep))
        stored = dict(zip(kept.field("values").to_pylist(), kept.field("counts").to_pylist(), strict=True))
        pairs.stored = [stored.get(p, 0) for p in range(len(pairs))]
    _create_batches(conn, pairs, overlapping, workflow_id, batch_params, start_time)
    _refuse_clashes(conn, cols, pairs, keep)
    in_table = pc.take(pa.array([overlapping[s] for s in pairs.series_id]), pairs.code)
    written = 0
    for table_overlapping in (True, False):
        rows = in_table if table_overlapping else pc.invert(in_table)
        if keep is not None:
            rows = pc.and_(rows, keep)
        n = pc.sum(rows.cast(pa.int64())).as_py() or 0
        if n:
            try:
                _copy(
                    conn,
                    table_overlapping,
                    rows if n < len(rows) else None,
                    sid,
                    cols,
                    value,
                    kt,
                    pairs,
                    micros(write_time),
                )
            except psycopg.errors.UniqueViolation:
                raise _duplicates(sid, cols.valid_time, kt, in_table) from None
            written += n
    _widen(conn, sid, cols.valid_time, keep)
    batches = [
        {
            "series_id": pairs.series_id[p],
            "batch_id": pairs.batch_id[p],
            "known_time": instant(pairs.known_time[p]),
            "rows": pairs.stored[p],
        }
        for p in range(len(pairs))
        if pairs.stored[p]
    ]
    return Loaded(rows_inserted=written, rows_skipped=len(cols) - written, batches=batches)


def _create_batches(
    conn: psycopg.Connection,
    pairs: Pairs,
    overlapping: dict[int, bool],
    workflow_id: str,
    batch_params: dict[str, Any] | None,
    start_time: datetime,
) -> None:
    """One batch per overlapping pair that stores rows; pairs.batch_id (None for flat pairs)."""
    pairs.batch_id = [None] * len(pairs)
    wanted = [p for p in range(len(pairs)) if overlapping[pairs.series_id[p]] and pairs.stored[p]]
    if not wanted:
        return
    params = {
        "workflow_id": workflow_id,
        "start_time": start_time,
        "inserted_by": caller.name(),
        "batch_params": None if batch_params is None else Jsonb(batch_params),
        "sids": [pairs.series_id[p] for p in wanted],
        "kts": [instant(pairs.known_time[p]) for p in wanted],
    }
    made = {(sid, micros(kt)): bid for bid, sid, kt in conn.execute(CREATE_BATCHES, params)}
    for p in wanted:
        pairs.batch_id[p] = made[(pairs.series_id[p], pairs.known_time[p])]


# rows of the request (pair index, valid_time) stored already by another batch of the same
# series and known_time; times as UTC microseconds since 1970
CLASHES = """
SELECT c.row
FROM unnest(%(sids)s::bigint[], %(kts)s::int8[], %(batches)s::bigint[], %(vts)s::int8[], %(rows)s::int8[])
     AS c(sid, kt, batch_id, vt, row)
JOIN overlapping o ON o.series_id = c.sid
                  AND o.valid_time = timestamptz 'epoch' + c.vt * interval '1 microsecond'
                  AND o.known_time = timestamptz 'epoch' + c.kt * interval '1 microsecond'
                  AND o.batch_id <> c.batch_id
ORDER BY c.row
LIMIT %(limit)s
"""

TAKEN = """
SELECT DISTINCT c.idx
FROM unnest(%(sids)s::bigint[], %(kts)s::timestamptz[], %(bids)s::bigint[]) WITH ORDINALITY AS c(sid, kt, bid, idx)
JOIN batches_table b ON b.series_id = c.sid AND b.known_time = c.kt AND b.batch_id <> c.bid
"""


def _refuse_clashes(conn: psycopg.Connection, cols: RowColumns, pairs: Pairs, keep: pa.Array | None) -> None:
    """409 when another batch already stored a version at a row's (valid_time, known_time)."""
    explicit = [p for p in range(len(pairs)) if pairs.explicit[p] and pairs.batch_id[p] is not None]
    if not explicit:
        return
    taken = conn.execute(
        TAKEN,
        {
            "sids": [pairs.series_id[p] for p in explicit],
            "kts": [instant(pairs.known_time[p]) for p in explicit],
            "bids": [pairs.batch_id[p] for p in explicit],
        },
    ).fetchall()
    if not taken:
        return
    suspects = pa.array([explicit[idx - 1] for (idx,) in taken], pa.int32())
    mask = pc.is_in(pairs.code, value_set=suspects)
    if keep is not None:
        mask = pc.and_(mask, keep)
    rows = pc.indices_nonzero(mask)
    code = pc.take(pairs.code, rows)
    params = {
        "sids": pc.take(pa.array(pairs.series_id, pa.int64()), code).to_pylist(),
        "kts": pc.take(pa.array(pairs.known_time, pa.int64()), code).to_pylist(),
        "batches": pc.take(pa.array(pairs.batch_id, pa.int64()), code).to_pylist(),
        "vts": pc.take(cols.valid_time, rows).to_pylist(),
        "rows": rows.to_pylist(),
        "limit": SHOWN,
    }
    clashes = [row for (row,) in conn.execute(CLASHES, params)]
    if clashes:
        raise VersionConflict(
            f"Versions already stored (by another batch with the same known_time) at rows "
            f"{', '.join(map(str, clashes))}; nothing was stored.",
            rows=clashes,
        )


# what a latest read shows (CURRENT), packed into one bytea of 32-byte records (one message,
# not one per row): pair index, valid_time, valid_time_end ('infinity': NULL) and value (NaN:
# NULL), big-endian as the binary protocol sends them; no stored row holds infinity or NaN
CURRENT_PACKED = sql.SQL("""
SELECT string_agg(int8send(c.idx) || timestamptz_send(c.valid_time)
                  || timestamptz_send(coalesce(c.valid_time_end, 'infinity'))
                  || float8send(coalesce(c.value, 'NaN')), ''::bytea)
FROM ({current}) c
""").format(current=sql.SQL(CURRENT))  # type: ignore[arg-type]
INFINITY = 2**63 - 1


def _changed(
    conn: psycopg.Connection, cols: RowColumns, pairs: Pairs, value: pa.Array, overlapping: dict[int, bool]
) -> pa.Array:
    """skip_unchanged: True for the rows whose value or valid_time_end differ from what a
    latest read shows at their valid_time (or that have nothing stored there)."""
    params = {
        "sids": pairs.series_id,
        "kts": [instant(k) for k in pairs.known_time],
        "lo": [instant(x) for x in pairs.lo],
        "hi": [instant(x) for x in pairs.hi],
        "over": [overlapping[s] for s in pairs.series_id],
    }
    row = conn.execute(CURRENT_PACKED, params, binary=True).fetchone()
    idx, vt, vte, stored = copy_binary.unpack(row[0] if row and row[0] else b"", 4)
    current = pa.table(
        {
            "p": pc.subtract(idx, 1).cast(pa.int32()),
            "vt": pc.add(vt, copy_binary.PG_EPOCH_US),
            "s_vte": pc.if_else(
                pc.equal(vte, INFINITY), pa.scalar(None, pa.int64()), pc.add(vte, copy_binary.PG_EPOCH_US)
            ),
            "s_value": pc.if_else(
                pc.is_nan(stored.view(pa.float64())), pa.scalar(None, pa.float64()), stored.view(pa.float64())
            ),
        }
    )
    numbers = pa.array(range(len(cols)), pa.int64())
    rows = pa.table({"p": pairs.code, "vt": cols.valid_time, "row": numbers})
    both = rows.join(current, keys=["p", "vt"], join_type="inner", use_threads=True)
    at = both["row"].combine_chunks() if both.num_rows else pa.array([], pa.int64())
    same = pc.and_(
        _same(pc.take(cols.valid_time_end, at), both["s_vte"].combine_chunks()),
        _same(pc.take(value, at), both["s_value"].combine_chunks()),
    )
    unchanged_rows = pc.filter(at, same)
    return pc.invert(pc.is_in(numbers, value_set=unchanged_rows))


def _same(a: pa.Array, b: pa.Array) -> pa.Array:
    """Element-wise equality where two nulls are equal."""
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(both_null, pc.fill_null(pc.equal(a, b), False))


def _copy(
    conn: psycopg.Connection,
    table_overlapping: bool,
    rows: pa.Array | None,
    sid: pa.Array,
    cols: RowColumns,
    value: pa.Array,
    kt: pa.Array,
    pairs: Pairs,
    write_us: int,
) -> None:
    """COPY the rows (a mask, None: all) into one fact table."""

    def pick(arr: pa.Array) -> pa.Array:
        return arr if rows is None else pc.filter(arr, rows)

    def maybe_constant(arr: pa.Array) -> copy_binary.Column:
        lo_hi = pc.min_max(arr)
        lo = lo_hi["min"].as_py()
        return lo if arr.null_count == 0 and lo == lo_hi["max"].as_py() else arr

    pg = copy_binary.pg_timestamps
    known = maybe_constant(pg(pick(kt)))
    columns: list[copy_binary.Column] = [
        pick(sid),
        pg(pick(cols.valid_time)),
        pg(pick(cols.valid_time_end)),
        pick(value),
        known,
        write_us - copy_binary.PG_EPOCH_US,
    ]
    if table_overlapping:
        batch = pc.take(pa.array(pairs.batch_id, pa.int64()), pick(pairs.code))
        columns.insert(0, maybe_constant(batch))
        stmt = (
            "COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time, change_time) "
            "FROM STDIN (FORMAT BINARY)"
        )
    else:
        stmt = (
            "COPY flat (series_id, valid_time, valid_time_end, value, known_time, change_time) "
            "FROM STDIN (FORMAT BINARY)"
        )
    table = "overlapping" if table_overlapping else "flat"
    with partitions.routed(table, lambda: _months(pick(cols.valid_time))), conn.cursor() as cur, cur.copy(stmt) as copy:
        for block in copy_binary.encode(columns):
            copy.write(block)


def _widen(conn: psycopg.Connection, sid: pa.Array, valid_time: pa.Array, keep: pa.Array | None) -> None:
    """Widen the extent of each series written to (its rows' first and last valid_time)."""
    rows = pa.table({"s": sid, "v": valid_time})
    if keep is not None:
        rows = rows.filter(keep)
    spans = rows.group_by("s").aggregate([("v", "min"), ("v", "max")])
    lows = [instant(us) for us in spans["v_min"].to_pylist()]
    highs = [instant(us) for us in spans["v_max"].to_pylist()]
    extent.widen(conn, spans["s"].to_pylist(), lows, highs)


def _months(valid_time: pa.Array) -> list[datetime]:
    """The distinct months (UTC) of valid_times given as microseconds since 1970."""
    months = pc.floor_temporal(valid_time.cast(pa.timestamp("us", tz="UTC")), unit="month")
    return [m for m in pc.unique(months).to_pylist() if m is not None]


def _duplicates(sid: pa.Array, vt: pa.Array, kt: pa.Array, in_overlapping: pa.Array) -> Exception:
    """422 naming the rows that repeat a (series, valid_time, known_time) of an earlier row
    (flat series: a (series, valid_time): one write stores one value per valid_time)."""
    n = len(sid)
    ident = pa.table(
        {"s": sid, "vt": vt, "k": pc.if_else(in_overlapping, kt, 0), "row": pa.array(range(n), pa.int64())}
    )
    groups = ident.group_by(["s", "vt", "k"], use_threads=False).aggregate([("row", "min"), ("row", "count")])
    groups = groups.filter(pc.greater(groups["row_count"], 1))
    if groups.num_rows == 0:
        return Unprocessable("The rows clash with each other or with stored data.")
    repeats = ident.join(groups.select(["s", "vt", "k", "row_min"]), keys=["s", "vt", "k"], join_type="inner")
    repeats = repeats.filter(pc.not_equal(repeats["row"], repeats["row_min"])).sort_by("row").slice(0, SHOWN)
    pairs = list(zip(repeats["row_min"].to_pylist(), repeats["row"].to_pylist(), strict=True))
    shown = ", ".join(f"row {b} repeats row {a}" for a, b in pairs)
    return DuplicateValidTime(
        f"Rows repeat a series, valid_time and known_time: {shown}; nothing was stored.", rows=[b for _, b in pairs]
    )


class Prepared:
    """The points of one POST /values request with their values in the series' unit."""

    def __init__(self, points: Iterable[tuple[datetime, datetime | None, float | None]], convert: Conversion) -> None:
        self.points, self.convert = points, convert

    def __iter__(self) -> Iterator[tuple[datetime, datetime | None, float | None]]:
        convert = self.convert
        if convert.identity:
            yield from self.points
            return
        for vt, vte, value in self.points:
            yield vt, vte, convert(value)
