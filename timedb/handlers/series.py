"""POST /series, POST /series/bulk, GET /series, GET and PATCH /series/{series_id},
GET /series/labels, GET /series/count."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

from connexion import request
from starlette.responses import Response

from timedb.db import series as db
from timedb.db.pool import Connection, in_transaction
from timedb.errors import InvalidInput, items_detail
from timedb.handlers.context import body, parse_labels, pool, read_transaction
from timedb.handlers.idempotent import respond_once
from timedb.media_types import JSON_HEADERS

JSON = JSON_HEADERS


def _filter(
    name: str | None, labels: str | None, unit: str | None = None, series_id: int | None = None
) -> db.SeriesFilter:
    return db.SeriesFilter(name=name, unit=unit, series_id=series_id, labels=parse_labels(labels))


def create_series() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Create a series, or return the existing one with the same (name, labels)."""
    req = body()
    description = (req.get("description") or "").strip() or None
    name = req["name"].strip()
    if not name:
        raise InvalidInput("name must not be blank.", body="/name")
    series_id, created = in_transaction(
        pool(),
        lambda conn: db.create_series(
            conn,
            name=name,
            unit=req.get("unit", "dimensionless").strip(),
            labels=req.get("labels", {}),
            description=description,
            overlapping=req.get("overlapping", False),
            retention=req.get("retention", "medium"),
        ),
    )
    message = "Series created successfully" if created else "Series already exists"
    return {"series_id": series_id, "message": message, "created": created}, 200, JSON


def create_series_bulk() -> Response:
    """Get or create many series in one transaction; one result per item, in input order."""
    series = _new_series(body()["series"])
    return respond_once(
        lambda conn: {
            "series": [{"series_id": sid, "created": created} for sid, created in db.create_many(conn, series)]
        }
    )


def get_series(series_id: int, consistency: str = "eventual") -> tuple[dict[str, Any], int, dict[str, str]]:
    """One series."""
    return read_transaction(lambda conn: db.get_series(conn, series_id), consistency), 200, JSON


def update_series(series_id: int) -> Response:
    """Apply a JSON merge patch to a series' description and labels (a NUL character is refused
    by the body validator, as in every body)."""
    patch = body()
    return respond_once(lambda conn: db.update_series(conn, series_id, patch))


def _new_series(items: list[dict[str, Any]]) -> list[db.NewSeries]:
    """Bulk items trimmed as POST /series trims them; every blank name listed in one 400 (the
    spec's pattern refuses them first; this holds should the two ever disagree)."""
    blank = [
        {"in": "body", "pointer": f"/series/{i}/name", "index": i, "message": f"series[{i}]: name must not be blank."}
        for i, item in enumerate(items)
        if not item["name"].strip()
    ]
    if blank:
        raise InvalidInput(items_detail(blank, len(items), "Invalid items"), errors=blank)
    return [
        db.NewSeries(
            name=item["name"].strip(),
            unit=item.get("unit", "dimensionless").strip(),
            labels=item.get("labels", {}),
            description=(item.get("description") or "").strip() or None,
            overlapping=item.get("overlapping", False),
            retention=item.get("retention", "medium"),
        )
        for item in items
    ]


CURSOR_MESSAGE = "cursor is not a value returned in a Link header."
PAGE_SIZE = 1000  # series per page unless `limit` says otherwise (the spec's default)


def _encode_cursor(row: dict[str, Any]) -> str:
    """The position after `row`: its series_id only, so the URL stays short whatever the name."""
    return base64.urlsafe_b64encode(b"%d" % row["series_id"]).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if raw.isdigit() and raw[:1] != b"0" and int(raw) < 2**63:
            return int(raw)
    except ValueError:
        pass
    raise InvalidInput(CURSOR_MESSAGE, query="cursor")


def list_series(
    name: str | None = None,
    labels: str | None = None,
    unit: str | None = None,
    series_id: int | None = None,
    limit: int = PAGE_SIZE,
    cursor: str | None = None,
    consistency: str = "eventual",
) -> tuple[list[dict[str, Any]], int, dict[str, str]]:
    """Matching series, ordered by name, unit, series_id; paged with limit + Link."""
    flt = _filter(name, labels, unit, series_id)
    after_id = _decode_cursor(cursor) if cursor is not None else None

    def work(conn: Connection) -> list[dict[str, Any]]:
        after = None
        if after_id is not None:
            last = db.get_by_ids(conn, [after_id]).get(after_id)
            if last is None:
                raise InvalidInput(CURSOR_MESSAGE, query="cursor")
            after = (last["name"], last["unit"], after_id)
        return db.list_series(conn, flt, limit=limit + 1, after=after)

    rows = read_transaction(work, consistency)
    headers = dict(JSON)
    if len(rows) > limit:
        rows = rows[:limit]
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        params["cursor"] = _encode_cursor(rows[-1])
        headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return rows, 200, headers


def list_labels(
    label_key: str,
    name: str | None = None,
    labels: str | None = None,
    unit: str | None = None,
    series_id: int | None = None,
    consistency: str = "eventual",
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Sorted distinct values of one label key across matching series."""
    flt = _filter(name, labels, unit, series_id)
    values = read_transaction(lambda conn: db.label_values(conn, label_key, flt), consistency)
    return {"label_key": label_key, "values": values}, 200, JSON


def count_series(
    name: str | None = None,
    labels: str | None = None,
    unit: str | None = None,
    series_id: int | None = None,
    consistency: str = "eventual",
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Number of series matching every filter."""
    flt = _filter(name, labels, unit, series_id)
    return {"count": read_transaction(lambda conn: db.count_series(conn, flt), consistency)}, 200, JSON
