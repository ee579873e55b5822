"""GET /series/count and GET /series?name=... over the series catalogue, under load (case 4)."""

from __future__ import annotations

from functools import partial
from typing import Any

from bench.config import Config
from bench.context import Bench, Group
from bench.report import Target
from bench.targets import Rate


def run(bench: Bench) -> None:
    cfg = bench.cfg
    total = bench.api("GET", "/series/count")["count"]
    one = bench.api("GET", "/series?name=filler_00001")
    assert len(one) == 1 and one[0]["name"] == "filler_00001", one
    print(f"series endpoints ({total:,} series, {cfg.clients} clients, {bench.client})", flush=True)
    by_name = [f"GET /series?name=filler_{i:05d}" for i in range(cfg.series)]
    for key, name, lines in (
        ("series_count", f"GET /series/count ({total:,} series, {cfg.clients} clients)", ["GET /series/count"]),
        ("series_by_name", f"GET /series?name=... ({total:,} series, {cfg.clients} clients)", by_name),
    ):
        runs: list[dict[str, Any]] = []
        api, _ = bench.reps(key, partial(bench.loop, lines, cfg.clients, runs))
        bench.add_case(key, name, "req/s", api, extra={"series": total, "load": runs})


def targets(cfg: Config) -> list[Target]:
    return [
        Rate(
            f"GET /series/count over {cfg.series:,} series, {cfg.clients} clients: >= 1,000 req/s",
            "series_count",
            1_000,
        )
    ]


GROUP = Group("series", run, targets)
