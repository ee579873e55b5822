"""Benchmark cases of the backtesting issue (9): a day-ahead read, a resample, and a
multi-series query as JSON and as Arrow; API vs the same SQL in the database, one run."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from datetime import time as clock
from typing import TYPE_CHECKING, Any

import orjson
from psycopg import sql

from bench.httpclient import Client
from bench.procstat import PeakRss
from timedb.db.read_query import Mode, ReadSpec, Resample, Window, build_query, multi_query

if TYPE_CHECKING:
    from bench.run import Bench

MB = 1024 * 1024
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _in_db(bench: Bench, query: sql.Composable, params: dict[str, Any], rows: int) -> float:
    """Rows/s of `SELECT count(q.*) FROM (<query>) q`: every row and every column produced (a
    plain count(*) lets PostgreSQL skip the columns it does not need), none sent."""
    counted = sql.SQL("SELECT count(q.*) FROM ({}) q").format(query)
    t0 = time.perf_counter()
    got = bench.conn.execute(counted, params).fetchone()[0]
    seconds = time.perf_counter() - t0
    bench.conn.rollback()
    if got != rows:
        raise RuntimeError(f"in-database count {got}, expected {rows}")
    return rows / seconds


def _get(bench: Bench, raw: bytes, expect: int, what: str) -> tuple[float, Any]:
    """(seconds, reply) of one request whose JSON document must hold `expect` records."""
    reply = bench.http.send(raw, keep=False)
    tail = b',"count":%d}' % expect
    head = b'{"count":%d,' % expect
    if reply.status != 200 or not (reply.body.endswith(tail) or reply.body.startswith(head)):
        raise RuntimeError(f"{what} -> {reply.status}: {reply.body[:200]!r}...{reply.body[-80:]!r}")
    return reply.wall, reply


def day_ahead(bench: Bench) -> None:
    """Latest read with day-ahead cutoffs (06:00 Europe/Berlin the day before) of the 100,000-point
    read series (10 revisions per valid_time)."""
    size = sorted(bench.cfg.read_sizes)[-2] if len(bench.cfg.read_sizes) > 1 else bench.cfg.read_sizes[0]
    sid = bench.read_series[size]
    path = f"/values?series_id={sid}&days_ahead=1&issue_time=06:00&tz=Europe/Berlin"
    raw = Client.encode("GET", path)
    window = Window(days_ahead=1, issue_time=clock(6), tz="Europe/Berlin")
    query, params = build_query(True, ReadSpec(window=window, out_tz="Europe/Berlin"))
    params["series_id"] = sid

    def api_rep() -> float:
        return size / _get(bench, raw, size, path)[0]

    api, raw_rates = bench.reps("read_day_ahead", api_rep, lambda: _in_db(bench, query, params, size))
    bench.add_case(
        "read_day_ahead",
        f"GET /values day-ahead (days_ahead=1, 06:00 Europe/Berlin), {size:,} points "
        f"({bench.cfg.revisions} revisions each)",
        "rows/s",
        api,
        raw_rates,
        "in-database count of the same query",
    )


def resample(bench: Bench) -> None:
    """Hourly means of a flat series of cfg.resample_points 15-minute points (input rows/s)."""
    n = bench.cfg.resample_points
    sid = bench.series("resample_15min", False)
    bench.conn.execute(
        "INSERT INTO flat (series_id, valid_time, known_time, change_time, value) "
        "SELECT %(sid)s, %(t0)s::timestamptz + i * interval '15 minutes', %(t0)s, %(t0)s, (i %% 1000) / 7.0 "
        "FROM generate_series(0, %(n)s - 1) i",
        {"sid": sid, "t0": T0, "n": n},
    )
    bench.conn.execute("ANALYZE flat")
    bench.conn.commit()
    hours = (n + 3) // 4
    path = f"/values?series_id={sid}&resample=PT1H&agg=mean"
    raw = Client.encode("GET", path)
    query, params = build_query(False, ReadSpec(resample=Resample("second", 3600)))
    params["series_id"] = sid

    def api_rep() -> float:
        return n / _get(bench, raw, hours, path)[0]

    def raw_rep() -> float:
        return n * _in_db(bench, query, params, hours) / hours

    api, raw_rates = bench.reps("resample_hourly", api_rep, raw_rep)
    bench.add_case(
        "resample_hourly",
        f"GET /values resample=PT1H (mean) of {n:,} 15-minute points (input rows/s)",
        "rows/s",
        api,
        raw_rates,
        "in-database count of the same query, input rows/s",
    )


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
    bench.conn.execute(
        "INSERT INTO flat (series_id, valid_time, known_time, change_time, value) "
        "SELECT s, %(t0)s::timestamptz + i * interval '1 hour', %(t0)s, %(t0)s, (s * 7 + i) %% 1000 "
        "FROM unnest(%(ids)s::bigint[]) s, generate_series(0, %(n)s - 1) i",
        {"t0": T0, "ids": ids, "n": n},
    )
    bench.conn.execute("ANALYZE flat; ANALYZE series_table")
    bench.conn.commit()
    rows = k * n
    body = orjson.dumps({"filter": {"labels": {"bench": "query"}}})
    query, params = multi_query(ReadSpec(mode=Mode.LATEST))
    params.update(ids=ids, overlapping=[False] * k)
    peaks: dict[str, list[float]] = {}
    for fmt, key in (("json", "query_json"), ("arrow", "query_arrow")):
        path = "/values/query" + ("" if fmt == "json" else "?format=arrow")
        raw = Client.encode("POST", path, body)
        probe = bench.http.send(raw, keep=False)
        if probe.status != 200:
            if fmt == "arrow":
                print(f"  ({path}: {probe.status}; no Arrow format yet)", flush=True)
                continue
            raise RuntimeError(f"{path} -> {probe.status}: {probe.body[:300]!r}")

        def api_rep(raw: bytes = raw, fmt: str = fmt) -> float:
            with PeakRss(bench.server.pid) as peak:
                if fmt == "json":
                    seconds = _get(bench, raw, rows, "POST /values/query")[0]
                else:
                    reply = bench.http.send(raw, keep=False)
                    if reply.status != 200:
                        raise RuntimeError(f"arrow query -> {reply.status}")
                    seconds = reply.wall
            peaks.setdefault(fmt, []).append(peak.growth / MB)
            return rows / seconds

        api, raw_rates = bench.reps(key, api_rep, lambda: _in_db(bench, query, params, rows))
        case = bench.add_case(
            key,
            f"POST /values/query {fmt}, {k:,} series x {n:,} points",
            "rows/s",
            api,
            raw_rates,
            "in-database count of the same query",
        )
        case.extra["rss_growth_mb"] = peaks[fmt]
        print(f"    peak RSS growth {max(peaks[fmt]):.1f} MB (worst rep)", flush=True)
