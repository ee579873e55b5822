"""The connection pool and the one way handlers get a connection."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from timedb.db.errors import first_line, translated
from timedb.settings import Settings

Connection = psycopg.Connection


def make_pool(settings: Settings) -> ConnectionPool:
    """Create (closed) a pool for the configured DSN."""
    return ConnectionPool(
        settings.dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        open=False,
        check=check_idle_connection,
        name="timedb",
        kwargs={"application_name": "timedb", "prepare_threshold": settings.prepare_threshold},
    )


def check_idle_connection(conn: psycopg.Connection) -> None:
    """The pool's check before lending a connection, without a round trip when it is healthy.

    An idle connection has nothing to read: when its socket is readable the server closed it
    (terminated backend, restart) or sent something unexpected, and only then the connection is
    checked with a query (psycopg_pool's check_connection, which raises for a dead one).
    """
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        pending = bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        pending = True
    if pending:
        ConnectionPool.check_connection(conn)


def check_connection(dsn: str, timeout: int = 5) -> None:
    """Connect once, so a bad DSN fails at start with the driver's first line."""
    from timedb.errors import ServiceUnavailable

    try:
        psycopg.connect(dsn, connect_timeout=timeout).close()
    except psycopg.Error as exc:
        raise ServiceUnavailable(first_line(exc)) from None


def open_pool(pool: ConnectionPool, timeout: float = 10.0) -> None:
    """Open the pool and wait for a first connection, so a bad DSN fails at start."""
    pool.open(wait=True, timeout=timeout)


@contextmanager
def connection(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A pooled connection in a transaction: commit on success, rollback on error."""
    with translated(), pool.connection() as conn:
        yield conn
