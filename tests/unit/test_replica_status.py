"""How the read replica's check answer becomes its state, lag and whether reads go to it
(timedb.db.replica.judge; the real replica: tests/api/test_read_replica.py)."""

from __future__ import annotations

import logging

import pytest

from timedb.db.replica import POOL_NAME, Status, _QuietReconnects, judge


def row(standby=True, paused=False, receiving=True, caught_up=True, replay_age=12.5):
    """An answer of the STATUS query: (pg_is_in_recovery, replay paused, WAL receiver streaming,
    receive lsn = replay lsn, seconds since the last replayed transaction)."""
    return (standby, paused, receiving, caught_up, replay_age)


def test_a_standby_that_replayed_all_it_received_lags_zero_however_idle_the_primary():
    assert judge(row(replay_age=3600.0), tables=True, max_lag=0) == Status("streaming", 0.0, True)


def test_wal_waiting_for_replay_lags_by_the_age_of_the_last_replayed_transaction():
    assert judge(row(caught_up=False), tables=True, max_lag=0) == Status("streaming", 12.5, True)


def test_a_paused_standby_still_takes_reads_without_a_lag_limit():
    assert judge(row(paused=True, caught_up=False), tables=True, max_lag=0) == Status("paused", 12.5, True)


def test_without_wal_coming_in_the_lag_is_the_estimate_even_when_caught_up():
    status = judge(row(receiving=False, caught_up=None), tables=True, max_lag=0)
    assert (status.state, status.lag_seconds, status.reads) == ("disconnected", 12.5, True)


@pytest.mark.parametrize(("lag", "reads"), [(12.5, False), (10.0, True)])
def test_a_lag_over_the_limit_sends_reads_to_the_primary(lag, reads):
    status = judge(row(caught_up=False, replay_age=lag), tables=True, max_lag=10.0)
    assert (status.state, status.lag_seconds, status.reads) == ("streaming", lag, reads)
    assert reads or "TIMEDB_READ_MAX_LAG" in status.reason


def test_an_unknown_lag_counts_as_too_much_only_under_a_limit():
    unknown = row(receiving=False, caught_up=None, replay_age=None)
    assert judge(unknown, tables=True, max_lag=0).reads
    assert not judge(unknown, tables=True, max_lag=30.0).reads


def test_a_server_not_in_recovery_is_reported_and_still_read():
    assert judge(row(standby=False, caught_up=None, replay_age=None), tables=True, max_lag=5.0) == Status(
        "not a standby", None, True
    )


def test_a_replica_without_the_tables_takes_no_reads():
    status = judge(row(), tables=False, max_lag=0)
    assert (status.state, status.reads) == ("schema missing", False)


def test_the_readyz_member():
    assert Status("streaming", 0.12345, True).document() == {"state": "streaming", "lag_seconds": 0.123, "reads": True}
    assert Status("unreachable", reason="refused").document() == {
        "state": "unreachable",
        "lag_seconds": None,
        "reads": False,
    }


def test_only_the_replica_pools_connection_warnings_are_dropped():
    quiet = _QuietReconnects()

    def record(level, *args):
        return logging.LogRecord("psycopg.pool", level, __file__, 1, "error connecting in %r: %s", args, None)

    assert not quiet.filter(record(logging.WARNING, POOL_NAME, "connection refused"))
    assert quiet.filter(record(logging.WARNING, "timedb", "connection refused"))
    assert quiet.filter(record(logging.ERROR, POOL_NAME, "something else"))
