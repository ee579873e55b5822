"""Benchmark cases of access control (issue 11): what checking a token costs.

Two more servers on the bench database, one worker each: one with TIMEDB_AUTH=tokens (every
request sends a write token), one with TIMEDB_AUTH=none (no checks). Repetitions alternate
between them, so both see the same tables and machine load: GET /series/count under load and
sequential 100-point POST /values.
"""

from __future__ import annotations

import tempfile
from functools import partial
from typing import TYPE_CHECKING

import orjson

from bench.data import Points
from bench.httpclient import Client
from timedb.db import tokens as store

if TYPE_CHECKING:
    from bench.run import Bench

POINTS = 100


def overhead(bench: Bench) -> None:
    from bench import load
    from bench.run import Case, Server, free_port, summary

    secret = store.create(bench.conn, "bench", "write", {}, None)
    bench.conn.commit()
    servers = {}
    try:
        for mode in ("tokens", "none"):
            log = tempfile.mkstemp(prefix=f"timedb-bench-auth-{mode}-", suffix=".log")[1]
            servers[mode] = Server(bench.db.dsn, free_port(), log, {"TIMEDB_AUTH": mode})
            servers[mode].start()
        authorization = {"tokens": f"Bearer {secret}", "none": None}
        sid = int(
            orjson.loads(
                Client("127.0.0.1", servers["none"].port)
                .request("POST", "/series", orjson.dumps({"name": "auth_bench", "unit": "MW"}))
                .body
            )["series_id"]
        )
        print(f"access control: TIMEDB_AUTH=tokens vs none ({bench.client})", flush=True)

        def count(mode: str) -> float:
            r = load.run(
                servers[mode].port,
                ["GET /series/count"],
                bench.cfg.clients,
                bench.cfg.duration,
                bench.client,
                authorization[mode],
            )
            return r["requests"] / r["seconds"]

        offset = {"i": 0}

        def insert(mode: str) -> float:
            client = Client("127.0.0.1", servers[mode].port)
            n = max(1, bench.cfg.rep_rows // POINTS)
            wall = 0.0
            for _ in range(n):
                offset["i"] += 1
                body = Points(POINTS, offset=offset["i"] * POINTS).body(sid)
                reply = client.send(Client.encode("POST", "/values", body, authorization=authorization[mode]))
                if reply.status != 200:
                    raise RuntimeError(f"POST /values ({mode}) -> {reply.status}: {reply.body[:300]!r}")
                wall += reply.wall
            client.close()
            return n * POINTS / wall

        for key, name, unit, measure in (
            ("auth_series_count", f"GET /series/count with a token ({bench.cfg.clients} clients)", "req/s", count),
            ("auth_insert_100", f"POST /values, {POINTS} points/request, with a token (sequential)", "rows/s", insert),
        ):
            measure("tokens"), measure("none")  # warm-up (plans, pools, the token copy)
            with_token, without = bench.reps(key, partial(measure, "tokens"), partial(measure, "none"))
            bench.report.add(
                Case(
                    key, name, unit, summary(with_token), summary(without), "the same server with TIMEDB_AUTH=none", {}
                )
            )
            print(
                f"  {name}: {summary(with_token)['median']:,.0f} vs {summary(without)['median']:,.0f} {unit}",
                flush=True,
            )
    finally:
        for server in servers.values():
            server.stop()
        bench.conn.execute("DELETE FROM api_tokens")
        bench.conn.commit()
