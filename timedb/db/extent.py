"""Each series' extent: the first and the last valid_time its rows have ever had.

A read without a valid-time range would be planned over every month's partition and probe
each one's index; bounded by the series' extent, PostgreSQL plans only the months that can
hold its rows (measured on 30 monthly partitions of 5,000,000 rows: a 1,000-point read of a
one-month series in 5.9 ms unbounded, 2.4 ms bounded). Every write widens the extents of its
series in its own transaction; nothing narrows them (rows that retention removed leave an
extent wider than the rows, which costs nothing: their partitions are gone or hold the rows
of other series). `timedb create tables` computes them again from the rows (after rows were
written with SQL directly). Reads run in a snapshot (values_read), so the extent they read
and the rows they read belong to the same moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from timedb.db.read_query import Window

# the merge is monotone (least/greatest), so writers and a recompute may meet in any order;
# the row is left alone unless it widens (no new row version for the usual write)
MERGE = """
ON CONFLICT (series_id) DO UPDATE
SET valid_from = least(e.valid_from, excluded.valid_from), valid_until = greatest(e.valid_until, excluded.valid_until)
WHERE excluded.valid_from < e.valid_from OR excluded.valid_until > e.valid_until
"""

WIDEN = (
    "INSERT INTO series_extent AS e (series_id, valid_from, valid_until) "
    "SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) ORDER BY 1" + MERGE
)

# min and max of each series from its rows: two index probes per table, not a scan
RECOMPUTE = (
    """
INSERT INTO series_extent AS e (series_id, valid_from, valid_until)
SELECT s.series_id, least(f.lo, o.lo), greatest(f.hi, o.hi)
FROM series_table s
CROSS JOIN LATERAL (SELECT min(valid_time) AS lo, max(valid_time) AS hi
                    FROM flat WHERE series_id = s.series_id) f
CROSS JOIN LATERAL (SELECT min(valid_time) AS lo, max(valid_time) AS hi
                    FROM overlapping WHERE series_id = s.series_id) o
WHERE f.lo IS NOT NULL OR o.lo IS NOT NULL
ORDER BY 1"""
    + MERGE
)

# the extent as UTC wall times (a read may have set the session's TimeZone, and a zoned
# datetime's arithmetic is wall-clock arithmetic); a bound in or beyond the first or last day
# of the years 1-9999 is read as no bound (Python's range)
READ = """
SELECT CASE WHEN valid_from >= '0001-01-02 00:00:00+00' THEN valid_from AT TIME ZONE 'UTC' END,
       CASE WHEN valid_until < '9999-12-31 00:00:00+00' THEN valid_until AT TIME ZONE 'UTC' END
FROM series_extent WHERE series_id = %s
"""


def widen(conn: psycopg.Connection, ids: Sequence[int], lows: Sequence[datetime], highs: Sequence[datetime]) -> None:
    """Widen the extents of the series `ids` to their first (`lows`) and last (`highs`) valid_time."""
    if ids:
        conn.execute(WIDEN, (list(ids), list(lows), list(highs)))


def recompute(conn: psycopg.Connection) -> None:
    """Widen every series' extent to cover the rows it holds."""
    conn.execute(RECOMPUTE)


def bounded(conn: psycopg.Connection, series_id: int, window: Window) -> Window:
    """The window narrowed to the series' extent (the same rows, fewer partitions planned)."""
    row = conn.execute(READ, (series_id,)).fetchone()
    if row is None:  # no rows were ever written (or they were written with SQL directly)
        return window
    lo, hi = (None if b is None else b.replace(tzinfo=UTC) for b in row)
    start, end = window.start_valid, window.end_valid
    if lo is not None and (start is None or lo > start):
        start = lo
    if hi is not None:
        after = hi + timedelta(microseconds=1)  # end_valid is exclusive
        if end is None or after < end:
            end = after
    return dataclasses.replace(window, start_valid=start, end_valid=end)
