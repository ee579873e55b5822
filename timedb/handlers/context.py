"""What handlers read from the current request: the pool and the parsed body."""

from __future__ import annotations

from typing import Any

from connexion import request
from psycopg_pool import ConnectionPool

from timedb.errors import InvalidInput

LABELS_MESSAGE = "labels must be a valid JSON object (e.g. '{\"site\":\"Gotland\"}')"


def pool() -> ConnectionPool:
    """The connection pool opened by the app's lifespan."""
    return request.state.pool  # type: ignore[no-any-return]


def body() -> Any:
    """The request body as parsed (once) by the fast body validator."""
    return request.scope["state"]["timedb_body"]


def parse_labels(raw: str | None) -> dict[str, Any] | None:
    """The `labels` query parameter: a JSON object string."""
    if raw is None:
        return None
    import orjson

    try:
        labels = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(LABELS_MESSAGE) from None
    if not isinstance(labels, dict):
        raise InvalidInput(LABELS_MESSAGE)
    return labels
