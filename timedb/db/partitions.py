"""Monthly partitions of the fact tables by valid_time.

`flat` and `overlapping` are partitioned by range of `valid_time`, one partition per calendar
month in UTC, named `<table>_pYYYYMM`. Partitions are made by the SQL function
`timedb_ensure_partitions` (schema.sql): as a plain table, then attached, which locks the parent
only in SHARE UPDATE EXCLUSIVE mode (reads and writes go on), where CREATE TABLE ... PARTITION OF
would lock it exclusively.

A write never checks for partitions first: a write into a month without one fails in
PostgreSQL ("no partition of relation found for row"), the write function raises
`PartitionMissing` with the months of its rows, and `pool.in_transaction` makes them in a short
transaction of its own and runs the write again. Writes into existing months cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

FACT_TABLES = ("flat", "overlapping")
# months made ahead of the current one by `timedb create tables` and by every write that makes one
AHEAD_MONTHS = 3
# the schema_version of the partitioned layout (2: flat and overlapping are plain tables)
PARTITIONED_VERSION = 3


class PartitionMissing(Exception):  # a signal to pool.in_transaction, never an answer
    """A write met a month without a partition; `months` are the months of its rows."""

    def __init__(self, table: str, months: list[datetime]) -> None:
        super().__init__(f"{table}: no partition for {len(months)} month(s)")
        self.table = table
        self.months = months


def month_start(ts: datetime) -> datetime:
    """The first instant of ts's calendar month in UTC; ts itself where UTC is outside Python's
    years 1-9999 (0001-01-01T00:00+05:00 is in year 0 in UTC): timedb_ensure_partitions
    truncates what it is given in UTC itself."""
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:
        return ts
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def months_of(valid_times: Iterable[datetime]) -> list[datetime]:
    """The distinct months (in UTC) of some valid_times, in order."""
    return sorted({month_start(vt) for vt in valid_times})


def months_ahead(now: datetime | None = None, ahead: int = AHEAD_MONTHS) -> list[datetime]:
    """The current month and the `ahead` months after it."""
    month = month_start(now or datetime.now(UTC))
    found = [month]
    for _ in range(ahead):
        month = month_start(month + timedelta(days=32))
        found.append(month)
    return found


def is_missing_partition(exc: psycopg.Error) -> bool:
    """The error of a row routed to a month without a partition (a check violation that names
    no constraint; the table's own checks always do)."""
    return isinstance(exc, psycopg.errors.CheckViolation) and not exc.diag.constraint_name


@contextmanager
def routed(table: str, months: Callable[[], list[datetime]]) -> Iterator[None]:
    """Turn a missing partition met inside the block into PartitionMissing(table, months())."""
    try:
        yield
    except psycopg.errors.CheckViolation as exc:
        if not is_missing_partition(exc):
            raise
        raise PartitionMissing(table, months()) from None


def ensure(conn: psycopg.Connection, table: str, months: Iterable[datetime], ahead: bool = True) -> int:
    """Make the partitions of these months of `table` (and, with `ahead`, of the coming ones)
    where missing; the number made. Does nothing on a table that is not partitioned."""
    wanted = sorted(set(months) | set(months_ahead() if ahead else ()))
    row = conn.execute("SELECT timedb_ensure_partitions(%s::regclass, %s::timestamptz[])", (table, wanted)).fetchone()
    return int(row[0]) if row else 0


# ----------------------------------------------------------------------------- the layout

# columns of the fact tables, in their order (a migration copies them by name)
COLUMNS = {
    "flat": (
        "flat_id, series_id, valid_time, valid_time_end, known_time, change_time, value, annotation, tags, changed_by"
    ),
    "overlapping": (
        "overlapping_id, batch_id, series_id, valid_time, valid_time_end, known_time, change_time, value,"
        " annotation, tags, changed_by"
    ),
}
IDENTITY = {"flat": "flat_id", "overlapping": "overlapping_id"}
# `timedb create tables` moves up to this many rows into partitions by itself; more is
# `timedb partitions migrate`, run on purpose (the tables are locked while the rows move)
AUTO_MIGRATE_ROWS = 1_000_000
# a plain fact table is renamed to this while its rows move into the partitioned one
SET_ASIDE = "{}_unpartitioned"


def plain_tables(conn: psycopg.Connection) -> list[str]:
    """The fact tables that exist as plain (unpartitioned) tables: a database made before
    schema version 3. A table with inheritance children (a TimescaleDB hypertable has its
    chunks as children) is someone else's layout and never moved."""
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n)"
        " WHERE (SELECT relkind FROM pg_class WHERE oid = to_regclass(t)) = 'r'"
        "   AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = to_regclass(t))"
        " ORDER BY n",
        (list(FACT_TABLES),),
    ).fetchall()
    tables = [r[0] for r in rows]
    hypertables = conn.execute("SELECT to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL").fetchone()
    if tables and hypertables and hypertables[0]:  # (an empty hypertable has no chunks yet)
        made = conn.execute(
            "SELECT table_name::text FROM _timescaledb_catalog.hypertable WHERE schema_name = current_schema()"
        ).fetchall()
        tables = [t for t in tables if t not in {m[0] for m in made}]
    return tables


def rows_at_most(conn: psycopg.Connection, tables: list[str], limit: int) -> int:
    """How many rows the tables hold, counted up to `limit` (past it, `limit`)."""
    total = 0
    for table in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS r").format(sql.Identifier(table)),
            (limit - total,),
        ).fetchone()
        total += row[0] if row else 0
        if total >= limit:
            break
    return total


def set_aside(conn: psycopg.Connection, tables: list[str]) -> None:
    """Rename plain fact tables (and their key index and identity sequence) out of the way,
    so that schema.sql makes the partitioned ones; `move_rows` empties and drops them."""
    conn.execute("LOCK TABLE " + ", ".join(tables) + " IN ACCESS EXCLUSIVE MODE")
    for table in tables:
        aside = SET_ASIDE.format(table)
        row = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, IDENTITY[table])).fetchone()
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(table), sql.Identifier(aside)))
        conn.execute(
            sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                sql.Identifier(f"{table}_key"), sql.Identifier(f"{aside}_key")
            )
        )
        if row and row[0]:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                    sql.SQL(row[0]), sql.Identifier(f"{aside}_{IDENTITY[table]}_seq")
                )
            )


def move_rows(conn: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    """Copy the rows of set-aside tables into the partitioned ones (the partitions of their
    months made first), carry the identity sequence on, drop the set-aside tables; the rows
    moved per table."""
    moved = {}
    for table in tables:
        aside, ident = sql.Identifier(SET_ASIDE.format(table)), sql.Identifier(table)
        conn.execute(
            sql.SQL(
                "SELECT timedb_ensure_partitions(%s::regclass,"
                " array(SELECT DISTINCT date_trunc('month', valid_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' FROM {}))"
            ).format(aside),
            (table,),
        )
        cols = sql.SQL(COLUMNS[table])
        cur = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(ident, cols, cols, aside))
        moved[table] = cur.rowcount
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), last) FROM"
                " (SELECT greatest(pg_sequence_last_value(%s::regclass), (SELECT max({}) FROM {})) AS last) AS s"
                " WHERE last IS NOT NULL"
            ).format(sql.Identifier(IDENTITY[table]), aside),
            (table, IDENTITY[table], f"{SET_ASIDE.format(table)}_{IDENTITY[table]}_seq"),
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(aside))
    return moved


# ----------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    lower: datetime | None  # None: MINVALUE
    upper: datetime | None  # None: MAXVALUE
    rows: int  # PostgreSQL's estimate (-1: never analysed), or exact when counted
    bytes: int


# bounds as seconds since 1970 (psycopg cannot read a bound past year 9999, e.g. the upper bound
# of December 9999, and text would follow the session's TimeZone)
LIST = """
SELECT p.relname, c.relname,
       extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]
               ::timestamptz),
       extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]
               ::timestamptz),
       c.reltuples::bigint, pg_total_relation_size(c.oid)
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE i.inhparent = ANY(array(SELECT to_regclass(t) FROM unnest(%s::text[]) AS t))
 ORDER BY p.relname, 3 NULLS FIRST, c.relname
"""


def listing(conn: psycopg.Connection, tables: Iterable[str] = FACT_TABLES) -> list[Partition]:
    """The partitions of the fact tables, by table and month (bounds as printed by PostgreSQL,
    with their offset, so the session's TimeZone does not matter)."""
    return [
        Partition(parent, name, _instant(lower), _instant(upper), rows, size)
        for parent, name, lower, upper, rows, size in conn.execute(LIST, (list(tables),)).fetchall()
    ]


def _instant(epoch: float | None) -> datetime | None:
    """A bound as a datetime; None for MINVALUE/MAXVALUE and for bounds outside years 1-9999
    (such a month is never dropped by retention, and is listed without that bound)."""
    if epoch is None:
        return None
    try:
        return EPOCH + timedelta(seconds=float(epoch))
    except OverflowError:
        return None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def count_rows(conn: psycopg.Connection, part: Partition) -> Partition:
    """The partition with its exact row count."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(part.name))).fetchone()
    return replace(part, rows=int(row[0]) if row else 0)


def schema_version(conn: psycopg.Connection) -> int | None:
    """The schema_version recorded in timedb_settings (None: not recorded)."""
    row = conn.execute("SELECT value FROM timedb_settings WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row and row[0].isdigit() else None
