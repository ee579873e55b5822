"""The run's sizes and options (full run, smoke run) and the command line that sets them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import load

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# sections a full run leaves out unless named with --only (bench/cases/scale.py: ~15 min, 15 GB)
OPT_IN = ("scale",)


@dataclass
class Config:
    dsn: str
    insert_sizes: list[int] = field(default_factory=lambda: [100, 10_000, 100_000])
    read_sizes: list[int] = field(default_factory=lambda: [1_000, 100_000, 1_000_000])
    versions_rows: int = 100_000
    revisions: int = 10
    series: int = 10_000
    clients: int = 16
    corrections: list[int] = field(default_factory=lambda: [1, 100])
    big_rows: int = 10_000_000  # rows each fact table holds for the growth and correction cases
    memory_body_mb: float = 100.0  # size of the POST /values whose peak memory is measured
    resample_points: int = 1_000_000  # 15-minute points resampled to hourly means
    query_series: int = 1_000  # series x points of the POST /values/query case
    query_points: int = 1_000
    bulk_series: int = 1_000  # overlapping series x rows of one POST /values/bulk run
    bulk_points: int = 1_000
    bulk_new_series: int = 10_000  # series of one POST /series/bulk
    skip_points: int = 100_000  # points re-sent with skip_unchanged
    reps: int = 3
    duration: float = 5.0  # seconds per repetition of a request loop (wrk)
    rep_rows: int = 200_000  # rows per repetition when one request is small (python client, raw loops)
    client: str = "auto"
    smoke: bool = False
    keep_db: bool = False
    json_out: str | None = None
    port: int = 0
    server_log: str | None = None
    scale_rows: int = 100_000_000  # rows overlapping holds for the scale cases (--only scale)
    retention_rows: int = 10_000_000  # rows of the month `timedb retention apply` removes
    only: list[str] = field(default_factory=list)  # the sections to run (parse_args: all of them)

    @classmethod
    def smoke_config(cls, dsn: str) -> Config:
        return cls(
            dsn=dsn,
            insert_sizes=[100, 1_000],
            read_sizes=[100, 2_000, 5_000],
            versions_rows=2_000,
            revisions=3,
            series=100,
            clients=4,
            corrections=[1, 10],
            big_rows=20_000,
            memory_body_mb=2.0,
            resample_points=4_000,
            query_series=20,
            query_points=300,
            bulk_series=10,
            bulk_points=100,
            bulk_new_series=200,
            skip_points=2_000,
            scale_rows=60_000,
            retention_rows=1,
            reps=1,
            duration=1.0,
            rep_rows=2_000,
            smoke=True,
        )


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


SIZE_FLAGS = (  # each sets the Config field of its name
    ("--insert-sizes", ints, "points per POST /values (default 100,10000,100000)"),
    ("--read-sizes", ints, "points per latest read (default 1000,100000,1000000)"),
    ("--versions-rows", int, "rows of the versions=true read (default 100000)"),
    ("--revisions", int, "revisions per valid_time of the read series (default 10)"),
    ("--series", int, "series in the catalogue (default 10000)"),
    ("--clients", int, "concurrent clients for the series endpoints (default 16)"),
    ("--corrections", ints, "corrections per PUT /values (default 1,100)"),
    ("--big-rows", int, "rows each fact table holds before the growth and correction cases (default 10000000)"),
    ("--memory-body-mb", float, "size of the POST whose peak memory is measured (default 100)"),
    ("--resample-points", int, "15-minute points of the resample case (default 1000000)"),
    ("--query-series", int, "series of the POST /values/query case (default 1000)"),
    ("--query-points", int, "points per series of the query case (default 1000)"),
    ("--bulk-series", int, "overlapping series of the bulk load (default 1000)"),
    ("--bulk-points", int, "rows per series of the bulk load (default 1000)"),
    ("--bulk-new-series", int, "series of POST /series/bulk (default 10000)"),
    ("--skip-points", int, "points re-sent with skip_unchanged (default 100000)"),
    ("--scale-rows", int, "rows overlapping holds for the scale cases (default 100000000)"),
    ("--retention-rows", int, "rows of the month retention removes in the scale cases (default 10000000)"),
    ("--reps", int, "repetitions per case (default 3)"),
    ("--duration", float, "seconds per repetition of a request loop (default 5)"),
    ("--rep-rows", int, "rows per repetition of small-request cases (default 200000)"),
)


def parse_args(argv: list[str] | None, description: str | None, sections: Sequence[str]) -> Config:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dsn",
        default=os.environ.get("TIMEDB_BENCH_DSN", DEFAULT_DSN),
        help="admin DSN; a fresh database is created on its server (env TIMEDB_BENCH_DSN)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, checks every reply (CI)")
    for flag, kind, text in SIZE_FLAGS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator for request loops (auto: wrk when installed)",
    )
    p.add_argument("--json", dest="json_out", help="write the results as JSON to this path")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--server-log", help="uvicorn output (default: a temporary file)")
    p.add_argument("--keep-db", action="store_true", help="do not drop the benchmark database")
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=None,
        help=f"comma-separated sections to run, of {','.join(sections)} (default: all but {','.join(OPT_IN)};"
        " a smoke run: all)",
    )
    a = p.parse_args(argv)
    cfg = Config.smoke_config(a.dsn) if a.smoke else Config(dsn=a.dsn)
    for flag, _, _ in SIZE_FLAGS:
        name = flag[2:].replace("-", "_")
        value = getattr(a, name)
        if value is not None:
            setattr(cfg, name, value)
    cfg.client, cfg.json_out, cfg.port, cfg.keep_db = a.client, a.json_out, a.port, a.keep_db
    cfg.server_log = a.server_log
    cfg.only = a.only or [s for s in sections if a.smoke or s not in OPT_IN]
    unknown = set(cfg.only) - set(sections)
    if unknown:
        p.error(f"--only: unknown sections {sorted(unknown)}")
    if cfg.client == "wrk" and not load.have_wrk():
        p.error("--client wrk: wrk is not installed (apt-get install wrk)")
    return cfg
