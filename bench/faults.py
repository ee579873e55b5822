"""Benchmark cases of the reliability issue: the server's peak memory during a large POST, and
the time to the first byte of very large reads (API vs raw PostgreSQL in the same run)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from psycopg import sql

from bench.data import Points
from bench.httpclient import Client
from bench.procstat import PeakRss
from timedb.db import read_query as read
from timedb.db.values_read import CHUNK_ROWS

if TYPE_CHECKING:
    from bench.run import Bench

MB = 1024 * 1024


def memory_post(bench: Bench) -> None:
    """Peak RSS growth of the server process while it takes one POST /values of about
    cfg.memory_body_mb MB (a fresh flat series each repetition; the caller restarts the server
    before, so no earlier request's heap hides the growth)."""
    sample = len(Points(1000).body(1)) / 1000
    n = int(bench.cfg.memory_body_mb * MB / sample)
    points = Points(n, seed=7)
    growth: list[float] = []
    sizes: list[int] = []
    walls: list[float] = []
    for rep in range(bench.cfg.reps):
        sid = bench.series(f"memory_{rep}", False)
        body = points.body(sid)
        raw = Client.encode("POST", "/values", body)
        with PeakRss(bench.server.pid) as peak:
            reply = bench.http.send(raw)
        if reply.status != 200 or orjson.loads(reply.body)["rows_inserted"] != n:
            raise RuntimeError(f"POST /values ({len(body) / MB:.0f} MB) -> {reply.status}: {reply.body[:300]!r}")
        growth.append(peak.growth / MB)
        sizes.append(len(body))
        walls.append(reply.wall)
        del body, raw
    mb = sizes[0] / MB
    print(
        f"  POST /values of {mb:.1f} MB ({n:,} points): server peak RSS growth "
        f"{', '.join(f'{g:.0f}' for g in growth)} MB = {max(growth) / mb:.2f}x the body (worst rep); "
        f"{n / min(walls):,.0f} rows/s",
        flush=True,
    )
    bench.report.extra["memory_post"] = {
        "body_bytes": sizes[0],
        "points": n,
        "rss_growth_mb": growth,
        "worst_ratio": max(growth) / mb,
        "seconds": walls,
    }


def first_byte(bench: Bench) -> None:
    """Time to the first byte and to the last of reads of the largest read series (10 revisions
    per valid_time: 10 M rows at default sizes): latest (1 M records), versions and audit
    (10 M records each); raw PostgreSQL: time to the first and last row of the same query with
    psycopg, and (the query before this change) with count(*) OVER () leading every row."""
    size = max(bench.cfg.read_sizes)
    sid = bench.read_series[size]
    rows = size * bench.cfg.revisions
    cases = {
        read.Mode.LATEST: ("", size),
        read.Mode.VERSIONS: ("&versions=true", rows),
        read.Mode.AUDIT: ("&include_updates=true", rows),
    }
    out: dict[str, Any] = {}
    for mode, (flag, expect) in cases.items():
        reply = bench.http.send(Client.encode("GET", f"/values?series_id={sid}{flag}"), keep=False)
        complete = reply.body.endswith(b',"count":%d}' % expect) or reply.body.startswith(b'{"count":%d,' % expect)
        if reply.status != 200 or not complete:
            raise RuntimeError(f"GET /values{flag} -> {reply.status}: {reply.body[:200]!r}...{reply.body[-60:]!r}")
        query, params = read.build_query(True, read.ReadSpec(mode=mode))
        params["series_id"] = sid
        raw_first, raw_total = _fetch(bench, query, params)
        counted = sql.SQL("SELECT count(*) OVER (), q.* FROM ({}) q").format(query)
        old_first, _ = _fetch(bench, counted, params, first_only=True)
        out[mode.value] = {
            "records": expect,
            "api_first_byte_s": reply.first_byte,
            "api_total_s": reply.wall,
            "bytes": reply.nbytes,
            "raw_first_row_s": raw_first,
            "raw_total_s": raw_total,
            "raw_first_row_with_count_over_s": old_first,
        }
        print(
            f"  GET /values{flag or ' (latest)'} of {expect:,} records ({rows:,} rows stored): first byte "
            f"{reply.first_byte:.2f} s, last {reply.wall:.1f} s ({reply.nbytes / MB:,.0f} MB); raw: first row "
            f"{raw_first:.2f} s, last {raw_total:.1f} s; with count(*) OVER () first row {old_first:.1f} s",
            flush=True,
        )
    bench.report.extra["first_byte"] = out


def _fetch(bench: Bench, query: Any, params: dict[str, Any], first_only: bool = False) -> tuple[float, float]:
    """(seconds to the first row, seconds to the last) of a query streamed with psycopg."""
    t0 = time.perf_counter()
    first = None
    with bench.conn.cursor() as cur:
        stream = cur.stream(query, params, binary=True, size=CHUNK_ROWS)
        for _ in stream:
            if first is None:
                first = time.perf_counter() - t0
                if first_only:
                    stream.close()  # type: ignore[attr-defined]
                    break
    bench.conn.rollback()
    return first or 0.0, time.perf_counter() - t0
