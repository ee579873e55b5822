"""The read replica (TIMEDB_READ_DSN): its pool, whether reads go to it now, and its state.

A monitor thread asks the replica every CHECK_INTERVAL seconds whether it is a standby, whether
it receives WAL and how far its replay is behind; reads follow the last answer, so no request
waits for a replica that is away. A read that still fails on the replica before its answer
starts (the replica went away between two checks, every connection is busy, a recovery
conflict) runs again on the primary, and an unreachable replica is marked so at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout, TooManyRequests

from timedb.db.errors import first_line
from timedb.db.pool import Pool, redact
from timedb.db.schema import schema_present
from timedb.errors import ConfigError, LockTimeout, QueryTimeout, ServiceUnavailable
from timedb.settings import Settings

log = logging.getLogger("timedb")
T = TypeVar("T")

POOL_NAME = "timedb-read"
# seconds between two checks of the replica, and how long one waits for a pooled connection
CHECK_INTERVAL = 1.0
CHECK_WAIT = 1.0
# at start the pool has no connection yet: the first check waits this long for one
FIRST_CHECK_WAIT = 5.0
# a read waits at most this long for a connection of the replica, then runs on the primary
FALLBACK_AFTER = 1.0

UNREACHABLE = "unreachable"
NO_TABLES = "schema missing"
NOT_STANDBY = "not a standby"

# pg_is_wal_replay_paused() raises on a server not in recovery: CASE evaluates it only on a
# standby. The WAL receiver's status is NULL for roles without pg_read_all_stats; a row at all
# means a receiver process runs. A receiver starts at the beginning of a WAL segment, so until
# new WAL comes the received position may lie before the replayed one: caught up is <=, not =.
# Until a standby has replayed a transaction since it started, the age of the last one is
# unknown (NULL; greatest() would have made it 0: a restarted standby with WAL waiting looked
# current).
STATUS = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
       EXISTS (SELECT FROM pg_stat_wal_receiver WHERE coalesce(status, 'streaming') = 'streaming'),
       pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn(),
       CASE WHEN pg_last_xact_replay_timestamp() IS NOT NULL
            THEN greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 END
"""


@dataclass(frozen=True)
class Status:
    """What the last check found: `state` (streaming, paused, disconnected, not a standby,
    schema missing, unreachable), the replay lag in seconds (None: unknown) and whether reads
    go to the replica."""

    state: str
    lag_seconds: float | None = None
    reads: bool = False
    reason: str = ""  # for log lines only

    def document(self) -> dict[str, Any]:
        """As JSON (GET /readyz)."""
        lag = None if self.lag_seconds is None else round(self.lag_seconds, 3)
        return {"state": self.state, "lag_seconds": lag, "reads": self.reads}


def judge(row: tuple[Any, ...], tables: bool, max_lag: float) -> Status:
    """The status of a replica from the answer of STATUS.

    now() - pg_last_xact_replay_timestamp() alone grows while the primary is idle, so a replica
    that receives WAL and has replayed all of it counts as 0 s behind; otherwise (WAL waiting
    for replay, or no WAL coming in) the age of the last replayed transaction is the estimate.
    """
    standby, paused, receiving, caught_up, replay_age = row
    state = NOT_STANDBY if not standby else "paused" if paused else "streaming" if receiving else "disconnected"
    lag = None if not standby else 0.0 if receiving and caught_up else replay_age
    if not tables:
        return Status(NO_TABLES, lag, False, "it has no timedb tables")
    if standby and max_lag > 0 and (lag is None or lag > max_lag):
        behind = "an unknown time" if lag is None else f"{lag:.1f} s"
        return Status(state, lag, False, f"it lags {behind} behind, more than TIMEDB_READ_MAX_LAG ({max_lag:g} s)")
    return Status(state, lag, True)


class _QuietReconnects(logging.Filter):
    """psycopg_pool warns at every failed connection attempt of the replica's pool (every 2 s
    while it is away); the replica's monitor says it once, and again when it is back."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.levelno == logging.WARNING and POOL_NAME in args)


class Replica:
    """The read replica of a server process: its pool, its last known status, its monitor."""

    def __init__(self, settings: Settings) -> None:
        dsn = settings.read_dsn or ""
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"TIMEDB_READ_DSN is not a valid connection string: {first_line(exc)}") from None
        self.where = redact(dsn)
        self.max_lag = settings.read_max_lag
        # pool sizes and limits as the primary's; a read waits less for a connection, since
        # the primary can serve it
        limits = replace(settings, dsn=dsn, pool_timeout=min(settings.pool_timeout, FALLBACK_AFTER))
        self.pool = Pool(limits, name=POOL_NAME)
        self.status = Status(UNREACHABLE, reason="not checked yet")
        self._lock = threading.Lock()
        self._failures = 0  # reads that found it unreachable: a check begun before one is stale
        self._reported = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the pool without waiting (the server starts while the replica is away), check
        the replica once, then every CHECK_INTERVAL seconds in a thread."""
        quiet = logging.getLogger("psycopg.pool")
        if not any(isinstance(f, _QuietReconnects) for f in quiet.filters):
            quiet.addFilter(_QuietReconnects())
        self.pool.open(wait=False)
        # a refused connection answers at once, a slow one may take a while: wait for either
        deadline = time.monotonic() + FIRST_CHECK_WAIT
        while not self.pool.connect_failing and not self.pool.get_stats().get("pool_available"):
            if self._stop.wait(0.02) or time.monotonic() > deadline:
                break
        self.refresh()
        self._thread = threading.Thread(target=self._monitor, name="timedb-replica-monitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the monitor and close the pool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CHECK_WAIT + 10)
        self.pool.close()

    def takes_reads(self) -> bool:
        """Reads may go to the replica now (a pool whose connections fail has lost it, even
        before the next check says so)."""
        return self.status.reads and not self.pool.connect_failing

    def report(self) -> dict[str, Any]:
        """The `replica` member of GET /readyz: the last check's state and lag, and where reads go now."""
        return {**self.status.document(), "reads": self.takes_reads()}

    def failed(self, reason: str) -> None:
        """A read found the replica unreachable: reads skip it until a check finds it back."""
        with self._lock:
            self._failures += 1
            if self.status.state != UNREACHABLE:
                self._set(Status(UNREACHABLE, reason=reason))

    def refresh(self, wait: float = CHECK_WAIT) -> Status:
        """Check the replica now; its status."""
        with self._lock:
            failures = self._failures
        found = self._check(wait)
        with self._lock:
            if found is not None and failures == self._failures:
                self._set(found)
            return self.status

    def _monitor(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            try:
                self.refresh()
            except Exception:  # the monitor must outlive any surprise; reads keep the last status
                log.exception("The check of the read replica at %s failed", self.where)

    def _check(self, wait: float) -> Status | None:
        """The replica's status; None when it cannot be told (every connection busy)."""
        try:
            conn = self.pool.getconn(wait)
        except (PoolTimeout, TooManyRequests):
            if self.pool.connect_failing:
                return Status(UNREACHABLE, reason=self.pool.connect_error or "no connection")
            if self.status.state == UNREACHABLE:
                return Status(UNREACHABLE, reason=f"no connection within {wait:g} s")
            return None  # every connection busy: it answers reads; keep what was known
        try:
            row = conn.execute(STATUS, prepare=False).fetchone()
            tables = schema_present(conn)
        except psycopg.Error as exc:
            return Status(UNREACHABLE, reason=first_line(exc))
        finally:
            self.pool.putconn(conn)
        assert row is not None
        return judge(row, tables, self.max_lag)

    def _set(self, new: Status) -> None:
        """Take a new status (under the lock) and log what changed for reads: once per change,
        not per request."""
        old, self.status = self.status, new
        first, self._reported = not self._reported, True
        if new.reads and (first or not old.reads):
            log.info(
                "Reads go to the read replica at %s (%s, %s behind)%s.",
                self.where,
                new.state,
                "unknown" if new.lag_seconds is None else f"{new.lag_seconds:.1f} s",
                "" if first else " again",
            )
        elif not new.reads and (first or old.reads):
            log.warning(
                "The read replica at %s is %s: reads go to the primary until it %s.",
                self.where,
                f"unreachable ({new.reason})" if new.state == UNREACHABLE else f"skipped ({new.reason})",
                "answers again" if new.state == UNREACHABLE else "is usable again",
            )
        elif new.state != old.state and not first:
            log.info("The read replica at %s is now %s.", self.where, new.state)
        if new.state == NOT_STANDBY and old.state != new.state:
            log.warning(
                "The read replica at %s is not a standby (pg_is_in_recovery() is false): "
                "reads go to it all the same; check TIMEDB_READ_DSN.",
                self.where,
            )


def on_read_pool(primary: Pool, replica: Replica | None, open_: Callable[[Pool], T], *, strong: bool = False) -> T:
    """open_(pool) on the replica when one takes reads and the client did not ask for strong
    consistency, else on the primary; and on the primary again when the replica fails before
    the answer starts, unless the read itself took too long (the primary would not do better)."""
    if replica is None or strong or not replica.takes_reads():
        return open_(primary)
    try:
        return open_(replica.pool)
    except (QueryTimeout, LockTimeout):
        raise
    except ServiceUnavailable as exc:
        cause = exc.__cause__
        if type(exc) is ServiceUnavailable and isinstance(cause, (psycopg.OperationalError, PoolTimeout)):
            waited = isinstance(cause, PoolTimeout) and replica.pool.connect_error
            replica.failed(replica.pool.connect_error if waited else first_line(cause))
    return open_(primary)
