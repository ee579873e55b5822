"""POST /values (case 1): flat and overlapping series, cfg.insert_sizes points per request, against
binary COPY of the same rows (the server's COPY statement), one transaction per request-sized chunk."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from bench import raw
from bench.config import Config
from bench.context import Bench, Group
from bench.data import TABLES, Points
from bench.httpclient import LABEL, Request
from bench.report import Target
from bench.targets import Rate

SEQUENTIAL_BELOW = 50_000  # smaller requests run in a request loop (wrk, one connection)


def run(bench: Bench) -> None:
    # largest first, so "empty table" means nearly empty for the growth comparison
    for size in sorted(bench.cfg.insert_sizes, reverse=True):
        for kind in TABLES:
            seq = " (sequential)" if size < SEQUENTIAL_BELOW else ""
            measure(bench, f"insert_{kind}_{size}", f"POST /values {kind}, {size:,} points/request{seq}", kind, size)


def measure(bench: Bench, key: str, name: str, kind: str, size: int, extra: dict[str, Any] | None = None) -> None:
    """POST /values of `size` points into a new series of `kind`, raw COPY into another."""
    overlapping = kind == "overlapping"
    sid_api = bench.series(f"{key}_api", overlapping)
    sid_raw = bench.series(f"{key}_raw", overlapping)
    pts = [Points(size, offset=j * size, seed=j) for j in range(max(1, min(200, 200_000 // size)))]
    reqs = [Request("POST", "/values", p.body(sid_api)) for p in pts]
    per_rep = max(1, bench.cfg.rep_rows // size)
    out = bench.api("POST", "/values", reqs[0].body)  # one warm-up request (plans, pool, caches), not timed
    assert out["rows_inserted"] == size, out
    use_loop = (size < SEQUENTIAL_BELOW and bench.client == "wrk") or size <= 1_000
    lines = [f"POST /values {r.body.decode()}" for r in reqs if r.body] if use_loop else []
    runs: list[dict[str, Any]] = []

    def api_rep() -> float:
        if use_loop:
            return size * bench.loop(lines, 1, runs)
        wall = cpu = 0.0
        for i in range(per_rep):
            reply = bench.http.send(reqs[i % len(reqs)])
            if reply.status != 200 or orjson.loads(reply.body)["rows_inserted"] != size:
                raise RuntimeError(f"POST /values -> {reply.status}: {reply.body[:300]!r}")
            wall += reply.wall
            cpu += reply.client_cpu
        runs.append({"client": LABEL, "seconds": wall, "client_cpu_s": cpu})
        return per_rep * size / wall

    api, raw_rates = bench.reps(key, api_rep, lambda: copy_rate(bench.conn, kind, sid_raw, pts, per_rep))
    info = {"points_per_request": size, "body_bytes": len(reqs[0].body or b""), "load": runs, **(extra or {})}
    bench.add_case(key, name, "rows/s", api, raw_rates, "binary COPY, write_row of parsed rows", info)


def copy_rate(conn: psycopg.Connection, kind: str, sid: int, pts: list[Points], transactions: int) -> float:
    """Rows/s of binary COPY of `transactions` request-sized chunks (the points, cycled) into one series."""
    if kind == "overlapping":
        batches = conn.execute(
            "INSERT INTO batches_table (series_id, workflow_id, known_time) "
            "SELECT %s, 'bench-raw', clock_timestamp() + g * interval '1 millisecond' "
            "FROM generate_series(1, %s) g RETURNING batch_id, known_time",
            (sid, transactions),
        ).fetchall()
        conn.commit()
        chunks = [pts[i % len(pts)].overlapping_rows(b, sid, kt) for i, (b, kt) in enumerate(batches)]
        stmt, types = raw.COPY_OVL, raw.COPY_OVL_TYPES
    else:
        flat = [p.flat_rows(sid) for p in pts]
        chunks = [flat[i % len(flat)] for i in range(transactions)]
        stmt, types = raw.COPY_FLAT, raw.COPY_FLAT_TYPES
    return sum(map(len, chunks)) / raw.copy_seconds(conn, stmt, types, chunks)


def targets(cfg: Config) -> list[Target]:
    big, small = max(cfg.insert_sizes), min(cfg.insert_sizes)
    out: list[Target] = []
    for kind in TABLES:
        out += [
            Rate(
                f"insert {kind}, {big:,} points/request: >= 150,000 rows/s and >= 40% of raw COPY",
                f"insert_{kind}_{big}",
                floor=150_000,
                share=0.40,
                detail="{api} rows/s, {ratio} of raw",
            ),
            Rate(
                f"insert {kind}, {small} points/request (sequential): >= 30,000 rows/s",
                f"insert_{kind}_{small}",
                30_000,
            ),
        ]
    return out


GROUP = Group("inserts", run, targets)
