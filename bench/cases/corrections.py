"""PUT /values (case 3): 1 and 100 corrections per request on the flat and overlapping tables once
they hold >= cfg.big_rows rows, against timedb.db.corrections.apply_corrections without HTTP."""

from __future__ import annotations

from itertools import cycle, islice
from typing import Any

from bench import raw
from bench.config import Config
from bench.context import Bench, Group
from bench.data import TABLES, corrections_body, valid_times, values
from bench.report import Target
from bench.targets import Rate
from timedb.db import corrections as fix


def run(bench: Bench) -> None:
    data = bench.preloaded()
    big = max(bench.cfg.read_sizes)
    for n in bench.cfg.corrections:
        measure(bench, "flat", data.correct_flat_series, data.correct_flat_points, n)
        measure(bench, "overlapping", data.read_series[big], big, n)


def measure(bench: Bench, kind: str, sid: int, points: int, n: int) -> None:
    """n corrections per request of distinct points of a series of `points` points."""
    key = f"correct_{kind}_{n}"
    nbodies = max(1, min(1_000, 100_000 // n, points // n))
    stride = max(n, points // nbodies)
    starts = [j * stride for j in range(nbodies)]
    bodies = [corrections_body(sid, s, n, seed=j + 1) for j, s in enumerate(starts)]
    out = bench.api("PUT", "/values", bodies[0])
    assert len(out["updated"]) == n, out
    table_rows = bench.count_rows(kind)
    lines = [f"PUT /values {b.decode()}" for b in bodies]
    runs: list[dict[str, Any]] = []
    items = [
        [
            fix.Correction(
                series_id=sid,
                overlapping=kind == "overlapping",
                valid_time=t,
                fields={"value": v, "changed_by": "bench"},
            )
            for t, v in zip(valid_times(n, s), values(n, j + 7))
        ]
        for j, s in enumerate(starts)
    ]
    rounds = cycle(items)  # the raw side's requests, continued from one repetition to the next
    per_rep = max(1, min(len(bodies) * 4, bench.cfg.rep_rows // (10 * n)))
    api, raw_rates = bench.reps(
        key,
        lambda: n * bench.loop(lines, 1, runs),
        lambda: per_rep * n / raw.corrections_seconds(bench.conn, islice(rounds, per_rep)),
    )
    bench.add_case(
        key,
        f"PUT /values {kind}, {n} correction{'s' if n > 1 else ''}/request (table of {table_rows:,} rows)",
        "corrections/s",
        api,
        raw_rates,
        "timedb.db.corrections.apply_corrections, no HTTP",
        {"table_rows": table_rows, "load": runs},
    )


def targets(cfg: Config) -> list[Target]:
    n = max(cfg.corrections)
    return [
        Rate(f"{n} corrections/request, {kind}: >= 20,000 corrections/s", f"correct_{kind}_{n}", 20_000)
        for kind in TABLES
    ]


GROUP = Group("corrections", run, targets)
