"""The connection pool and the one way handlers get a connection."""

from __future__ import annotations

import logging
import random
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests
from psycopg_pool.base import AttemptWithBackoff

from timedb.db import partitions
from timedb.db.errors import first_line, translated
from timedb.db.partitions import PartitionMissing
from timedb.errors import ConcurrentChange, ServerBusy, ServiceUnavailable
from timedb.settings import Settings

Connection = psycopg.Connection
T = TypeVar("T")
log = logging.getLogger("timedb")

# a session that sits idle inside a transaction (a vanished client) is ended by PostgreSQL
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
# longest pause between reconnect attempts while the database is away
MAX_RECONNECT_DELAY = 2.0
# attempts of a transaction that meets a serialization failure or a deadlock
TRANSACTION_ATTEMPTS = 3


class CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnect backoff, capped: the pool notices a returning database quickly."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_RECONNECT_DELAY)


class Pool(ConnectionPool):
    """psycopg's pool, with timedb's limits on every transaction and a capped reconnect backoff."""

    def __init__(self, settings: Settings, name: str = "timedb") -> None:
        super().__init__(
            settings.dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            max_waiting=settings.pool_max_waiting,
            open=False,
            check=check_idle_connection,
            configure=self._configure if settings.prepare_threshold is not None else None,
            name=name,
            # transactions are begun by `checkout()`, together with their limits
            kwargs={"application_name": "timedb", "autocommit": True, "prepare_threshold": settings.prepare_threshold},
        )
        self.statement_timeout = settings.statement_timeout
        self.begin = _begin(settings.statement_timeout, settings.lock_timeout)
        self.begin_watched = _begin(0, settings.lock_timeout, snapshot=True)
        # True while new connections fail: tells "database away" from "all connections busy"
        self.connect_failing = False
        self.connect_error = ""  # why the last failed attempt failed (first line, for log lines)
        self.pooler_seen = False

    # _add_connection and _connect override psycopg_pool internals (stable through 3.2.1-3.3,
    # pinned in pyproject.toml); tests/faults prove recovery and the busy/unreachable answers.
    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or CappedBackoff(timeout=self.reconnect_timeout), growing)

    def _configure(self, conn: psycopg.Connection) -> None:
        """Prepared statements asked for (TIMEDB_PREPARE_THRESHOLD) but the connection goes
        through a pooler: turn them off on it, since a pooler in transaction mode mixes up
        the statements of its clients. A pooler gives its clients its own backend key, so the
        backend pid it reports differs from the real one."""
        row = conn.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
        if row is not None and row[0] != conn.info.backend_pid:
            conn.prepare_threshold = None
            if not self.pooler_seen:
                self.pooler_seen = True
                log.warning(
                    "TIMEDB_PREPARE_THRESHOLD is set, but the database is reached through a "
                    "connection pooler: prepared statements stay off"
                )

    def _connect(self, timeout: float | None = None) -> psycopg.Connection:
        try:
            conn = super()._connect(timeout)
        except BaseException as exc:
            self.connect_failing = True
            self.connect_error = first_line(exc)
            raise
        self.connect_failing = False
        return conn


def _begin(statement_timeout: float, lock_timeout: float, snapshot: bool = False) -> bytes:
    """BEGIN with the transaction's limits in one simple-protocol message (no extra round
    trip); SET LOCAL, not session settings, so it holds behind a pooler in transaction mode.

    JIT off: timedb's statements are index lookups whose cost estimates grow with the table
    (a series' share of it), so on a large table PostgreSQL would compile each read just in
    time; measured on 100,000,000 rows, a 1,000-point read spent 132 ms compiling for 6 ms of
    execution.

    snapshot: REPEATABLE READ, so every statement sees the database as the first one did (a
    read looks up its series and their extents, then reads their rows: one moment)."""
    return (
        ("BEGIN ISOLATION LEVEL REPEATABLE READ;" if snapshot else "BEGIN;")
        + f" SET LOCAL statement_timeout = {round(statement_timeout * 1000)};"
        f" SET LOCAL lock_timeout = {round(lock_timeout * 1000)};"
        f" SET LOCAL idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS};"
        " SET LOCAL jit = off"
    ).encode()


def make_pool(settings: Settings) -> Pool:
    """Create (closed) a pool for the configured DSN."""
    return Pool(settings)


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


def open_pool(pool: ConnectionPool, timeout: float = 10.0) -> None:
    """Open the pool and wait for a first connection, so a bad DSN fails at start."""
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout:
        raise ServiceUnavailable("timed out") from None


def check_database(dsn: str, timeout: int = 5) -> bool:
    """Connect once, so a bad DSN fails at start with the driver's first line (a one-line
    ServiceUnavailable); True when the timedb tables exist."""
    from timedb.db.schema import schema_present

    try:
        with psycopg.connect(dsn, connect_timeout=timeout) as conn:
            return schema_present(conn)
    except psycopg.Error as exc:
        raise ServiceUnavailable(first_line(exc)) from None


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN is reported by the connection attempt itself
        return "<unparsable DSN>"
    if "password" in parts:
        parts["password"] = "***"  # noqa: S105
    return make_conninfo("", **parts)


def checkout(pool: Pool, *, watched: bool = False) -> psycopg.Connection:
    """A pooled connection inside a new transaction (return it with `release`).

    watched: statement_timeout off, because the caller bounds each step itself (a streamed
    read is one statement that may rightly run for minutes; see values_read.Watchdog).
    """
    with translated():
        # while the database is away, answer once the next reconnect attempt is due, not later
        timeout = min(pool.timeout, MAX_RECONNECT_DELAY) if pool.connect_failing else None
        try:
            conn = pool.getconn(timeout)
        except (PoolTimeout, TooManyRequests) as exc:
            raise _no_connection(pool) from exc
        try:
            conn.execute(pool.begin_watched if watched else pool.begin, prepare=False)
        except BaseException:
            pool.putconn(conn)
            raise
        return conn


def release(pool: Pool, conn: psycopg.Connection) -> None:
    """End a checked-out connection's transaction without committing; back to the pool."""
    try:
        conn.rollback()
    except psycopg.Error:
        pass  # a broken connection: the pool discards it
    pool.putconn(conn)


@contextmanager
def connection(pool: Pool) -> Iterator[psycopg.Connection]:
    """A pooled connection in a transaction: commit on success, rollback on error."""
    with translated():
        conn = checkout(pool)
        try:
            with conn:  # commit on success, rollback on error
                yield conn
        finally:
            pool.putconn(conn)


def _no_connection(pool: Pool) -> ServiceUnavailable:
    """Why no connection came in time: every one busy, or the database away."""
    if pool.connect_failing:
        return ServiceUnavailable("The database is not reachable; retry later.")
    return ServerBusy(f"All {pool.max_size} database connections of this server are busy; retry shortly.")


def in_transaction(pool: Pool, work: Callable[[psycopg.Connection], T]) -> T:
    """work(conn) in one transaction, run again (a bounded number of times) after a
    serialization failure or a deadlock, which roll back everything it did, and after a write
    met a month without a partition (made in between, in a transaction of its own)."""
    conflicts = made = 0
    while True:
        try:
            with connection(pool) as conn:
                return work(conn)
        except ConcurrentChange:
            conflicts += 1
            if conflicts == TRANSACTION_ATTEMPTS:
                raise ConcurrentChange(
                    f"A concurrent change interfered with this request {conflicts} times; retry."
                ) from None
            time.sleep(random.uniform(0.01, 0.05) * conflicts)  # noqa: S311 - jitter, not security
        except PartitionMissing as missing:
            made += 1
            if made == TRANSACTION_ATTEMPTS:  # (partitions dropped again as fast as they are made)
                raise ConcurrentChange("Partitions of the fact tables changed during this request; retry.") from None
            with connection(pool) as conn:
                partitions.ensure(conn, missing.table, missing.months)
