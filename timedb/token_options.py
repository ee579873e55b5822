"""The options of `timedb tokens`: --labels, --expires, and the listing's rendering."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import orjson

_LIFETIME = re.compile(r"^\s*(\d+)\s*(min|h|d|w|y)\s*$", re.IGNORECASE)
_UNIT = {
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}


def parse_labels(text: str | None) -> dict[str, str]:
    """--labels: a JSON object of strings (the label scope), or none."""
    if text is None:
        return {}
    try:
        labels = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise click.BadParameter('must be a JSON object, e.g. \'{"tenant": "acme"}\'', param_hint="--labels") from None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise click.BadParameter('must be a JSON object of strings, e.g. \'{"tenant": "acme"}\'', param_hint="--labels")
    if any("\x00" in k or "\x00" in v for k, v in labels.items()):
        raise click.BadParameter("must not contain NUL characters", param_hint="--labels")
    return labels


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """--expires: a lifetime (90d, 12h, 30min, 2w, 1y) from now, or an ISO 8601 date/time
    (without an offset: UTC) in the future."""
    if text is None:
        return None
    now = now or datetime.now(UTC)
    match = _LIFETIME.match(text)
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise click.BadParameter("must be a positive lifetime", param_hint="--expires")
        return now + amount * _UNIT[match.group(2).lower()]
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            "must be a lifetime such as 90d, 12h, 30min, 2w, 1y, or an ISO date/time such as 2027-01-01",
            param_hint="--expires",
        ) from None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at <= now:
        raise click.BadParameter("must lie in the future", param_hint="--expires")
    return at


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def render_tokens(rows: list[dict[str, Any]], *, as_json: bool) -> str:
    """The listing: aligned columns for people, or JSON lines for scripts."""
    if as_json:
        return "".join(orjson.dumps(r).decode() + "\n" for r in rows)
    head = ("NAME", "SCOPE", "LABELS", "CREATED", "EXPIRES", "LAST USED")
    table = [head] + [
        (
            r["name"],
            r["scope"] + (" (revoked)" if r.get("revoked_at") else ""),
            orjson.dumps(r["labels"]).decode() if r["labels"] else "-",
            _when(r["created_at"]),
            _when(r["expires_at"]),
            _when(r["last_used_at"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in table
    )
