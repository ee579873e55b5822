"""Scale (issue 14): POST /values and a latest read on the nearly empty tables, then the same cases
once `overlapping` holds >= cfg.scale_rows rows (preloaded, not timed); then `timedb retention
apply` removing a month of cfg.retention_rows rows.

Not part of a default run (about 15 minutes and 15 GB for 100,000,000 rows): name it,
`python bench/run.py --only scale`, on a database of its own, so "empty" means empty. A smoke
run runs it with tiny sizes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.cases import inserts, reads
from bench.config import Config
from bench.context import Bench, Group
from bench.report import Target
from bench.targets import Rate, Seconds
from timedb.db import read_query as read

INSERT_SIZE = 10_000
READ_POINTS = 1_000
BIG_SERIES = 500  # series of the big fill; each: valid_times hourly from 2020 x cfg.revisions revisions
RETENTION_MONTH = "2001-03-01"  # the month of short-tier rows that `timedb retention apply` removes
FILL_WORKERS = 2


def run(bench: Bench) -> None:
    cfg = bench.cfg
    read_sid = bench.series("scale_read", True)
    _overlapping(bench.db.dsn, [read_sid], READ_POINTS, cfg.revisions, "2020-01-01")
    _measure(bench, "empty", read_sid)
    started = time.perf_counter()
    _fill(bench)
    rows = bench.count_rows("overlapping")
    print(f"  overlapping holds {rows:,} rows ({time.perf_counter() - started:.0f} s to fill, not timed)", flush=True)
    _measure(bench, "big", read_sid, {"table_rows": rows})
    _retention(bench)


def _measure(bench: Bench, state: str, read_sid: int, extra: dict[str, int] | None = None) -> None:
    inserts.measure(
        bench,
        f"scale_insert_{state}",
        f"POST /values overlapping, {INSERT_SIZE:,} points/request, {state} table",
        "overlapping",
        INSERT_SIZE,
        extra,
    )
    name = f"GET /values latest, {READ_POINTS:,} points ({bench.cfg.revisions} revisions each), {state} table"
    reads.measure(bench, f"scale_read_{state}", name, read_sid, READ_POINTS, read.Mode.LATEST)


def _overlapping(dsn: str, sids: list[int], points: int, revisions: int, start: str) -> None:
    """`revisions` batches per series and their versions of `points` hourly valid_times, in key order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT timedb_ensure_partitions('overlapping', array(SELECT %s::timestamptz + m * interval '1 month'"
            " FROM generate_series(0, %s) AS m))",
            (start, points // 672 + 1),
        )
        for sid in sids:
            with conn.transaction():
                batches = conn.execute(
                    "INSERT INTO batches_table (series_id, workflow_id, known_time)"
                    " SELECT %s, 'bench-scale', '2019-12-01+00'::timestamptz + r * interval '1 day'"
                    " FROM generate_series(0, %s - 1) AS r RETURNING batch_id, known_time",
                    (sid, revisions),
                ).fetchall()
                conn.execute(
                    "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, change_time, value)"
                    " SELECT b.id, %s, %s::timestamptz + i * interval '1 hour', b.kt, b.kt, i"
                    " FROM generate_series(0, %s - 1) AS i, unnest(%s::bigint[], %s::timestamptz[]) AS b(id, kt)"
                    " ORDER BY 3, 4 DESC",
                    (sid, start, points, [b[0] for b in batches], [b[1] for b in batches]),
                )


def _fill(bench: Bench) -> None:
    """BIG_SERIES forever-tier series (retention must leave them) bringing overlapping to
    cfg.scale_rows rows, by FILL_WORKERS connections."""
    cfg = bench.cfg
    points = max(1, cfg.scale_rows // (BIG_SERIES * cfg.revisions))
    out = bench.api(
        "POST",
        "/series/bulk",
        {
            "series": [
                {"name": f"scale_{i:04d}", "overlapping": True, "retention": "forever", "unit": "MW"}
                for i in range(BIG_SERIES)
            ]
        },
    )
    sids = [s["series_id"] for s in out["series"]]
    print(f"  filling overlapping: {BIG_SERIES} series x {points:,} hours x {cfg.revisions} revisions", flush=True)
    with ThreadPoolExecutor(FILL_WORKERS) as pool:
        list(
            pool.map(
                lambda k: _overlapping(bench.db.dsn, sids[k::FILL_WORKERS], points, cfg.revisions, "2020-01-01"),
                range(FILL_WORKERS),
            )
        )
    with psycopg.connect(bench.db.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def _retention(bench: Bench) -> None:
    """A month of cfg.retention_rows rows of short-tier flat series (every other series made
    forever first, so only that month expires), then `timedb retention apply`, timed as a user
    runs it (a new process, its connection and planning included)."""
    cfg = bench.cfg
    per_series = 31 * 24 * 60  # one value a minute through March
    n_series = max(1, cfg.retention_rows // per_series)
    rows = n_series * per_series
    with psycopg.connect(bench.db.dsn, autocommit=True) as conn:
        conn.execute("UPDATE series_table SET retention = 'forever'")
        first = conn.execute(
            "INSERT INTO series_table (name, retention) SELECT 'expired_' || i, 'short'"
            " FROM generate_series(1, %s) AS i RETURNING series_id",
            (n_series,),
        ).fetchall()
        sids = [r[0] for r in first]
        conn.execute("SELECT timedb_ensure_partitions('flat', ARRAY[%s::timestamptz])", (RETENTION_MONTH,))
        conn.execute(
            "INSERT INTO flat (series_id, valid_time, value)"
            " SELECT s, %s::timestamptz + i * interval '1 minute', i"
            " FROM unnest(%s::bigint[]) AS s, generate_series(0, %s - 1) AS i ORDER BY 1, 2",
            (RETENTION_MONTH, sids, per_series),
        )
        conn.execute("VACUUM ANALYZE flat")
        conn.execute("CHECKPOINT")
    print(f"  timedb retention apply: a month of {rows:,} rows", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "timedb", "retention", "apply", "--dsn", bench.db.dsn],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TIMEDB_DSN": ""},
    )
    seconds = time.perf_counter() - started
    removed = re.search(r"Removed ([\d,]+) rows: (\d+) partitions? dropped", done.stdout)
    if done.returncode != 0 or not removed or int(removed[1].replace(",", "")) != rows:
        raise RuntimeError(f"timedb retention apply: exit {done.returncode}\n{done.stdout}{done.stderr}")
    bench.report.extra["retention_apply"] = {"seconds": [seconds], "rows": rows, "partitions_dropped": int(removed[2])}
    print(f"  removed {rows:,} rows in {seconds:.2f} s ({removed[2]} partition dropped)", flush=True)


def targets(cfg: Config) -> list[Target]:
    rel = {"insert": "{rel} ({api} vs {base} rows/s)", "read": "{rel} ({api} vs {base} rows/s)"}
    return [
        Rate(
            f"scale: {what} with overlapping holding >= {cfg.scale_rows:,} rows within 20% of the empty table",
            f"scale_{what}_big",
            base=f"scale_{what}_empty",
            relative=0.80,
            detail=detail,
        )
        for what, detail in rel.items()
    ] + [
        Seconds(
            f"timedb retention apply removing a month of {cfg.retention_rows:,} rows < 5 s",
            ("retention_apply",),
            {"seconds": 5},
            "{seconds:.2f} s",
        )
    ]


GROUP = Group("scale", run, targets)
