"""GET /values (case 2): latest reads of the preloaded read series (cfg.read_sizes points,
cfg.revisions revisions each) and a versions=true read, against the server's exact query counted in
the database (and fetched with psycopg); the server's peak RSS during the largest read (case 5)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import orjson

from bench import raw
from bench.config import Config
from bench.context import Bench, Group
from bench.httpclient import LABEL, Reply, Request
from bench.procstat import MB, PeakRss
from bench.report import Target, fmt, summary
from bench.targets import Peak, Rate
from timedb.db import read_query as read


def run(bench: Bench) -> None:
    cfg, data = bench.cfg, bench.preloaded()
    # a fresh server process: the RSS growth of the big read is then not hidden in heap
    # that earlier 100,000-point request bodies left behind
    bench.restart_server()
    bench.report.notes.append("the server was restarted before the reads (fresh heap for the RSS case)")
    big = max(cfg.read_sizes)
    for size in cfg.read_sizes:
        name = f"GET /values latest, {size:,} points ({cfg.revisions} revisions each)"
        measure(bench, f"read_latest_{size}", name, data.read_series[size], size, read.Mode.LATEST, rss=size == big)
    rows = data.versions_points * cfg.revisions
    name = f"GET /values versions=true, {rows:,} rows"
    measure(bench, f"read_versions_{cfg.versions_rows}", name, data.versions_series, rows, read.Mode.VERSIONS)


def measure(bench: Bench, key: str, name: str, sid: int, expect: int, mode: read.Mode, rss: bool = False) -> None:
    req = Request("GET", f"/values?series_id={sid}" + ("&versions=true" if mode is read.Mode.VERSIONS else ""))
    query, params = read.build_query(True, read.ReadSpec(mode=mode))
    params["series_id"] = sid
    per_rep = max(1, min(50, bench.cfg.rep_rows // expect))

    def get() -> Reply:
        if not bench.cfg.smoke:  # full run: drained, the count checked
            return bench.counted(req, expect)
        reply = bench.http.send(req)  # smoke: every document parsed and checked
        doc = orjson.loads(reply.body) if reply.status == 200 else {}
        if not doc.get("count") == expect == len(doc.get("data", ())):
            raise RuntimeError(f"GET {req.path} -> {reply.status}: unexpected document {reply.body[:200]!r}...")
        return reply

    get()  # warm-up
    runs: list[dict[str, Any]] = []
    rss_growth: list[float] = []

    def api_rep() -> float:
        wall = cpu = 0.0
        for _ in range(per_rep):
            with PeakRss(bench.server.pid) if rss else nullcontext() as peak:
                reply = get()
            if peak:
                rss_growth.append(peak.growth / MB)
            wall += reply.wall
            cpu += reply.client_cpu
        run = {"client": LABEL, "requests": per_rep, "seconds": wall, "client_cpu_s": cpu}
        run["bytes_per_request"] = reply.nbytes
        if peak:
            run.update(rss_base_mb=peak.base / MB, rss_peak_mb=peak.peak / MB, hwm_reset=peak.hwm_reset)
        runs.append(run)
        return per_rep * expect / wall

    fetched: list[float] = []

    def raw_rep() -> float:
        seconds = sum(raw.count_seconds(bench.conn, query, params, expect, "count(value)") for _ in range(per_rep))
        _, total, n = raw.stream_seconds(bench.conn, query, params)
        if n != expect:
            raise RuntimeError(f"psycopg fetched {n} rows, expected {expect}")
        fetched.append(n / total)
        return per_rep * expect / seconds

    api, in_db = bench.reps(key, api_rep, raw_rep)
    extra: dict[str, Any] = {
        "rows": expect,
        "load": runs,
        "psycopg_fetch_rows_per_s": summary(fetched),
        "query": query.as_string(bench.conn),
    }
    if rss:
        extra["rss_growth_mb"] = rss_growth
    bench.add_case(key, name, "rows/s", api, in_db, "in-database count(value) of the same query", extra)
    print(
        f"    psycopg fetch (cur.stream, binary): {fmt(summary(fetched)['median'])} rows/s"
        + (f"; peak RSS growth {max(rss_growth):.1f} MB" if rss else ""),
        flush=True,
    )


def targets(cfg: Config) -> list[Target]:
    sizes, big = cfg.read_sizes, max(cfg.read_sizes)
    out: list[Target] = [
        Rate(
            f"latest read, {size:,} points, streamed: >= 200,000 rows/s and >= 50% of in-database",
            f"read_latest_{size}",
            floor=200_000,
            share=0.50,
            detail="{api} rows/s, {ratio} of in-database",
        )
        for size in sizes[1:]
    ]
    out.append(
        Rate(
            f"versions read, {cfg.versions_rows:,} rows: >= 250,000 rows/s",
            f"read_versions_{cfg.versions_rows}",
            250_000,
        )
    )
    out.append(Peak(f"{big:,}-point read: peak RSS growth < 100 MB", f"read_latest_{big}", limit_mb=100))
    if len(sizes) > 1:
        out.append(
            Rate(
                f"growth: {big:,}-point read at >= 90% of the {sizes[-2]:,}-point rows/s",
                f"read_latest_{big}",
                base=f"read_latest_{sizes[-2]}",
                relative=0.90,
                detail="{rel}",
            )
        )
    return out


GROUP = Group("reads", run, targets)
