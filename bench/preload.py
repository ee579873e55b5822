"""The data the cases work on, made without timing: the series catalogue through POST /series,
and the read series and the bulk that fills the fact tables with INSERT ... SELECT generate_series."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson
import psycopg

from bench import load
from bench.data import T0
from bench.httpclient import Client
from timedb.db import extent

if TYPE_CHECKING:
    from bench.context import Bench

CATALOGUE_CLIENTS = 4
KNOWN = datetime(2019, 12, 1, tzinfo=UTC)  # known_time of the oldest preloaded revision


@dataclass(frozen=True)
class Preloaded:
    read_series: dict[int, int]  # points per latest read -> the series (cfg.revisions revisions per valid_time)
    versions_series: int  # the series of the versions=true read, of versions_points valid_times
    versions_points: int
    correct_flat_series: int  # a flat series of correct_flat_points points (what fills flat to big_rows)
    correct_flat_points: int


def catalogue(bench: Bench) -> None:
    """cfg.series filler series created through POST /series by a few concurrent clients."""
    n = bench.cfg.series
    print(f"creating {n:,} series through POST /series ({CATALOGUE_CLIENTS} clients)", flush=True)

    def worker(k: int) -> None:
        with Client(bench.server.port) as c:
            for i in range(k, n, CATALOGUE_CLIENTS):
                body = orjson.dumps(
                    {"name": f"filler_{i:05d}", "unit": "kW", "labels": {"site": f"s{i % 100:02d}", "kind": "filler"}}
                )
                r = c.request("POST", "/series", body)
                if r.status != 200:
                    raise RuntimeError(f"POST /series failed: {r.status} {r.body[:200]!r}")

    print(f"  {n / load.in_threads(CATALOGUE_CLIENTS, worker):,.0f} series/s", flush=True)
    bench.conn.execute("ANALYZE series_table")
    bench.conn.commit()


def preload(bench: Bench) -> Preloaded:
    """The read series, the versions series and the bulk that brings each fact table to
    cfg.big_rows rows; then VACUUM ANALYZE and a CHECKPOINT, so none lands in a measurement."""
    cfg, conn = bench.cfg, bench.conn
    t0 = time.perf_counter()
    print("preloading with INSERT ... SELECT generate_series (not timed as a case)", flush=True)
    read_series = {}
    for size in cfg.read_sizes:
        read_series[size] = bench.series(f"read_latest_{size}", True)
        _overlapping(conn, read_series[size], size, cfg.revisions)
    versions_points = max(1, cfg.versions_rows // cfg.revisions)
    versions_series = bench.series(f"read_versions_{cfg.versions_rows}", True)
    _overlapping(conn, versions_series, versions_points, cfg.revisions)
    have = bench.count_rows("overlapping")
    if have < cfg.big_rows:
        sid = bench.series("filler_overlapping", True)
        _overlapping(conn, sid, (cfg.big_rows - have) // cfg.revisions + 1, cfg.revisions)
    correct_flat_series = bench.series("correct_flat", False)
    correct_flat_points = max(cfg.big_rows - bench.count_rows("flat"), 1_000)
    _flat(conn, correct_flat_series, correct_flat_points)
    # the series' extents, as `timedb create tables` makes them after rows written with SQL
    extent.recompute(conn)
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")  # autovacuum may be off: give the planner statistics
    try:
        conn.execute("CHECKPOINT")  # so no preload checkpoint runs during measurements
    except psycopg.Error:
        pass
    conn.autocommit = False
    rows = {t: bench.count_rows(t) for t in ("flat", "overlapping")}
    print(
        f"  done in {time.perf_counter() - t0:.0f}s: flat {rows['flat']:,} rows, "
        f"overlapping {rows['overlapping']:,} rows",
        flush=True,
    )
    return Preloaded(read_series, versions_series, versions_points, correct_flat_series, correct_flat_points)


def _months(conn: psycopg.Connection, table: str, points: int) -> None:
    """The partitions of the months `points` minutes from T0 span (a direct INSERT does not make
    them; a write through the API would)."""
    conn.execute(
        "SELECT timedb_ensure_partitions(%s::regclass, array(SELECT %s::timestamptz + m * interval '1 month'"
        " FROM generate_series(0, %s) AS m))",
        (table, T0, points // 40_000 + 1),  # (a month has >= 40,320 minutes)
    )
    conn.commit()


def _overlapping(conn: psycopg.Connection, sid: int, points: int, revisions: int) -> None:
    _months(conn, "overlapping", points)
    kts = [KNOWN + timedelta(days=r) for r in range(revisions)][::-1]
    bids = [
        conn.execute(
            "INSERT INTO batches_table (series_id, workflow_id, known_time) VALUES (%s, 'bench-preload', %s) "
            "RETURNING batch_id",
            (sid, kt),
        ).fetchone()[0]
        for kt in kts
    ]
    step = max(1, 1_000_000 // revisions)
    for lo in range(0, points, step):
        hi = min(points, lo + step)
        # rows generated in key order (valid_time, known_time DESC): appends to the unique index
        conn.execute(
            "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, change_time, value) "
            "SELECT b.batch_id, %(sid)s, %(t0)s::timestamptz + i * interval '1 minute', b.kt, b.kt, "
            "       ((i * 7919 + b.batch_id * 104729) %% 100000) / 37.0 "
            "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i "
            "CROSS JOIN LATERAL unnest(%(bids)s::bigint[], %(kts)s::timestamptz[]) AS b(batch_id, kt)",
            {"sid": sid, "t0": T0, "lo": lo, "hi": hi, "bids": bids, "kts": kts},
        )
        conn.commit()


def _flat(conn: psycopg.Connection, sid: int, points: int) -> None:
    _months(conn, "flat", points)
    step = 1_000_000
    for lo in range(0, points, step):
        conn.execute(
            "INSERT INTO flat (series_id, valid_time, known_time, change_time, value) "
            "SELECT %(sid)s, %(t0)s::timestamptz + i * interval '1 minute', %(kt)s, %(kt)s, "
            "       ((i * 7919) %% 100000) / 37.0 "
            "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i",
            {"sid": sid, "t0": T0, "kt": KNOWN, "lo": lo, "hi": min(points, lo + step)},
        )
        conn.commit()
