"""The label scope of the current request: series outside it do not exist for it.

A token created with `--labels '{"tenant": "acme"}'` may only see and touch series whose labels
contain that object. The security handler (timedb.auth) sets the scope once per request, in the
request's context; the data layer adds `labels @> scope` to every statement that selects series
(`condition`). No scope (None): every series.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb

_scope: ContextVar[dict[str, str] | None] = ContextVar("timedb_tenant_scope", default=None)


def current() -> dict[str, str] | None:
    """The label scope of the current request (None: unscoped)."""
    return _scope.get()


def set_current(labels: dict[str, str] | None) -> None:
    """Set the scope for the rest of the current request (its context)."""
    _scope.set(labels or None)


@contextmanager
def scoped(labels: dict[str, str] | None) -> Iterator[None]:
    """Run a block with this scope (tests, CLI)."""
    token = _scope.set(labels or None)
    try:
        yield
    finally:
        _scope.reset(token)


def condition(column: str = "labels") -> tuple[sql.Composable, dict[str, Any]]:
    """` AND <column> @> %(tenant_scope)s` and its parameter, or nothing when unscoped."""
    scope = _scope.get()
    if not scope:
        return sql.SQL(""), {}
    return sql.SQL(" AND {} @> %(tenant_scope)s").format(sql.SQL(column)), {"tenant_scope": Jsonb(scope)}


def contains(labels: dict[str, Any]) -> bool:
    """The labels lie inside the current scope."""
    scope = _scope.get()
    return not scope or all(labels.get(k) == v for k, v in scope.items())


def describe() -> str:
    """The current scope as JSON text, for problem details (`{}` when unscoped)."""
    return orjson.dumps(_scope.get() or {}, option=orjson.OPT_SORT_KEYS).decode()


def namespaced(key: str | None) -> str | None:
    """An Idempotency-Key in the scope's own namespace (unchanged when unscoped): a request of
    another scope neither replays nor blocks it. Header values hold no newline, so a scoped key
    never equals an unscoped one."""
    scope = _scope.get()
    return key if key is None or not scope else f"{describe()}\n{key}"
