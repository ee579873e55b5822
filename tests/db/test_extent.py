"""Series extents in the data layer (issue 14): a read without a valid-time range is planned over
the months of its series' rows only, in a snapshot, and the extent's ends are handled."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.db.test_partitions import months_from
from timedb.db import extent, partitions
from timedb.db.pool import _begin
from timedb.db.read_query import ReadSpec, Window
from timedb.db.series import SeriesFilter
from timedb.db.values_read import one_series


@pytest.fixture
def conn(db_dsn: str, emptier) -> Iterator[psycopg.Connection]:
    emptier()
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


def add_series(conn: psycopg.Connection, sid: int, overlapping: bool = True) -> None:
    conn.execute(
        "INSERT INTO series_table (series_id, name, overlapping) VALUES (%s, %s, %s)", (sid, f"s{sid}", overlapping)
    )


def scanned(conn: psycopg.Connection, sid: int, spec: ReadSpec) -> set[str]:
    """The partitions in the plan of the server's read of series sid."""
    query, params = one_series(SeriesFilter(series_id=sid), spec)(conn)
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query.as_string(conn), params).fetchall())
    return {w for w in plan.replace("(", " ").split() if re.fullmatch(r"overlapping_p\d{6}", w)}


def test_a_read_without_a_range_plans_only_the_months_of_the_series(conn):
    partitions.ensure(conn, "overlapping", months_from(datetime(2021, 1, 1, tzinfo=UTC), 36), ahead=False)
    add_series(conn, 1)
    add_series(conn, 2)
    conn.execute(  # series 1 fills three years; series 2 holds ten days of March 2023
        "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value)"
        " SELECT 1, 1, t, t - interval '1 day', 1.0"
        " FROM generate_series('2021-01-01+00'::timestamptz, '2023-12-31+00', interval '6 hours') AS t"
        " UNION ALL SELECT 2, 2, t, '2023-01-01+00', 2.0"
        " FROM generate_series('2023-03-05+00'::timestamptz, '2023-03-15+00', interval '1 hour') AS t"
    )
    extent.recompute(conn)
    conn.execute("ANALYZE overlapping")
    assert scanned(conn, 2, ReadSpec()) == {"overlapping_p202303"}
    # a range wider than the extent, and one ending inside it
    wide = Window(start_valid=datetime(2020, 1, 1, tzinfo=UTC), end_valid=datetime(2030, 1, 1, tzinfo=UTC))
    assert scanned(conn, 2, ReadSpec(window=wide)) == {"overlapping_p202303"}
    early = Window(end_valid=datetime(2023, 3, 10, tzinfo=UTC))
    assert scanned(conn, 1, ReadSpec(window=early)) == {
        f"overlapping_p{m:%Y%m}" for m in months_from(datetime(2021, 1, 1), 27)
    }
    query, params = one_series(SeriesFilter(series_id=2), ReadSpec())(conn)
    assert len(conn.execute(query, params).fetchall()) == 10 * 24 + 1


def test_bounded_keeps_the_tighter_end_and_reads_no_bound_at_the_ends_of_the_calendar(conn):
    add_series(conn, 1)
    lo, hi = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 31, 12, tzinfo=UTC)
    extent.widen(conn, [1], [lo], [hi])
    assert extent.bounded(conn, 1, Window()) == Window(start_valid=lo, end_valid=hi + timedelta(microseconds=1))
    inner = Window(start_valid=datetime(2024, 3, 5, tzinfo=UTC), end_valid=datetime(2024, 3, 6, tzinfo=UTC))
    assert extent.bounded(conn, 1, inner) == inner
    assert extent.bounded(conn, 2, inner) == inner  # no extent: unchanged
    # extents at the ends of what Python can hold (an instant of year 0 or 10000 in UTC)
    conn.execute(
        "UPDATE series_extent SET valid_from = '0001-01-01 00:00:00+01', valid_until = '9999-12-31 23:59:59-01'"
    )
    assert extent.bounded(conn, 1, Window()) == Window()


def test_widen_merges_in_any_order_and_never_narrows(conn):
    add_series(conn, 1)
    a, b, c = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3))
    extent.widen(conn, [1], [b], [b])
    extent.widen(conn, [1], [a], [b])
    extent.widen(conn, [1], [b], [c])
    extent.widen(conn, [1], [b], [b])
    assert conn.execute("SELECT valid_from, valid_until FROM series_extent").fetchall() == [(a, c)]


def test_streamed_reads_run_in_a_snapshot(db_dsn):
    """A read looks up its series and extent, then reads the rows: REPEATABLE READ makes them
    one moment, so no write committed in between is seen half."""
    with psycopg.connect(db_dsn) as c:
        c.execute(_begin(0, 1, snapshot=True), prepare=False)
        assert c.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        c.rollback()
        c.execute(_begin(0, 1), prepare=False)
        assert c.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
