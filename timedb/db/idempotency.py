"""Idempotency keys: a retried write gets the first answer again instead of being stored twice."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from timedb.errors import IdempotencyKeyReused

# An expired key is taken over by the new request. ON CONFLICT waits for a concurrent request
# holding the same key to finish: its answer is then replayed (or, if it failed, the key is free).
CLAIM = """
INSERT INTO idempotency_keys (key, fingerprint) VALUES (%(key)s, %(fingerprint)s)
ON CONFLICT (key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, status = NULL, response = NULL, created_at = now()
    WHERE idempotency_keys.created_at < now() - %(ttl)s * interval '1 second'
RETURNING true
"""

PURGE_EVERY = 600.0  # seconds between deletions of expired keys, per process
_last_purge = 0.0


@dataclass(frozen=True)
class Replay:
    """The stored answer of the request that used the key first."""

    status: int
    body: bytes


def claim(conn: psycopg.Connection, key: str, fingerprint: bytes, ttl: float) -> Replay | None:
    """Take the key for this request (None), or return the answer stored under it.

    The same key with another fingerprint (another body, method or path) is a 422.
    """
    global _last_purge
    if conn.execute(CLAIM, {"key": key, "fingerprint": fingerprint, "ttl": ttl}).fetchone() is not None:
        now = time.monotonic()
        if now - _last_purge > PURGE_EVERY:
            _last_purge = now
            conn.execute("DELETE FROM idempotency_keys WHERE created_at < now() - %s * interval '1 second'", (ttl,))
        return None
    row = conn.execute("SELECT fingerprint, status, response FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
    assert row is not None and row[1] is not None  # claimed and answered in one transaction
    if bytes(row[0]) != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request (another body, method "
            "or path); use a new key for a new request."
        )
    return Replay(status=row[1], body=bytes(row[2]))


def save(conn: psycopg.Connection, key: str, status: int, body: bytes) -> None:
    """Store the answer under the key claimed in this transaction."""
    conn.execute("UPDATE idempotency_keys SET status = %s, response = %s WHERE key = %s", (status, body, key))
