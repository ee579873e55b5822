"""Who makes the current request: the name of its access token (None: an open server).

Set once per request by the security handler (timedb.auth), in the request's context, like
the label scope (timedb.db.tenant); the data layer records it on the batches it creates
(`batches_table.inserted_by`).
"""

from __future__ import annotations

from contextvars import ContextVar

_name: ContextVar[str | None] = ContextVar("timedb_caller", default=None)


def name() -> str | None:
    """The token name of the current request."""
    return _name.get()


def set_name(value: str | None) -> None:
    _name.set(value)
