"""What handlers read from the current request: the pools and the parsed body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connexion import request

from timedb.db.pool import Connection, Pool, in_transaction
from timedb.db.replica import Replica, on_read_pool
from timedb.errors import InvalidInput
from timedb.settings import Settings
from timedb.validation import BODY_KEY, MAX_DEPTH, NUL_MESSAGE, nul_errors, too_deep

LABELS_MESSAGE = 'labels must be a valid JSON object (e.g. \'{"site":"Gotland"}\')'


T = TypeVar("T")


def pool() -> Pool:
    """The connection pool of the primary, opened by the app's lifespan: every write, and
    every read that asks for consistency=strong."""
    return request.state.pool  # type: ignore[no-any-return]


def replica() -> Replica | None:
    """The read replica (TIMEDB_READ_DSN), if one is configured."""
    return getattr(request.state, "replica", None)


def read(open_: Callable[[Pool], T], consistency: str | None) -> T:
    """open_(pool) for a read: on the replica unless the client asked for consistency=strong
    or the replica cannot serve it now (then on the primary). Only reads call this: a request
    that writes uses pool() throughout, so nothing after a write reads from the replica."""
    return on_read_pool(pool(), replica(), open_, strong=consistency == "strong")


def read_transaction(work: Callable[[Connection], T], consistency: str | None) -> T:
    """work(conn) in a transaction of a read (see read())."""
    return read(lambda p: in_transaction(p, work), consistency)


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
