#!/usr/bin/env python
"""Benchmark the timedb server over HTTP against raw PostgreSQL, in one run, on one database.

    python bench/run.py --dsn postgresql://postgres@127.0.0.1:5432/postgres          # full run
    python bench/run.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --smoke  # CI, seconds

The DSN names a server and a database to connect to for administration; the run
creates a fresh database `timedb_bench_<random>` there, applies the schema, starts
one uvicorn worker (`uvicorn timedb.api:app`, like a default `timedb api`),
measures, and drops the database. See bench/README.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# bench.* is imported as a package: the repository on the path, this folder off it (so that its
# modules, e.g. config or server, cannot shadow libraries of the same name)
sys.path[:] = [str(REPO)] + [p for p in sys.path if p != str(REPO / "bench")]

from bench import config, preload  # noqa: E402
from bench.cases import GROUPS, SECTIONS  # noqa: E402
from bench.context import Bench  # noqa: E402
from bench.report import Report  # noqa: E402
from bench.server import Database, Server, free_port, postgres_version  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse_args(argv, __doc__, SECTIONS)
    started = time.perf_counter()
    db = Database(cfg.dsn)
    db.create()
    port = cfg.port or free_port()
    log_path = cfg.server_log or tempfile.mkstemp(prefix="timedb-bench-server-", suffix=".log")[1]
    server = Server(db.dsn, port, log_path)
    report = Report(cfg)
    bench = None
    try:
        server.start()
        bench = Bench(cfg, db, server, report)
        print(f"database {db.name}, server pid {server.pid} on port {port}, load client: {bench.client}", flush=True)
        preload.catalogue(bench)
        for group in GROUPS:
            if group.section in cfg.only:
                group.run(bench)
    finally:
        if bench is not None:
            bench.close()
        server.stop()
        if not cfg.keep_db:
            db.drop()
    report.judge(target for group in GROUPS for target in group.targets(cfg))
    print()
    print(report.table())
    elapsed = time.perf_counter() - started
    print(
        f"\n{len(report.cases)} cases in {elapsed:.0f}s; load client: {bench.client}; machine: {os.cpu_count()} cores",
        flush=True,
    )
    if cfg.json_out:
        meta = {
            "date": datetime.now(UTC).isoformat(),
            "elapsed_s": elapsed,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_client": bench.client,
            "postgres": postgres_version(cfg.dsn),
            "loadavg_end": os.getloadavg(),
        }
        Path(cfg.json_out).write_text(json.dumps(report.to_json(meta), indent=1, default=str))
        print(f"results: {cfg.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
