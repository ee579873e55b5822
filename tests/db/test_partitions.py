"""Monthly partitions of the fact tables (issue 14): the layout, partitions made for any month a
write touches, pruning of reads, and the migration of a database made before them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.db.older import dump, old_database
from timedb.db import partitions
from timedb.db.read_query import ReadSpec, Window, build_query
from timedb.db.schema import MigrationNeeded, create_tables

FACT = ("flat", "overlapping")


@pytest.fixture
def conn(db_dsn: str, emptier) -> Iterator[psycopg.Connection]:
    emptier()
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


def months_from(first: datetime, count: int) -> list[datetime]:
    """`count` month starts from `first` (UTC), by calendar arithmetic written out here."""
    out, y, m = [], first.year, first.month
    for _ in range(count):
        out.append(datetime(y, m, 1, tzinfo=UTC))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def partition_names(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


def test_fact_tables_are_partitioned_by_month_of_valid_time_with_months_ahead(conn):
    for table in FACT:
        strategy, key = conn.execute(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p"
            " JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
            " WHERE p.partrelid = %s::regclass",
            (table,),
        ).fetchone()
        assert (strategy, key) == ("r", "valid_time")
        # the template database was made this session: this month and the three after it
        now = datetime.now(UTC)
        ahead = {f"{table}_p{m:%Y%m}" for m in months_from(now, 4)}
        assert ahead <= partition_names(conn, table)
    assert conn.execute("SELECT value FROM timedb_settings WHERE key = 'schema_version'").fetchone() == ("3",)


def test_partition_bounds_are_utc_months_whatever_the_session_time_zone(conn):
    conn.execute("SET TimeZone = 'America/St_Johns'")  # (-03:30: any mistake shows)
    conn.execute("SELECT timedb_ensure_partitions('flat', ARRAY['2021-03-31 23:30+00'::timestamptz])")
    found = {p.name: p for p in partitions.listing(conn)}
    part = found["flat_p202103"]
    assert (part.lower, part.upper) == (datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 4, 1, tzinfo=UTC))


def test_ensure_makes_only_the_months_asked_and_is_idempotent(conn):
    asked = [datetime(1901, 2, 28, 23, 59, tzinfo=UTC), datetime(2099, 11, 4, tzinfo=UTC)]
    assert partitions.ensure(conn, "overlapping", asked, ahead=False) == 2
    names = partition_names(conn, "overlapping")
    assert {"overlapping_p190102", "overlapping_p209911"} <= names
    assert "overlapping_p190103" not in names  # (the months between are not made)
    assert partitions.ensure(conn, "overlapping", asked, ahead=False) == 0


def test_a_month_made_by_hand_under_another_name_is_used(conn):
    conn.execute("CREATE TABLE flat_by_hand (LIKE flat INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    conn.execute(
        "ALTER TABLE flat ATTACH PARTITION flat_by_hand FOR VALUES FROM ('2010-01-01+00') TO ('2011-01-01+00')"
    )
    assert partitions.ensure(conn, "flat", [datetime(2010, 6, 1, tzinfo=UTC)], ahead=False) == 0
    assert "flat_p201006" not in partition_names(conn, "flat")
    conn.execute("DROP TABLE flat_by_hand")


def test_two_writers_making_the_same_month_both_succeed(db_dsn, emptier):
    emptier()
    month = [datetime(1987, 5, 1, tzinfo=UTC)]
    results: list[int | BaseException] = []

    def make() -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as c:
                results.append(partitions.ensure(c, "flat", month, ahead=False))
        except BaseException as exc:  # (reported by the assert below)
            results.append(exc)

    # both wait for the lock that makes partitions one at a time; the second to get it finds the
    # month made by the first
    with psycopg.connect(db_dsn) as holder:
        holder.execute("LOCK TABLE flat IN SHARE UPDATE EXCLUSIVE MODE")
        threads = [threading.Thread(target=make) for _ in range(2)]
        for t in threads:
            t.start()
        holder.rollback()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [0, 1]  # type: ignore[type-var]


def test_reads_of_a_time_range_prune_the_other_months(conn):
    """A multi-year table: a one-week read, planned as the server plans it (bound parameters),
    scans the partition of that week's month only."""
    months = months_from(datetime(2020, 1, 1, tzinfo=UTC), 60)
    partitions.ensure(conn, "overlapping", months, ahead=False)
    conn.execute(
        "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value)"
        " SELECT 1, 1, t, t - interval '1 day', 1.0"
        " FROM generate_series('2020-01-01+00'::timestamptz, '2024-12-31+00', interval '6 hours') AS t"
    )
    conn.execute("ANALYZE overlapping")
    start = datetime(2022, 3, 7, tzinfo=UTC)
    spec = ReadSpec(window=Window(start_valid=start, end_valid=start + timedelta(days=7)))
    query, params = build_query(True, spec)
    with conn.cursor() as cur:
        plan = "\n".join(
            r[0] for r in cur.execute("EXPLAIN " + query.as_string(conn), {**params, "series_id": 1}).fetchall()
        )
    scanned = {w for w in plan.replace("(", " ").split() if w.startswith("overlapping_p")}
    assert scanned == {"overlapping_p202203"}, plan
    rows = conn.execute(query, {**params, "series_id": 1}).fetchall()
    assert len(rows) == 7 * 4


# --- the migration of a database made before partitions ----------------------------------------


def spans_of(rows: dict[str, list[tuple]]) -> dict[int, tuple[datetime, datetime]]:
    """The first and last valid_time of each series in a dump of the fact tables."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    for table, at in (("flat", 1), ("overlapping", 2)):  # (overlapping: batch_id first)
        for sid, vt in ((r[at], r[at + 1]) for r in rows[table]):
            lo, hi = spans.get(sid, (vt, vt))
            spans[sid] = (min(lo, vt), max(hi, vt))
    return spans


def test_create_tables_moves_an_older_database_into_partitions_without_losing_a_row(make_database):
    dsn = old_database(make_database)
    before = dump(dsn)
    assert len(before["flat"]) == 24 * 64 + 2 and len(before["overlapping"]) == 2
    moved = create_tables(dsn)
    assert moved == {"flat": len(before["flat"]), "overlapping": 2}
    assert dump(dsn) == before  # every column of every row, ids included
    with psycopg.connect(dsn, autocommit=True) as c:
        assert partitions.plain_tables(c) == []
        assert partitions.schema_version(c) == partitions.PARTITIONED_VERSION
        assert {"flat_p202211", "flat_p202212", "flat_p202301", "flat_p202302"} <= partition_names(c, "flat")
        assert c.execute("SELECT to_regclass('flat_unpartitioned')").fetchone() == (None,)
        # each series' extent: the first and last valid_time of its rows
        assert {r[0]: (r[1], r[2]) for r in c.execute("SELECT * FROM series_extent")} == spans_of(before)
        # new rows continue the ids
        new_id = c.execute(
            "INSERT INTO flat (series_id, valid_time, value) VALUES (1, '2023-01-15+00', 5) RETURNING flat_id"
        ).fetchone()
        assert new_id[0] > max(r[0] for r in before["flat"])
    assert create_tables(dsn) == {}  # (a second run has nothing to move)


def test_create_tables_refuses_a_large_older_database_and_adds_only_the_extents(make_database, monkeypatch):
    """The rows stay where they are; the series' extents, which a server needs on either
    layout, are added."""
    dsn = old_database(make_database)
    before = dump(dsn)
    monkeypatch.setattr(partitions, "AUTO_MIGRATE_ROWS", 100)
    with pytest.raises(MigrationNeeded) as refused:
        create_tables(dsn)
    assert "`timedb partitions migrate`" in refused.value.detail
    assert "more than 100 rows" in refused.value.detail and "\n" not in refused.value.detail
    with psycopg.connect(dsn) as c:
        assert partitions.plain_tables(c) == ["flat", "overlapping"]
        assert partitions.schema_version(c) == 2
        assert c.execute("SELECT count(*) FROM series_extent").fetchone() == (len(spans_of(before)),)
    assert dump(dsn) == before
    assert create_tables(dsn, migrate=True) == {"flat": len(before["flat"]), "overlapping": 2}
    assert dump(dsn) == before


def test_a_failed_migration_leaves_the_older_database_as_it_was(make_database):
    """A row the partitioned table refuses (here: made invalid by hand in the old table) rolls
    the whole migration back."""
    dsn = old_database(make_database)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ALTER TABLE flat DROP CONSTRAINT flat_interval")
        c.execute(
            "INSERT INTO flat (series_id, valid_time, valid_time_end) VALUES (1, '2023-03-01+00', '2023-02-01+00')"
        )
    before = dump(dsn)
    with pytest.raises(Exception):  # (whatever the driver's problem: nothing may change)
        create_tables(dsn)
    assert dump(dsn) == before
    with psycopg.connect(dsn) as c:
        assert partitions.plain_tables(c) == ["flat", "overlapping"]


def test_a_table_with_children_of_its_own_is_not_moved(make_database):
    """A plain fact table with inheritance children (as a TimescaleDB hypertable has its chunks)
    is another layout: `create tables` leaves it alone."""
    dsn = old_database(make_database)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE flat_chunk_1 () INHERITS (flat)")
    before = dump(dsn)
    assert create_tables(dsn) == {"overlapping": 2}
    assert dump(dsn) == before
    with psycopg.connect(dsn) as c:
        kinds = dict(c.execute("SELECT relname, relkind FROM pg_class WHERE relname IN ('flat', 'overlapping')"))
    assert kinds == {"flat": "r", "overlapping": "p"}


def test_months_at_the_ends_of_the_calendar_are_made_and_listed(conn):
    """December 9999 ends in year 10000 and a month before year 1 is BC: neither stops the
    listing (or retention, which reads it); such a bound is listed as None."""
    conn.execute("SET TimeZone = 'America/St_Johns'")  # (year 1 in UTC prints as BC here)
    conn.execute(
        "SELECT timedb_ensure_partitions('flat', ARRAY['9999-12-31 23:00+00', '0001-01-01 00:00+00',"
        " '0001-12-31 20:00+00 BC']::timestamptz[])"
    )
    found = {p.name: p for p in partitions.listing(conn)}
    assert (found["flat_p999912"].lower, found["flat_p999912"].upper) == (datetime(9999, 12, 1, tzinfo=UTC), None)
    assert found["flat_p000101"].lower == datetime(1, 1, 1, tzinfo=UTC)
    assert found["flat_p000112_bc"].lower is None and found["flat_p000112_bc"].upper == datetime(1, 1, 1, tzinfo=UTC)
    assert partitions.month_start(datetime.fromisoformat("0001-01-01T00:00:00+05:00")).year == 1  # (left to SQL)
    conn.execute("DROP TABLE flat_p999912, flat_p000101, flat_p000112_bc")
