"""ISO 8601 durations (`PT6H`, `P1D`, `P2DT12H`, `P1W`, `P1M`) for read parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from timedb.errors import InvalidInput

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d{1,6})?)S)?)?$"
)


@dataclass(frozen=True)
class Duration:
    """A duration as calendar months and an exact time span (days count as 24 hours)."""

    months: int
    span: timedelta

    @property
    def calendar(self) -> bool:
        return self.months > 0


def parse_duration(text: str, param: str) -> Duration:
    """A non-negative ISO 8601 duration; anything else is a 400 naming the parameter."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(
            f"{param}: {text!r} is not an ISO 8601 duration such as PT6H, P1D or P2DT12H "
            "(negative durations are not allowed).",
            query=param,
        )
    parts = {k: v for k, v in match.groupdict().items() if v is not None}
    months = int(parts.get("years", 0)) * 12 + int(parts.get("months", 0))
    try:
        span = timedelta(
            weeks=int(parts.get("weeks", 0)),
            days=int(parts.get("days", 0)),
            hours=int(parts.get("hours", 0)),
            minutes=int(parts.get("minutes", 0)),
            seconds=float(parts.get("seconds", 0)),
        )
    except OverflowError:
        raise InvalidInput(f"{param}: {text!r} is too long.", query=param) from None
    return Duration(months, span)


def parse_span(text: str, param: str) -> timedelta:
    """An exact duration (no years or months: their length varies)."""
    duration = parse_duration(text, param)
    if duration.calendar:
        raise InvalidInput(
            f"{param}: {text!r} uses years or months, whose length varies; use days (P30D).", query=param
        )
    return duration.span
