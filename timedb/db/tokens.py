"""Access tokens: create, list and revoke them; load the active ones; follow their changes.

A secret is `tdb_` and 43 URL-safe characters (256 random bits); only its SHA-256 is stored.
Each server process keeps the active tokens in memory (timedb.auth.TokenCache) and reloads
them when PostgreSQL notifies the channel `timedb_tokens` (a trigger on api_tokens), so a
request costs no database round trip and a revocation takes effect at once everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.errors import Conflict, InvalidInput, NotFound, SchemaMissing

PREFIX = "tdb_"
CHANNEL = "timedb_tokens"
SCOPES = ("read", "write", "admin")
# seconds between the listener's checks that its connection is alive; the copy in memory is
# trusted only while the last check is recent (timedb.auth.TokenCache)
HEARTBEAT = 1.0
# seconds the listener waits for a notification at a time: how long a stop (server shutdown) waits
WAKE = 0.1
log = logging.getLogger("timedb")


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Token:
    """An active token as the server needs it."""

    name: str
    scope: str
    labels: dict[str, str]
    expires_at: datetime | None
    secret_hash: bytes


ACTIVE = """
SELECT name, scope, labels, expires_at, secret_hash FROM api_tokens
WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""


def _missing_table() -> SchemaMissing:
    return SchemaMissing("The api_tokens table is missing: run `timedb create tables` (safe to re-run) to add it.")


def active(conn: psycopg.Connection) -> list[Token] | None:
    """Every active token; None when the table does not exist (a database of an older version)."""
    try:
        with conn.transaction():
            rows = conn.execute(ACTIVE).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return [Token(name, scope, labels, expires, bytes(h)) for name, scope, labels, expires, h in rows]


def find(conn: psycopg.Connection, secret_hash: bytes) -> Token | None:
    """The active token of this hash (a lookup when the in-memory copy may be stale)."""
    try:
        with conn.transaction():
            row = conn.execute(ACTIVE + " AND secret_hash = %s", (secret_hash,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else Token(row[0], row[1], row[2], row[3], bytes(row[4]))


def create(conn: psycopg.Connection, name: str, scope: str, labels: dict[str, str], expires_at: datetime | None) -> str:
    """A new token; returns its secret (shown once, never stored)."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}.")
    secret = new_secret()
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO api_tokens (name, scope, labels, secret_hash, expires_at) VALUES (%s, %s, %s, %s, %s)",
                (name, scope, Jsonb(labels), digest(secret), expires_at),
            )
    except psycopg.errors.UndefinedTable:
        raise _missing_table() from None
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"A token named {name!r} exists already (revoke it first, or choose another name).") from None
    except psycopg.errors.CheckViolation:
        raise InvalidInput("The token name must not be blank.") from None
    return secret


def listing(conn: psycopg.Connection, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """The tokens (never their secrets), oldest first."""
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    try:
        with conn.transaction():
            return (
                conn.cursor(row_factory=dict_row)
                .execute(
                    f"SELECT name, scope, labels, created_at, expires_at, last_used_at, revoked_at "
                    f"FROM api_tokens {where} ORDER BY created_at, token_id"
                )
                .fetchall()
            )
    except psycopg.errors.UndefinedTable:
        raise _missing_table() from None


def revoke(conn: psycopg.Connection, name: str) -> None:
    """Revoke the active token of this name (404 when there is none)."""
    try:
        with conn.transaction():
            done = conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
            ).rowcount
    except psycopg.errors.UndefinedTable:
        raise _missing_table() from None
    if not done:
        raise NotFound(f"No active token named {name!r}.")


def mark_used(conn: psycopg.Connection, used: dict[bytes, datetime]) -> None:
    """Record when tokens were last used (batched: once per flush, not per request)."""
    if not used:
        return
    with conn.transaction():
        conn.execute(
            "UPDATE api_tokens t SET last_used_at = u.at "
            "FROM unnest(%s::bytea[], %s::timestamptz[]) AS u(h, at) "
            "WHERE t.secret_hash = u.h AND (t.last_used_at IS NULL OR t.last_used_at < u.at)",
            (list(used), list(used.values())),
        )


class Listener:
    """A thread with its own connection, LISTENing on `timedb_tokens`: calls `changed()` after
    each notification and `lost()` when the connection fails (then reconnects); `flush()` runs
    every `flush_every` seconds with the connection (last-used times)."""

    def __init__(
        self,
        dsn: str,
        changed: Callable[[psycopg.Connection], None],
        lost: Callable[[], None],
        flush: Callable[[psycopg.Connection], None],
        alive: Callable[[], None],
        flush_every: float = 30.0,
    ) -> None:
        self.dsn, self.changed, self.lost, self.flush, self.alive = dsn, changed, lost, flush, alive
        self.flush_every = flush_every
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="timedb-tokens", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                with psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    application_name="timedb-tokens",
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=1,
                    keepalives_count=3,
                ) as conn:
                    if not self._listen(conn):
                        log.warning(
                            "token listener: notifications do not arrive on this connection (a "
                            "transaction pooler?); every request checks its token in the database"
                        )
                        break
                    delay = 0.5
            except psycopg.Error as exc:
                text = str(exc).strip()
                log.warning(
                    "token listener: %s (tokens are checked in the database until it is back)",
                    text.splitlines()[0] if text else type(exc).__name__,
                )
            self.lost()
            self.stopping.wait(delay)
            delay = min(delay * 2, 5.0)
        self.lost()

    def _listen(self, conn: psycopg.Connection) -> bool:
        """Follow the channel until stopped (True) or the connection fails (raises); False
        when notifications do not come through this connection at all."""
        conn.execute(f"LISTEN {CHANNEL}")
        if not _delivers(conn):
            return False
        self.changed(conn)  # (listening now: load what may have changed before)
        flushed = checked = time.monotonic()
        while not self.stopping.is_set():
            if _notified(conn, timeout=WAKE):
                self.changed(conn)
            if time.monotonic() - checked < HEARTBEAT:
                continue
            conn.execute("SELECT 1")  # (a connection that died silently fails here, not in a minute)
            self.alive()
            checked = time.monotonic()
            if time.monotonic() - flushed >= self.flush_every:
                flushed = time.monotonic()
                self.flush(conn)
        self.flush(conn)
        return True


def _notified(conn: psycopg.Connection, timeout: float) -> bool:
    """A notification arrived within `timeout` seconds (those queued right behind it are taken
    too: several changes, one reload)."""
    if not list(conn.notifies(timeout=timeout, stop_after=1)):
        return False
    list(conn.notifies(timeout=0.01))
    return True


def _delivers(conn: psycopg.Connection) -> bool:
    """A notification sent on this session comes back to it (not so through a transaction pooler)."""
    conn.execute(f"NOTIFY {CHANNEL}, 'self-test'")
    return any(n.payload == "self-test" for n in conn.notifies(timeout=2.0, stop_after=1))
