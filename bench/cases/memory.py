"""The server's peak RSS growth while it takes one POST /values of about cfg.memory_body_mb MB
(case 6; a fresh flat series each repetition, on a freshly restarted server, so no earlier
request's heap hides the growth)."""

from __future__ import annotations

import orjson

from bench.context import Bench, Group
from bench.data import Points
from bench.httpclient import Request
from bench.procstat import MB, PeakRss


def run(bench: Bench) -> None:
    bench.restart_server()  # a fresh heap: the growth is the request's own
    sample = len(Points(1000).body(1)) / 1000
    n = int(bench.cfg.memory_body_mb * MB / sample)
    points = Points(n, seed=7)
    growth: list[float] = []
    sizes: list[int] = []
    walls: list[float] = []
    for rep in range(bench.cfg.reps):
        req = Request("POST", "/values", points.body(bench.series(f"memory_{rep}", False)))
        with PeakRss(bench.server.pid) as peak:
            reply = bench.http.send(req)
        size = len(req.body or b"")
        if reply.status != 200 or orjson.loads(reply.body)["rows_inserted"] != n:
            raise RuntimeError(f"POST /values ({size / MB:.0f} MB) -> {reply.status}: {reply.body[:300]!r}")
        growth.append(peak.growth / MB)
        sizes.append(size)
        walls.append(reply.wall)
        del req
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


GROUP = Group("memory", run)
