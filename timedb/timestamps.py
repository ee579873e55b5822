"""Parse request timestamps: ISO-8601 / RFC 3339, naive taken as UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from timedb.errors import Unprocessable

# the spec's Timestamp pattern (openapi/timedb.yaml; tests/unit/test_points.py keeps them equal)
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9](\.[0-9]{1,9})?)?([Zz]|[+ -]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$"
)

_fromiso = datetime.fromisoformat
# "+01:00" arrives as " 01:00" when a client forgets to URL-encode '+'
_SPACE_OFFSET = re.compile(r"(\d) (\d{2}(:?\d{2})?)$")


def _slow_parse(text: str) -> datetime:
    fixed = _SPACE_OFFSET.sub(r"\1+\2", text.upper())
    return _fromiso(fixed)


def parse_timestamp(text: str, field: str = "timestamp") -> datetime:
    """An aware datetime for `text`; naive input is UTC. Invalid dates -> 422."""
    try:
        try:
            dt = _fromiso(text)
        except ValueError:
            dt = _slow_parse(text)
        if dt.tzinfo is None:
            return dt.replace(tzinfo=UTC)
        dt.astimezone(UTC)  # out-of-range offsets near year 1 / 9999 fail here
        return dt
    except (ValueError, OverflowError, TypeError):
        raise Unprocessable(f"{field}: {text!r} is not a valid timestamp.") from None


def parse_optional(text: str | None, field: str) -> datetime | None:
    """parse_timestamp, passing None through."""
    return None if text is None else parse_timestamp(text, field)
