"""Kinds of speed targets, declared as data by each case group (`targets(cfg)` in bench/cases/)
and judged by the report on the measured medians after the run.

The texts are templates filled from what is judged: the target's text may name the case's
`{name}` and its extra fields (e.g. `{table_rows:,}`); the detail of a Rate may name `{api}`,
`{unit}`, `{raw}`, `{ratio}` (API / raw), `{base}`, `{rel}` and `{times}` (API / the base case's
API, as a percentage and as a number); of a Peak `{rss}`; of a Seconds its timings.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.report import Case, fmt, pct

Verdict = tuple[str, bool, str]  # the target's text, met, the measured detail


@dataclass(frozen=True)
class Rate:
    """A case's API median >= floor, its ratio to the raw side >= share and, with a base case,
    its API median >= relative x the base case's."""

    target: str
    key: str
    floor: float = 0
    share: float = 0
    base: str | None = None
    relative: float = 0
    detail: str = "{api} {unit}"

    def verdict(self, cases: dict[str, Case], extra: dict[str, Any]) -> Verdict | None:
        case = cases.get(self.key)
        base = cases.get(self.base) if self.base else None
        if case is None or (self.base and base is None):
            return None
        api = case.api["median"]
        times = api / base.api["median"] if base else 1.0
        ok = api >= self.floor and (case.ratio or 0) >= self.share and times >= self.relative
        fields = {
            **case.extra,
            "name": case.name,
            "unit": case.unit,
            "api": fmt(api),
            "raw": fmt(case.raw["median"] if case.raw else 0),
            "ratio": pct(case.ratio),
            "base": fmt(base.api["median"]) if base else "-",
            "rel": pct(times),
            "times": times,
        }
        return self.target.format(**fields), ok, self.detail.format(**fields)


@dataclass(frozen=True)
class Peak:
    """The server's peak RSS growth during a case's requests (worst repetition) < limit_mb."""

    target: str
    key: str
    limit_mb: float
    detail: str = "{rss:.1f} MB (worst rep)"

    def verdict(self, cases: dict[str, Case], extra: dict[str, Any]) -> Verdict | None:
        case = cases.get(self.key)
        if case is None or "rss_growth_mb" not in case.extra:
            return None
        fields = {**case.extra, "name": case.name, "rss": max(case.extra["rss_growth_mb"])}
        return self.target.format(**fields), fields["rss"] < self.limit_mb, self.detail.format(**fields)


@dataclass(frozen=True)
class Seconds:
    """Timings the run keeps outside the cases (the report's extra at `path`, lists of seconds):
    the median of each timing in `below` < its limit, a number of seconds or another timing."""

    target: str
    path: tuple[str, ...]
    below: dict[str, float | str]
    detail: str

    def verdict(self, cases: dict[str, Case], extra: dict[str, Any]) -> Verdict | None:
        data: Any = extra
        for part in self.path:
            data = data.get(part) if isinstance(data, dict) else None
        if not data:
            return None
        medians = {k: statistics.median(v) for k, v in data.items() if isinstance(v, list)}
        ok = all(medians[k] < (medians[v] if isinstance(v, str) else v) for k, v in self.below.items())
        return self.target.format(**medians), ok, self.detail.format(**medians)
