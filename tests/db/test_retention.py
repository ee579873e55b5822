"""`timedb retention apply` on a real database (issue 14): what goes and what stays is computed
here from the rows written, with the tiers' intervals in days (exact arithmetic)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.db.older import dump, old_database
from timedb.db import partitions, retention
from timedb.db.locks import RETENTION_LOCK

DAYS = {"short": 30, "medium": 400, "long": 1000}
# series_id -> (tier, table)
SERIES = {1: ("short", "flat"), 2: ("medium", "overlapping"), 3: ("long", "flat"), 4: ("forever", "flat")}
HOUR = timedelta(hours=1)


@pytest.fixture
def conn(db_dsn: str, emptier) -> Iterator[psycopg.Connection]:
    emptier()
    with psycopg.connect(db_dsn, autocommit=True) as c:
        c.execute("SET TimeZone = 'UTC'")
        yield c
        for tier, days in {"short": "6 months", "medium": "3 years", "long": "5 years"}.items():
            c.execute("UPDATE timedb_settings SET value = %s WHERE key = %s", (days, f"retention_{tier}"))


def month(ts: datetime) -> str:
    return f"{ts:%Y%m}"


def seed(conn: psycopg.Connection) -> tuple[datetime, list[tuple[int, str, datetime]]]:
    """Tiers in days; four series; no row within minutes of a cutoff (which moves on while the
    test runs). Returns (now, rows as (series, table, valid_time))."""
    for tier, days in DAYS.items():
        conn.execute("UPDATE timedb_settings SET value = %s WHERE key = %s", (f"{days} days", f"retention_{tier}"))
    for sid, (tier, table) in SERIES.items():
        conn.execute(
            "INSERT INTO series_table (series_id, name, retention, overlapping) VALUES (%s, %s, %s, %s)",
            (sid, f"s{sid}", tier, table == "overlapping"),
        )
    now = datetime.now(UTC)
    day = timedelta(days=1)
    rows: list[tuple[int, str, datetime]] = []
    # short: the last 90 days, hourly, each half an hour off now (the cutoff retention computes a
    # moment later, now() - 30 days, stays half an hour from every row)
    rows += [(1, "flat", now - HOUR / 2 - k * HOUR) for k in range(90 * 24)]
    rows += [(2, "overlapping", now - d * day) for d in (500, 501, 300)]  # medium
    rows += [(3, "flat", now - d * day) for d in (1500, 900)]  # long
    rows += [(4, "flat", now - d * day) for d in (2000, 5)]  # forever
    for table in ("flat", "overlapping"):
        partitions.ensure(conn, table, [vt for _, t, vt in rows if t == table], ahead=False)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO flat (series_id, valid_time, value, change_time) VALUES (%s, %s, 1, now())",
            [(s, vt) for s, t, vt in rows if t == "flat"],
        )
        # a correction of a kept and of an expired valid_time of the short series
        cur.executemany(
            "INSERT INTO flat (series_id, valid_time, value, change_time) VALUES (1, %s, 2, now() + interval '1 s')",
            [(now - HOUR / 2 - 240 * HOUR,), (now - HOUR / 2 - 960 * HOUR,)],  # (10 and 40 days back)
        )
        conn.execute("INSERT INTO batches_table (batch_id, series_id, known_time) VALUES (1, 2, now()), (2, 2, now())")
        # two versions of each valid_time of the overlapping series
        cur.executemany(
            "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value) VALUES (%s, 2, %s, %s, 1)",
            [(b, vt, vt - b * day) for s, t, vt in rows if t == "overlapping" for b in (1, 2)],
        )
    rows += [(1, "flat", now - HOUR / 2 - 240 * HOUR), (1, "flat", now - HOUR / 2 - 960 * HOUR)]
    rows += [(2, "overlapping", vt) for s, t, vt in rows if t == "overlapping"]  # (the second versions)
    return now, rows


def kept(now: datetime, rows: list[tuple[int, str, datetime]]) -> list[tuple[int, str, datetime]]:
    """The rows retention must keep: a forever series', or valid_time within its tier."""
    out = []
    for sid, table, vt in rows:
        tier = SERIES[sid][0]
        if tier == "forever" or vt >= now - timedelta(days=DAYS[tier]):
            out.append((sid, table, vt))
    return sorted(out)


def stored(conn: psycopg.Connection) -> list[tuple[int, str, datetime]]:
    rows = conn.execute(
        "SELECT series_id, 'flat', valid_time FROM flat UNION ALL SELECT series_id, 'overlapping', valid_time"
        " FROM overlapping"
    ).fetchall()
    return sorted(rows)


def names(conn: psycopg.Connection) -> set[str]:
    return {p.name for p in partitions.listing(conn)}


def test_retention_drops_expired_months_deletes_at_the_edges_and_keeps_the_rest(conn):
    now, rows = seed(conn)
    expected = kept(now, rows)
    assert len(expected) < len(rows)  # (something expires)
    planned = retention.plan(conn)
    assert stored(conn) == sorted(rows)  # (planning changes nothing)
    assert sum(s.rows for s in planned) == len(rows) - len(expected)

    taken = list(retention.apply(conn, planned))
    assert stored(conn) == expected
    assert [(s.table, s.drop, s.rows) for s in taken] == [(s.table, s.drop, s.rows) for s in planned]
    # whole months of a single expired tier went as partitions
    dropped = {s.table for s in taken if s.drop}
    assert f"flat_p{month(now - timedelta(days=1500))}" in dropped  # long, alone in its month
    assert f"overlapping_p{month(now - timedelta(days=500))}" in dropped  # medium, both versions
    assert f"flat_p{month(now - timedelta(days=80))}" in dropped  # short, whole month expired
    assert dropped.isdisjoint(names(conn))
    # the forever series' month of 2000 days ago is kept; the month of the cutoff is cut, not dropped
    assert f"flat_p{month(now - timedelta(days=2000))}" in names(conn)
    assert f"flat_p{month(now - timedelta(days=30))}" in names(conn)
    # a kept valid_time keeps its correction (both rows); an expired one lost both
    both = conn.execute(
        "SELECT count(*) FROM flat WHERE series_id = 1 AND valid_time = %s", (now - HOUR / 2 - 240 * HOUR,)
    ).fetchone()
    assert both == (2,)
    assert retention.plan(conn) == []  # (nothing left to do)


def test_a_dry_run_reports_what_the_run_removes_and_changes_nothing(conn):
    seed(conn)
    before = stored(conn)
    planned = retention.plan(conn)
    assert stored(conn) == before and names(conn) >= {s.table for s in planned if s.drop}
    assert all(s.rows > 0 and s.bytes > 0 for s in planned)
    removed = sum(s.rows for s in retention.apply(conn, planned))
    assert removed == sum(s.rows for s in planned) == len(before) - len(stored(conn))


def test_a_row_of_a_kept_series_written_after_the_plan_saves_its_month(conn):
    """The partition is read again under the lock that would drop it."""
    now, _ = seed(conn)
    planned = retention.plan(conn)
    old = now - timedelta(days=1500)
    target = f"flat_p{month(old)}"
    assert any(s.table == target and s.drop for s in planned)
    conn.execute("INSERT INTO flat (series_id, valid_time, value) VALUES (4, %s, 7)", (old + HOUR,))
    taken = {s.table: s for s in retention.apply(conn, planned)}
    assert not taken[target].drop and taken[target].rows == 1  # (the long series' row, deleted)
    assert target in names(conn)
    assert conn.execute(f"SELECT series_id, value FROM {target}").fetchall() == [(4, 7.0)]


def test_one_run_at_a_time(conn, db_dsn):
    with psycopg.connect(db_dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (RETENTION_LOCK,))
        with pytest.raises(retention.RetentionRunning):
            retention.hold_lock(conn)
        other.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
    retention.hold_lock(conn)
    conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))


def test_an_unpartitioned_older_database_gets_deletes(make_database):
    """Before `timedb create tables` moves it into partitions, retention deletes rows."""
    dsn = old_database(make_database)  # flat rows of 2022-11-30 .. 2023-02-02, medium tier
    before = dump(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO timedb_settings VALUES ('retention_medium', '1 day')")  # (recorded by create tables)
        cutoff = c.execute("SELECT now() - interval '1 day'").fetchone()[0]
        planned = retention.plan(c)
        assert [(s.table, s.drop) for s in planned] == [("flat", False), ("overlapping", False)]
        list(retention.apply(c, planned))
    after = dump(dsn)
    assert after["flat"] == [r for r in before["flat"] if r[2] >= cutoff] == []
    assert after["overlapping"] == []
