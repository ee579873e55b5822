"""The results: a case per measured rate (median and spread of the repetitions), the printed table,
the targets' verdicts and the JSON document (`--json`)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bench.config import Config


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "reps": values}


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


@dataclass
class Case:
    key: str  # stable id, used by the targets
    name: str
    unit: str
    api: dict[str, Any]
    raw: dict[str, Any] | None = None
    raw_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.raw is None or not self.raw["median"]:
            return None
        return self.api["median"] / self.raw["median"]


class Target(Protocol):
    """A speed target (bench/targets.py): its text, whether it is met and the measured detail,
    or None when its cases were not run."""

    def verdict(self, cases: dict[str, Case], extra: dict[str, Any]) -> tuple[str, bool, str] | None: ...


class Report:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.cases: dict[str, Case] = {}
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}  # measurements that are not rates (e.g. first byte, peak memory)

    def add(self, case: Case) -> Case:
        self.cases[case.key] = case
        api, raw = case.api, case.raw
        line = f"  {case.name}: API {fmt(api['median'])} {case.unit} [{fmt(api['min'])}-{fmt(api['max'])}]"
        if raw is not None:
            line += f"; raw {fmt(raw['median'])} ({case.raw_name}); ratio {case.ratio:.2f}"
        print(line, flush=True)
        return case

    def judge(self, targets: Iterable[Target]) -> None:
        """The targets on the measured medians (not judged in a smoke run: its sizes are tiny)."""
        for target in targets:
            verdict = target.verdict(self.cases, self.extra)
            if verdict is not None:
                text, ok, detail = verdict
                self.targets.append({"target": text, "ok": None if self.cfg.smoke else ok, "detail": detail})

    def table(self) -> str:
        head = (
            "| case | API rate, median (min-max) | raw rate, median | ratio | load client, CPU | server CPU |\n"
            "|---|---:|---:|---:|---|---:|\n"
        )
        rows = []
        for case in self.cases.values():
            api = f"{fmt(case.api['median'])} {case.unit} ({fmt(case.api['min'])}-{fmt(case.api['max'])})"
            raw = "-" if case.raw is None else f"{fmt(case.raw['median'])} ({case.raw_name})"
            ratio = "-" if case.ratio is None else f"{case.ratio:.2f}"
            usage = case.extra.get("usage") or [{}]
            client = (case.extra.get("load") or [{}])[0].get("client", "?")
            bench_cpu = statistics.median(u.get("bench_cores", 0.0) for u in usage)
            server_cpu = statistics.median(u.get("server_cores", 0.0) for u in usage)
            rows.append(
                f"| {case.name} | {api} | {raw} | {ratio} | {client}, {bench_cpu:.2f} cores | {server_cpu:.2f} cores |"
            )
        out = head + "\n".join(rows)
        if self.targets:
            out += "\n\n| target | result | met |\n|---|---|---|\n" + "\n".join(
                f"| {t['target']} | {t['detail']} | "
                f"{'n/a (smoke)' if t['ok'] is None else 'yes' if t['ok'] else '**no**'} |"
                for t in self.targets
            )
        return out

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "meta": meta,
            "config": asdict(self.cfg),
            "cases": [{**asdict(c), "ratio": c.ratio} for c in self.cases.values()],
            "targets": self.targets,
            "notes": self.notes,
            **self.extra,
        }
