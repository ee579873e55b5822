"""The data layer on a real database, without HTTP (issue 13): how driver errors become timedb
problems, how corrections are split into rounds, and how driver messages are cut for logs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from timedb import errors
from timedb.db.corrections import Correction, _rounds
from timedb.db.errors import first_line, translated

# SQLSTATE -> the problem a request gets (PostgreSQL raises each one here, from a DO block)
BY_STATE = [
    ("42P01", errors.SchemaMissing),  # undefined_table
    ("23505", errors.Conflict),  # unique_violation
    ("23P01", errors.Conflict),  # exclusion_violation
    ("23503", errors.NotFound),  # foreign_key_violation
    ("23514", errors.Unprocessable),  # check_violation
    ("23502", errors.Unprocessable),  # not_null_violation
    ("22P02", errors.Unprocessable),  # invalid_text_representation (a DataError)
    ("54000", errors.Unprocessable),  # program_limit_exceeded
    ("55P03", errors.LockTimeout),  # lock_not_available
    ("57014", errors.QueryTimeout),  # query_canceled
    ("40001", errors.ConcurrentChange),  # serialization_failure
    ("40P01", errors.ConcurrentChange),  # deadlock_detected
    ("26000", errors.ServiceUnavailable),  # invalid_sql_statement_name (prepared statements lost)
    ("57P01", errors.ServiceUnavailable),  # admin_shutdown (an OperationalError)
    ("XX000", errors.ServiceUnavailable),  # internal_error
]


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("state", "problem"), BY_STATE, ids=[s for s, _ in BY_STATE])
def test_each_driver_error_becomes_its_problem(conn, state, problem):
    marker = "secret-detail-from-the-driver"
    with pytest.raises(errors.TimedbError) as caught, translated():
        conn.execute(f"DO $$ BEGIN RAISE EXCEPTION '{marker}' USING ERRCODE = '{state}'; END $$")
    assert type(caught.value) is problem, (state, type(caught.value))
    assert marker not in caught.value.detail  # (the driver's text stays in the log)
    if caught.value.status >= 500 and problem is not errors.SchemaMissing:  # (a state, not a fault)
        assert isinstance(caught.value.__cause__, psycopg.Error)  # logged with its cause


def test_a_named_check_constraint_says_which_rule(conn):
    with pytest.raises(errors.Unprocessable) as caught, translated():
        conn.execute("INSERT INTO series_table (name, unit, labels) VALUES ('  ', 'MW', '{}')")
    assert caught.value.detail == "name must not be blank."


def test_timedb_errors_pass_through_untouched():
    original = errors.SeriesNotFound("No series.")
    with pytest.raises(errors.SeriesNotFound) as caught, translated():
        raise original
    assert caught.value is original


def at(hour: int) -> datetime:
    return datetime(2025, 1, 1, hour, tzinfo=UTC)


def test_corrections_of_one_point_apply_in_rounds_in_request_order():
    items = [
        Correction(1, False, at(0)),
        Correction(1, False, at(1)),
        Correction(1, False, at(0)),
        Correction(2, False, at(0)),
        Correction(1, False, at(0)),
    ]
    assert _rounds(items) == [[0, 1, 3], [2], [4]]


def test_distinct_points_share_one_round():
    assert _rounds([Correction(s, True, at(h)) for s in (1, 2) for h in range(3)]) == [[0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("connection to server failed: FATAL:  password authentication failed\nHINT: x", "connection to server failed"),
        ('invalid dsn: "postgresql://alice:hunter2@db/x"', "alice:***@db"),
        ("invalid connection option password='hunter2' host=db", "password=***"),
    ],
)
def test_first_line_keeps_one_line_and_no_password(message, shown):
    line = first_line(psycopg.OperationalError(message))
    assert shown in line and "hunter2" not in line and "\n" not in line


OLD_RETENTION_CHECK = "CHECK (retention IN ('short', 'medium', 'long'))"


def retention_check(conn: psycopg.Connection) -> tuple[int, str]:
    row = conn.execute(
        "SELECT oid::int, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'series_table'::regclass AND conname = 'series_valid_retention'"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_create_tables_gives_an_older_database_the_forever_tier(make_database):
    """A database made before the forever tier (its check lists three tiers) gets the wider check
    from `timedb create tables`, keeps its series, and a second run changes nothing."""
    from timedb.db.schema import create_tables

    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE series_table DROP CONSTRAINT series_valid_retention,"
            f" ADD CONSTRAINT series_valid_retention {OLD_RETENTION_CHECK}"
        )
        conn.execute("INSERT INTO series_table (name, retention) VALUES ('old', 'long')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO series_table (name, retention) VALUES ('new', 'forever')")
    create_tables(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        oid, definition = retention_check(conn)
        assert "forever" in definition
        conn.execute("INSERT INTO series_table (name, retention) VALUES ('new', 'forever')")
        assert conn.execute("SELECT name, retention FROM series_table ORDER BY name").fetchall() == [
            ("new", "forever"),
            ("old", "long"),
        ]
    create_tables(dsn)
    with psycopg.connect(dsn) as conn:
        assert retention_check(conn)[0] == oid  # not replaced again


def test_transactions_of_the_pool_run_without_jit(db_dsn):
    """JIT compilation costs more than timedb's index reads on a large table (bench: 132 ms of
    compiling for 6 ms of execution), so every transaction turns it off."""
    from timedb.db.pool import checkout, make_pool, open_pool, release
    from timedb.settings import Settings

    pool = make_pool(Settings(dsn=db_dsn, pool_min_size=1, pool_max_size=1))
    open_pool(pool)
    try:
        for watched in (False, True):
            conn = checkout(pool, watched=watched)
            try:
                assert conn.execute("SHOW jit").fetchone() == ("off",)
            finally:
                release(pool, conn)
    finally:
        pool.close()
