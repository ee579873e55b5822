"""What handlers read from the current request: the pool and the parsed body."""

from __future__ import annotations

from typing import Any

from connexion import request

from timedb.db.pool import Pool
from timedb.errors import InvalidInput
from timedb.settings import Settings
from timedb.validation import BODY_KEY, MAX_DEPTH, NUL_MESSAGE, nul_errors, too_deep

LABELS_MESSAGE = 'labels must be a valid JSON object (e.g. \'{"site":"Gotland"}\')'


def pool() -> Pool:
    """The connection pool opened by the app's lifespan."""
    return request.state.pool  # type: ignore[no-any-return]


def settings() -> Settings:
    """The settings the app was created with."""
    return request.state.settings  # type: ignore[no-any-return]


def body() -> Any:
    """The request body as parsed (once) by the fast body validator."""
    return request.scope["state"][BODY_KEY]


def parse_labels(raw: str | None) -> dict[str, Any] | None:
    """The `labels` query parameter: a JSON object string."""
    if raw is None:
        return None
    import orjson

    try:
        labels = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(LABELS_MESSAGE, query="labels") from None
    if not isinstance(labels, dict):
        raise InvalidInput(LABELS_MESSAGE, query="labels")
    if too_deep(labels, MAX_DEPTH):  # (stored labels are flat: such a filter matches nothing)
        raise InvalidInput(f"labels nests deeper than {MAX_DEPTH} levels.", query="labels")
    if nul_errors(raw, labels):
        raise InvalidInput(f"labels: {NUL_MESSAGE}.", query="labels")
    return labels


def token_caller() -> tuple[str, str] | None:
    """(token name, scope) of the request, or None when it came without a token (an open server)."""
    from connexion.context import context

    info = context.get("token_info") or {}
    return (info["sub"], info["scope"]) if info.get("sub") else None
