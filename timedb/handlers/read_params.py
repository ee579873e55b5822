"""The read parameters shared by GET /values and POST /values/query, checked and turned into a ReadSpec."""

from __future__ import annotations

from datetime import time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from timedb.db.read_query import AGGREGATES, Mode, ReadSpec, Resample, Window
from timedb.durations import parse_duration, parse_span
from timedb.errors import InvalidInput
from timedb.timestamps import parse_optional

CALENDAR = {"P1D": "day", "P1W": "week", "P1M": "month"}
DAY = 86400


@cache
def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"tz: {name!r} is not an IANA time zone name (e.g. Europe/Berlin, UTC).", query="tz"
        ) from None
    return name


def _resample(text: str, agg: str, tz: str) -> Resample:
    key = text.strip().upper()
    if key in CALENDAR:
        return Resample(CALENDAR[key], agg=agg, tz=tz)
    duration = parse_duration(text, "resample")
    seconds = duration.span.total_seconds()
    if duration.calendar or not (60 <= seconds <= DAY / 2) or seconds != int(seconds) or DAY % seconds:
        raise InvalidInput(
            f"resample: {text!r} is not supported: use PT1M to PT12H dividing a day "
            "(PT15M, PT1H, PT6H, ...), P1D, P1W or P1M.",
            query="resample",
        )
    return Resample("second", int(seconds), agg=agg, tz=tz)


def read_spec(
    mode: Mode,
    *,
    start_valid: str | None = None,
    end_valid: str | None = None,
    start_known: str | None = None,
    end_known: str | None = None,
    changed_before: str | None = None,
    as_of: str | None = None,
    min_horizon: str | None = None,
    max_horizon: str | None = None,
    days_ahead: int | None = None,
    issue_time: str | None = None,
    tz: str | None = None,
    resample: str | None = None,
    agg: str | None = None,
    unit: str | None = None,
) -> ReadSpec:
    """The ReadSpec of these parameters; a 400 naming the parameter for what the spec's
    schemas cannot say."""
    zone = _zone(tz) if tz is not None else "UTC"
    if issue_time is not None and days_ahead is None:
        raise InvalidInput(
            "issue_time: give days_ahead too (issue_time is the local time of day of the "
            "cutoff, days_ahead its number of days before the valid_time's date).",
            query="issue_time",
        )
    lo = parse_span(min_horizon, "min_horizon") if min_horizon is not None else None
    hi = parse_span(max_horizon, "max_horizon") if max_horizon is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput("min_horizon: it is longer than max_horizon.", query="min_horizon")
    if agg is not None and resample is None:
        raise InvalidInput("agg: give resample too (agg is how each resample bucket is aggregated).", query="agg")
    if agg is not None and agg not in AGGREGATES:
        raise InvalidInput(f"agg: {agg!r} is not one of {', '.join(AGGREGATES)}.", query="agg")
    if resample is not None and mode is Mode.AUDIT:
        raise InvalidInput(
            "resample: works with latest and versions reads, not with the audit trail.", query="resample"
        )
    window = Window(
        start_valid=parse_optional(start_valid, "start_valid"),
        end_valid=parse_optional(end_valid, "end_valid"),
        start_known=parse_optional(start_known, "start_known"),
        end_known=parse_optional(end_known, "end_known"),
        changed_before=parse_optional(changed_before, "changed_before"),
        as_of=parse_optional(as_of, "as_of"),
        min_horizon=lo,
        max_horizon=hi,
        days_ahead=days_ahead,
        issue_time=time.fromisoformat(issue_time) if issue_time is not None else None,
        tz=zone,
    )
    return ReadSpec(
        window=window,
        mode=mode,
        resample=_resample(resample, agg or "mean", zone) if resample is not None else None,
        out_tz=zone if tz is not None else None,
        unit=unit,
    )


def spec_args(source: dict[str, Any]) -> dict[str, Any]:
    """The read parameters present in a dict (a query body), for read_spec."""
    names = read_spec.__kwdefaults__ or {}
    return {k: source[k] for k in names if source.get(k) is not None}
