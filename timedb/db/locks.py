"""Advisory locks: writers of one series take turns (readers never wait), schema changes too."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg

# pg_advisory_xact_lock(SERIES_LOCK, key): one lock per series (two-int form, so the keys of
# other applications' one-bigint locks cannot collide with these)
SERIES_LOCK = 7345002
# pg_advisory_xact_lock(SCHEMA_LOCK): `timedb create tables` runs one at a time
SCHEMA_LOCK = 7345001
# pg_try_advisory_lock(RETENTION_LOCK): one `timedb retention apply` at a time
RETENTION_LOCK = 7345004

# Locks are taken in the order of the array (unnest keeps it); the MATERIALIZED CTE is fully
# read before clock_timestamp() is evaluated, so the time returned is after every lock.
LOCK_SERIES = """
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(%s, key) FROM unnest(%s::int4[]) AS key
)
SELECT clock_timestamp() FROM (SELECT count(*) FROM locked) AS taken
"""


def _key(series_id: int) -> int:
    """The series id folded into a signed 32-bit lock key (ids 2^32 apart share a lock)."""
    return (series_id + 2**31) % 2**32 - 2**31


def lock_series(conn: psycopg.Connection, series_ids: Iterable[int]) -> datetime:
    """Hold the write lock of these series until the transaction ends; returns the time
    after they were all taken (a write time later than every earlier writer's).

    Every writer takes its locks in ascending key order, so writers cannot deadlock.
    """
    keys = sorted({_key(s) for s in series_ids})
    row = conn.execute(LOCK_SERIES, (SERIES_LOCK, keys)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]
