"""A/B: the same request loops against this checkout and another one, alternating round by
round, so that the machine's noise hits both sides alike.

    python bench/ab.py --base /tmp/old [--rounds 6] [--duration 4] [--months 36]

`--base` is another checkout of timedb (e.g. `git worktree add /tmp/old <rev>`). Each side gets a
database of its own, made by its own `create_tables`, and one uvicorn worker running its own code
(PYTHONPATH), holding the same rows: a flat series with hourly values over `--months` months (so
a partitioned layout has that many partitions), an overlapping read series of 1,000 valid times
x 10 revisions. The cases are wrk loops on one connection: latest reads of the read series
without and with a valid_time range, one correction per PUT /values, and POST /values of 100
points (flat) and 10,000 points (overlapping). Prints the median requests/s of each side and B/A.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import orjson
import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load
from bench.config import DEFAULT_DSN
from bench.httpclient import Client
from bench.server import REPO, Server


def make_side(admin: str, code: Path) -> tuple[str, str]:
    """A database with the tables made by the code in `code`; (name, dsn)."""
    name = f"timedb_ab_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(admin, dbname=name)
    subprocess.run(
        [sys.executable, "-c", f"from timedb.db.schema import create_tables; create_tables({dsn!r})"],
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return name, dsn


def fill(dsn: str, port: int, months: int) -> dict[str, int]:
    """The same rows on each side (partitions made first where the layout has them)."""
    ids = {}
    with Client(port) as c:
        for name, overlapping in (("history", False), ("read", True), ("post_flat", False), ("post_fc", True)):
            r = c.request("POST", "/series", orjson.dumps({"name": name, "overlapping": overlapping}))
            ids[name] = orjson.loads(r.body)["series_id"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        partitioned = conn.execute("SELECT to_regproc('timedb_ensure_partitions') IS NOT NULL").fetchone()
        if partitioned and partitioned[0]:
            for table in ("flat", "overlapping"):
                conn.execute(
                    "SELECT timedb_ensure_partitions(%s::regclass, array(SELECT '2023-01-01+00'::timestamptz"
                    " + m * interval '1 month' FROM generate_series(0, %s) AS m))",
                    (table, months + 12),
                )
        conn.execute(
            "INSERT INTO flat (series_id, valid_time, value) SELECT %s, t, 1 FROM generate_series("
            "'2023-01-01+00'::timestamptz, '2023-01-01+00'::timestamptz + %s * interval '1 month' - interval '1 hour',"
            " interval '1 hour') AS t",
            (ids["history"], months),
        )
        batches = conn.execute(
            "INSERT INTO batches_table (series_id, known_time) SELECT %s, '2023-03-01+00'::timestamptz + r * interval"
            " '1 hour' FROM generate_series(0, 9) AS r RETURNING batch_id, known_time",
            (ids["read"],),
        ).fetchall()
        for batch_id, known in batches:
            conn.execute(
                "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value)"
                " SELECT %s, %s, '2023-03-02+00'::timestamptz + i * interval '15 minutes', %s, i"
                " FROM generate_series(0, 999) AS i",
                (batch_id, ids["read"], known),
            )
        conn.execute("VACUUM ANALYZE")
    return ids


def cases(ids: dict[str, int]) -> dict[str, list[str]]:
    """Request lines (bench/load.py) per case."""

    def post(sid: int, n: int, minutes: int) -> str:
        base = 1_748_736_000  # 2025-06-01T00:00:00Z
        data = [{"valid_time": _iso(base + i * minutes * 60), "value": float(i)} for i in range(n)]
        return "POST /values " + orjson.dumps({"series_id": sid, "data": data}).decode()

    read = ids["read"]
    return {
        "GET /values latest, 1,000 points x 10 revisions": [f"GET /values?series_id={read}"],
        "the same with a valid_time range": [
            f"GET /values?series_id={read}&start_valid=2023-03-02T00:00:00Z&end_valid=2023-03-13T00:00:00Z"
        ],
        "PUT /values, 1 correction (flat)": [
            "PUT /values "
            + orjson.dumps(
                {"updates": [{"series_id": ids["history"], "valid_time": _iso(1_685_577_600 + h * 3600), "value": 2.0}]}
            ).decode()
            for h in range(100)  # (2023-06-01 onwards, a different hour each request)
        ],
        "POST /values flat, 100 points": [post(ids["post_flat"], 100, 60)],
        "POST /values overlapping, 10,000 points": [post(ids["post_fc"], 10_000, 15)],
    }


def _iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, type=Path, help="the other checkout (side A)")
    p.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN (a database per side is made and dropped)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--months", type=int, default=36)
    a = p.parse_args()
    sides = {"A (base)": a.base.resolve(), "B (this checkout)": REPO}
    made, servers = [], {}
    try:
        for label, code in sides.items():
            name, dsn = make_side(a.dsn, code)
            made.append(name)
            log = tempfile.NamedTemporaryFile(prefix="timedb-ab-", suffix=".log", delete=False).name
            server = Server(dsn, _free_port(), log, {"PYTHONPATH": str(code)})
            server.start()
            servers[label] = (server, cases(fill(dsn, server.port, a.months)))
        rates: dict[str, dict[str, list[float]]] = {label: {} for label in servers}
        for _ in range(a.rounds):
            for case in next(iter(servers.values()))[1]:
                for label, (server, lines) in servers.items():
                    r = load.run(server.port, lines[case], 1, a.duration, "wrk")  # (raises on a non-2xx)
                    rates[label].setdefault(case, []).append(r["requests"] / r["seconds"])
        print(f"| case ({a.rounds} rounds x {a.duration:g} s, wrk, 1 connection) | A req/s | B req/s | B/A |")
        print("|---|---:|---:|---:|")
        for case in rates["A (base)"]:
            x = statistics.median(rates["A (base)"][case])
            y = statistics.median(rates["B (this checkout)"][case])
            print(f"| {case} | {x:,.1f} | {y:,.1f} | {y / x:.0%} |")
    finally:
        for server, _ in servers.values():
            server.stop()
        with psycopg.connect(a.dsn, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
