"""`timedb retention apply`: remove values whose valid_time is older than their series' tier.

A series' tier (`short`, `medium`, `long`: intervals in timedb_settings, set by `timedb create
tables --retention*`; `forever`: never) decides how long its values are kept, counted back from
now on valid_time. All versions and corrections of a valid_time go together, so a kept
valid_time keeps its whole history.

On the partitioned layout a month partition whose series have all expired for the whole month
is dropped (no row-by-row work, space back at once); elsewhere the expired rows are deleted, one
statement per partition and tier. Which series a partition holds is read from its key index
(a skip scan: one probe per series) and read again under the lock that drops it, so a write
that lands meanwhile is never dropped with it. Every step commits on its own: an interrupted run
keeps what it did, and the next run goes on from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
from psycopg import sql

from timedb.db import partitions
from timedb.db.locks import RETENTION_LOCK
from timedb.errors import Conflict

# a drop waits this long for its lock on the parent table (readers and writers hold it), then
# tries again: a long-running read delays retention, never the other way round
DROP_LOCK_TIMEOUT = "2s"
DROP_ATTEMPTS = 5

SERIES_PRESENT = """
WITH RECURSIVE s AS (
    SELECT min(series_id) AS id FROM {table}
    UNION ALL
    SELECT (SELECT min(series_id) FROM {table} WHERE series_id > s.id) FROM s WHERE s.id IS NOT NULL
)
SELECT id FROM s WHERE id IS NOT NULL
"""


class RetentionRunning(Conflict):
    """Another `timedb retention apply` holds the retention lock."""


@dataclass(frozen=True)
class Tier:
    name: str
    interval: str  # as recorded, e.g. "6 months"
    cutoff: datetime  # values with a valid_time before it have expired


@dataclass(frozen=True)
class Step:
    """One partition (or unpartitioned table) to drop, or its expired rows to delete."""

    table: str  # the relation acted on: a partition, or a plain fact table
    drop: bool
    rows: int
    bytes: int  # exact for a drop; an estimate (rows x average row size) for a delete
    # for deletes: {tier: (cutoff or None for the whole partition, series ids)}
    deletes: tuple[tuple[str, datetime | None, tuple[int, ...]], ...] = ()


def tiers(conn: psycopg.Connection) -> dict[str, Tier]:
    """The expiring tiers with their cutoffs (now, in UTC, minus the interval)."""
    conn.execute("SET TimeZone = 'UTC'")
    rows = conn.execute(
        "SELECT substr(key, 11), value, now() - value::interval FROM timedb_settings"
        " WHERE key LIKE 'retention\\_%%' ORDER BY 3 DESC"
    ).fetchall()
    return {name: Tier(name, interval, cutoff) for name, interval, cutoff in rows}


def _tier_of(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT series_id, retention FROM series_table").fetchall())  # type: ignore[arg-type]


def _present(conn: psycopg.Connection, table: str) -> list[int]:
    query = sql.SQL(SERIES_PRESENT).format(table=sql.Identifier(table))
    return [r[0] for r in conn.execute(query).fetchall()]


def _plan_partition(
    conn: psycopg.Connection, part: partitions.Partition, tier_of: dict[int, str], expiring: dict[str, Tier]
) -> Step | None:
    """What retention does to one partition: nothing, drop it, or delete some of its rows."""
    if part.lower is None or not any(t.cutoff > part.lower for t in expiring.values()):
        return None  # (the common case, decided without reading the partition)
    present = _present(conn, part.name)
    if not present:
        return None
    by_tier: dict[str, list[int]] = {}
    for sid in present:
        # a series missing from the catalogue is kept: only a known tier removes anything
        by_tier.setdefault(tier_of.get(sid, "forever"), []).append(sid)
    whole = [t for t in by_tier if t in expiring and part.upper is not None and expiring[t].cutoff >= part.upper]
    if len(whole) == len(by_tier):
        return Step(part.name, True, 0, part.bytes)
    deletes = tuple(
        (t, None if t in whole else expiring[t].cutoff, tuple(by_tier[t]))
        for t in by_tier
        if t in expiring and expiring[t].cutoff > part.lower
    )
    return Step(part.name, False, 0, 0, deletes) if deletes else None


def _delete_where(
    deletes: tuple[tuple[str, datetime | None, tuple[int, ...]], ...],
) -> tuple[sql.Composed, list[object]]:
    """The WHERE clause (and its parameters) of a step's expired rows."""
    parts: list[sql.Composable] = []
    params: list[object] = []
    for _, cutoff, ids in deletes:
        if cutoff is None:
            parts.append(sql.SQL("series_id = ANY(%s)"))
            params.append(list(ids))
        else:
            parts.append(sql.SQL("(series_id = ANY(%s) AND valid_time < %s)"))
            params += [list(ids), cutoff]
    return sql.SQL(" OR ").join(parts), params


def _count(conn: psycopg.Connection, step: Step) -> Step:
    """The step with its row count (and, for a delete, an estimate of the bytes)."""
    table = sql.Identifier(step.table)
    if step.drop:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        return replace(step, rows=int(row[0]) if row else 0)
    where, params = _delete_where(step.deletes)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), (SELECT pg_total_relation_size(%s::regclass)::float8 / greatest(reltuples, 1)"
            " FROM pg_class WHERE oid = %s::regclass) FROM {} WHERE {}"
        ).format(table, where),
        [step.table, step.table, *params],
    ).fetchone()
    rows = int(row[0]) if row else 0
    return replace(step, rows=rows, bytes=round(rows * (row[1] or 0)) if row else 0)


def plan(conn: psycopg.Connection) -> list[Step]:
    """Every step retention would take now, with the rows and bytes each would remove."""
    expiring = tiers(conn)
    tier_of = _tier_of(conn)
    steps: list[Step] = []
    for part in partitions.listing(conn):
        step = _plan_partition(conn, part, tier_of, expiring)
        if step is not None:
            steps.append(step)
    for table in partitions.plain_tables(conn):  # an older database: deletes only
        ids: dict[str, list[int]] = {}
        for sid, tier in tier_of.items():
            if tier in expiring:
                ids.setdefault(tier, []).append(sid)
        deletes = tuple((t, expiring[t].cutoff, tuple(v)) for t, v in ids.items())
        if deletes:
            steps.append(Step(table, False, 0, 0, deletes))
    return [counted for counted in (_count(conn, s) for s in steps) if counted.rows or counted.drop]


def _drop(conn: psycopg.Connection, step: Step, tier_of: dict[int, str], expiring: dict[str, Tier]) -> Step | None:
    """Drop a partition, after reading its series again under the lock: a write that landed
    since the plan may have made it a delete (or nothing)."""
    part = next(p for p in partitions.listing(conn) if p.name == step.table)
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(part.table)))
                again = _plan_partition(conn, part, tier_of, expiring)
                if again is None or not again.drop:
                    return again
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(step.table)))
                return step
        except psycopg.errors.LockNotAvailable:
            if attempt == DROP_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _delete(conn: psycopg.Connection, step: Step) -> Step:
    where, params = _delete_where(step.deletes)
    with conn.transaction():
        cur = conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(step.table), where), params)
    return replace(step, rows=cur.rowcount)


def apply(conn: psycopg.Connection, steps: list[Step]) -> Iterator[Step]:
    """Take the planned steps, one transaction each; yields each step as taken (rows and bytes
    as removed). `conn` must be in autocommit mode."""
    expiring = tiers(conn)
    tier_of = _tier_of(conn)
    for step in steps:
        if step.drop:
            done = _drop(conn, step, tier_of, expiring)
            if done is not None and not done.drop:  # (it holds a kept series now)
                done = _delete(conn, done)
            if done is not None:
                yield done
        else:
            yield _delete(conn, step)


def hold_lock(conn: psycopg.Connection) -> None:
    """Take the retention lock for the session, or refuse: one run at a time."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK,)).fetchone()
    if not (row and row[0]):
        raise RetentionRunning("Another `timedb retention apply` is running on this database; nothing was done.")
