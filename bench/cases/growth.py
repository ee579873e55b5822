"""Growth: POST /values of the largest insert size into fresh series of the tables once they hold
>= cfg.big_rows rows, against the same case on the (nearly) empty tables (bench/cases/inserts.py)."""

from __future__ import annotations

from bench.cases import inserts
from bench.config import Config
from bench.context import Bench, Group
from bench.data import TABLES
from bench.report import Target
from bench.targets import Rate


def run(bench: Bench) -> None:
    bench.preloaded()  # what fills the tables
    size = max(bench.cfg.insert_sizes)
    for kind in TABLES:
        rows = bench.count_rows(kind)
        name = f"POST /values {kind}, {size:,} points/request, table of {rows:,} rows"
        inserts.measure(bench, f"growth_insert_{kind}", name, kind, size, {"table_rows": rows})


def targets(cfg: Config) -> list[Target]:
    return [
        Rate(
            f"growth: insert into {kind} holding {{table_rows:,}} rows within 80% of an empty one",
            f"growth_insert_{kind}",
            base=f"insert_{kind}_{max(cfg.insert_sizes)}",
            relative=0.80,
            detail="{rel} ({api} vs {base} rows/s)",
        )
        for kind in TABLES
    ]


GROUP = Group("growth", run, targets)
