"""The connection of one `timedb` command (tokens, partitions, retention)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import sql

from timedb.db.errors import first_line, translated
from timedb.errors import ServiceUnavailable

T = TypeVar("T")


def using(dsn: str, work: Callable[[psycopg.Connection], T], schema: str | None = None) -> T:
    """Run work on a connection of its own, in autocommit mode (each step commits by itself),
    with `schema` first on the search path when given."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="timedb-cli")
    except psycopg.Error as exc:
        raise ServiceUnavailable(f"cannot connect to the database: {first_line(exc)}") from None
    with conn, translated():
        if schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return work(conn)
