"""Access control (issue 11): what checking a token costs.

Two more servers on the bench database, one worker each: one with TIMEDB_AUTH=tokens (every
request sends a write token), one with TIMEDB_AUTH=none (no checks). Repetitions alternate
between them, so both see the same tables and machine load: GET /series/count under load and
sequential 100-point POST /values, both in the request loop (wrk, or Python threads without it).
Runs last: while its token exists, the main server wants tokens too.
"""

from __future__ import annotations

import tempfile
from functools import partial

import orjson

from bench.config import Config
from bench.context import Bench, Group
from bench.data import Points
from bench.httpclient import Client
from bench.report import Target
from bench.server import Server, free_port
from bench.targets import Rate
from timedb.db import tokens as store

POINTS = 100
MODES = ("tokens", "none")


def run(bench: Bench) -> None:
    cfg = bench.cfg
    secret = store.create(bench.conn, "bench", "write", {}, None)
    bench.conn.commit()
    servers: dict[str, Server] = {}
    try:
        for mode in MODES:
            log = tempfile.mkstemp(prefix=f"timedb-bench-auth-{mode}-", suffix=".log")[1]
            servers[mode] = Server(bench.db.dsn, free_port(), log, {"TIMEDB_AUTH": mode})
            servers[mode].start()
        authorization = {"tokens": f"Bearer {secret}", "none": None}
        with Client(servers["none"].port) as c:
            reply = c.request("POST", "/series", orjson.dumps({"name": "auth_bench", "unit": "MW"}))
        sid = int(orjson.loads(reply.body)["series_id"])
        bodies = [Points(POINTS, offset=j * POINTS, seed=j).body(sid).decode() for j in range(200)]
        print(f"access control: TIMEDB_AUTH=tokens vs none ({bench.client})", flush=True)

        def rate(lines: list[str], connections: int, per_request: int, mode: str) -> float:
            port = servers[mode].port
            return per_request * bench.loop(lines, connections, port=port, authorization=authorization[mode])

        for key, name, unit, measure in (
            (
                "auth_series_count",
                f"GET /series/count with a token ({cfg.clients} clients)",
                "req/s",
                partial(rate, ["GET /series/count"], cfg.clients, 1),
            ),
            (
                "auth_insert_100",
                f"POST /values, {POINTS} points/request, with a token (sequential)",
                "rows/s",
                partial(rate, [f"POST /values {b}" for b in bodies], 1, POINTS),
            ),
        ):
            measure("tokens"), measure("none")  # warm-up (plans, pools, the token copy)
            with_token, without = bench.reps(key, partial(measure, "tokens"), partial(measure, "none"))
            case = bench.add_case(
                key, name, unit, with_token, without, "the same server with TIMEDB_AUTH=none", usage=False
            )
            print(
                f"  {name}: {case.api['median']:,.0f} vs {case.raw['median'] if case.raw else 0:,.0f} {unit}",
                flush=True,
            )
    finally:
        for server in servers.values():
            server.stop()
        bench.conn.execute("DELETE FROM api_tokens")
        bench.conn.commit()


def targets(cfg: Config) -> list[Target]:
    return [
        Rate("{name}: within 10% of TIMEDB_AUTH=none", key, share=0.90, detail="{api} vs {raw} ({ratio})")
        for key in ("auth_series_count", "auth_insert_100")
    ]


GROUP = Group("auth", run, targets)
