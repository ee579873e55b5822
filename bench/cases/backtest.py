"""Backtesting reads (issue 9): a day-ahead latest read, a resample to hourly means, and a
multi-series POST /values/query as JSON and as Arrow, against the server's query counted in the
database (`count(q.*)`: every column the server reads)."""

from __future__ import annotations

from datetime import time as clock
from typing import Any

import orjson
from psycopg import sql

from bench import raw
from bench.config import Config
from bench.context import Bench, Group
from bench.data import T0
from bench.httpclient import Request
from bench.procstat import MB, PeakRss
from bench.report import Target
from bench.targets import Peak, Rate
from timedb.db.read_query import Mode, ReadSpec, Resample, Window, build_query, multi_query

IN_DB = "in-database count of the same query"


def run(bench: Bench) -> None:
    day_ahead(bench)
    resample(bench)
    bench.restart_server()  # a fresh heap for the RSS of the query case
    query_series(bench)


def day_ahead(bench: Bench) -> None:
    """Latest read with day-ahead cutoffs (06:00 Europe/Berlin the day before) of the 100,000-point
    read series (10 revisions per valid_time)."""
    sizes = bench.cfg.read_sizes
    size = sorted(sizes)[-2] if len(sizes) > 1 else sizes[0]
    sid = bench.preloaded().read_series[size]
    window = Window(days_ahead=1, issue_time=clock(6), tz="Europe/Berlin")
    _versus_db(
        bench,
        "read_day_ahead",
        f"GET /values day-ahead (days_ahead=1, 06:00 Europe/Berlin), {size:,} points "
        f"({bench.cfg.revisions} revisions each)",
        f"/values?series_id={sid}&days_ahead=1&issue_time=06:00&tz=Europe/Berlin",
        build_query(True, ReadSpec(window=window, out_tz="Europe/Berlin")),
        sid,
        size,
        size,
    )


def resample(bench: Bench) -> None:
    """Hourly means of a flat series of cfg.resample_points 15-minute points (input rows/s)."""
    n = bench.cfg.resample_points
    sid = bench.series("resample_15min", False)
    _fill_flat(bench, [sid], n, "15 minutes", "(i %% 1000) / 7.0")
    _versus_db(
        bench,
        "resample_hourly",
        f"GET /values resample=PT1H (mean) of {n:,} 15-minute points (input rows/s)",
        f"/values?series_id={sid}&resample=PT1H&agg=mean",
        build_query(False, ReadSpec(resample=Resample("second", 3600))),
        sid,
        (n + 3) // 4,
        n,
        ", input rows/s",
    )


def _fill_flat(bench: Bench, ids: list[int], points: int, step: str, value: str) -> None:
    """`points` points, `step` apart, for each of the flat series (`value` computed from the series
    s and the point i), then ANALYZE."""
    bench.conn.execute(
        sql.SQL(
            "INSERT INTO flat (series_id, valid_time, known_time, change_time, value) "
            "SELECT s, %(t0)s::timestamptz + i * %(step)s::interval, %(t0)s, %(t0)s, {} "
            "FROM unnest(%(ids)s::bigint[]) s, generate_series(0, %(n)s - 1) i"
        ).format(sql.SQL(value)),
        {"t0": T0, "ids": ids, "n": points, "step": step},
    )
    bench.conn.execute("ANALYZE flat; ANALYZE series_table")
    bench.conn.commit()


def _versus_db(
    bench: Bench,
    key: str,
    name: str,
    path: str,
    built: tuple[sql.Composed, dict[str, Any]],
    sid: int,
    records: int,
    rows: int,
    per: str = "",
) -> None:
    """GET `path` (a document of `records` records) against its query counted in the database;
    both as `rows` per second."""
    req = Request("GET", path)
    query, params = built
    params["series_id"] = sid
    api, in_db = bench.reps(
        key,
        lambda: rows / bench.counted(req, records).wall,
        lambda: rows / raw.count_seconds(bench.conn, query, params, records),
    )
    bench.add_case(key, name, "rows/s", api, in_db, IN_DB + per)


def query_series(bench: Bench) -> None:
    """POST /values/query over cfg.query_series flat series x cfg.query_points points, as JSON
    (and as Arrow when the server offers it), with the server's peak RSS growth."""
    k, n = bench.cfg.query_series, bench.cfg.query_points
    ids = [
        r[0]
        for r in bench.conn.execute(
            "INSERT INTO series_table (name, unit, labels) SELECT 'query_' || i, 'MW', '{\"bench\": \"query\"}' "
            "FROM generate_series(1, %s) i RETURNING series_id",
            (k,),
        )
    ]
    _fill_flat(bench, ids, n, "1 hour", "(s * 7 + i) %% 1000")
    rows = k * n
    body = orjson.dumps({"filter": {"labels": {"bench": "query"}}})
    query, params = multi_query(ReadSpec(mode=Mode.LATEST))
    params.update(ids=ids, overlapping=[False] * k)
    for fmt in ("json", "arrow"):
        req = Request("POST", "/values/query" + ("" if fmt == "json" else "?format=arrow"), body)
        probe = bench.http.send(req, keep=False)
        if probe.status != 200:
            if fmt == "arrow":
                print(f"  ({req.path}: {probe.status}; no Arrow format yet)", flush=True)
                continue
            raise RuntimeError(f"{req.path} -> {probe.status}: {probe.body[:300]!r}")
        peaks: list[float] = []

        def api_rep(req: Request = req, fmt: str = fmt, peaks: list[float] = peaks) -> float:
            with PeakRss(bench.server.pid) as peak:
                reply = bench.counted(req, rows) if fmt == "json" else bench.http.send(req, keep=False)
            if reply.status != 200:
                raise RuntimeError(f"{req.path} -> {reply.status}")
            peaks.append(peak.growth / MB)
            return rows / reply.wall

        api, in_db = bench.reps(
            f"query_{fmt}", api_rep, lambda: rows / raw.count_seconds(bench.conn, query, params, rows)
        )
        name = f"POST /values/query {fmt}, {k:,} series x {n:,} points"
        bench.add_case(f"query_{fmt}", name, "rows/s", api, in_db, IN_DB, {"rss_growth_mb": peaks})
        print(f"    peak RSS growth {max(peaks):.1f} MB (worst rep)", flush=True)


def targets(cfg: Config) -> list[Target]:
    return [
        Rate(
            "day-ahead latest read: >= 150,000 rows/s and >= 50% of in-database",
            "read_day_ahead",
            floor=150_000,
            share=0.50,
            detail="{api} rows/s, {ratio} of in-database",
        ),
        Rate(
            "resample 15-minute points to hourly means: >= 1,000,000 input rows/s",
            "resample_hourly",
            floor=1_000_000,
            detail="{api} input rows/s",
        ),
        Rate("POST /values/query as JSON: >= 250,000 rows/s", "query_json", floor=250_000),
        Rate(
            "POST /values/query as Arrow: >= 700,000 rows/s and >= 2x JSON",
            "query_arrow",
            floor=700_000,
            base="query_json",
            relative=2,
            detail="{api} rows/s, {times:.1f}x JSON",
        ),
        *(Peak("{name}: peak RSS growth < 100 MB", f"query_{fmt}", limit_mb=100) for fmt in ("json", "arrow")),
    ]


GROUP = Group("backtest", run, targets)
