"""Bulk writes of points with binary COPY."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from timedb.db import caller, extent, partitions
from timedb.errors import DuplicateValidTime, VersionConflict


class Span:
    """The first and last valid_time of the points written (seen as they stream by)."""

    __slots__ = ("first", "last")

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.last: datetime | None = None

    def add(self, vt: datetime) -> None:
        if self.first is None or self.last is None:
            self.first = self.last = vt
        elif vt > self.last:
            self.last = vt
        elif vt < self.first:
            self.first = vt

    def widen(self, conn: psycopg.Connection, series_id: int) -> None:
        """Widen the series' extent to these points (none: nothing to do)."""
        if self.first is not None and self.last is not None:
            extent.widen(conn, [series_id], [self.first], [self.last])


# (valid_time, valid_time_end, value)
Point = tuple[datetime, datetime | None, float | None]
# points are iterated again only on the rare error paths (a large request is decoded lazily)
Points = Iterable[Point]


@contextmanager
def _unique_valid_times(points: Points) -> Iterator[None]:
    """Report a key clash as 422: rows of one request share change_time, so it is a repeat."""
    try:
        yield
    except psycopg.errors.UniqueViolation:
        seen: set[datetime] = set()
        dups = []
        for vt, _, _ in points:
            if vt in seen:
                dups.append(vt)
            seen.add(vt)
        if not dups:
            raise
        shown = ", ".join(d.isoformat() for d in dups[:5])
        more = f" ({len(dups) - 5} more)" if len(dups) > 5 else ""
        raise DuplicateValidTime(f"valid_time must be unique within a request; repeated: {shown}{more}") from None


def insert_flat(
    conn: psycopg.Connection, series_id: int, points: Points, known_time: datetime | None, write_time: datetime
) -> None:
    """Append points as the current values of a flat series (change_time = write_time,
    known_time defaulting to it)."""
    known = known_time or write_time
    with (
        _unique_valid_times(points),
        partitions.routed("flat", lambda: partitions.months_of(p[0] for p in points)),
        conn.cursor() as cur,
        cur.copy(
            "COPY flat (series_id, valid_time, valid_time_end, value, known_time, change_time) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "timestamptz", "timestamptz", "float8", "timestamptz", "timestamptz"])
        write = copy.write_row
        span = Span()
        for vt, vte, value in points:
            write((series_id, vt, vte, value, known, write_time))
            span.add(vt)
    span.widen(conn, series_id)


# A default known_time is the write time, moved on by microseconds in the (clock stepped back)
# case that a batch of the series already holds it: default known times never collide.
CREATE_BATCH = """
INSERT INTO batches_table (series_id, workflow_id, batch_start_time, known_time, batch_params, inserted_by)
VALUES (%(series_id)s, %(workflow_id)s, %(start_time)s, coalesce(%(known_time)s, (
    SELECT t FROM generate_series(0, 999) AS n,
                  LATERAL (SELECT %(write_time)s::timestamptz + n * interval '1 microsecond' AS t) AS c
    WHERE NOT EXISTS (SELECT 1 FROM batches_table b WHERE b.series_id = %(series_id)s AND b.known_time = c.t)
    LIMIT 1)), %(batch_params)s, %(inserted_by)s)
RETURNING batch_id, known_time
"""


def create_batch(
    conn: psycopg.Connection,
    series_id: int,
    *,
    known_time: datetime | None,
    write_time: datetime,
    workflow_id: str,
    batch_params: dict[str, Any] | None,
    start_time: datetime,
) -> tuple[int, datetime]:
    """A new batch; returns (batch_id, known_time), known_time defaulting to write_time."""
    row = conn.execute(
        CREATE_BATCH,
        {
            "series_id": series_id,
            "workflow_id": workflow_id,
            "start_time": start_time,
            "known_time": known_time,
            "write_time": write_time,
            "batch_params": None if batch_params is None else Jsonb(batch_params),
            "inserted_by": caller.name(),
        },
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def check_versions_free(
    conn: psycopg.Connection, series_id: int, batch_id: int, known_time: datetime, points: Points
) -> None:
    """409 when another batch of this series already stored a version at this known_time
    (call with the series' write lock held, so no such version can appear meanwhile)."""
    others = conn.execute(
        "SELECT 1 FROM batches_table WHERE series_id = %s AND known_time = %s AND batch_id <> %s LIMIT 1",
        (series_id, known_time, batch_id),
    ).fetchone()
    if others is None:
        return
    taken = [
        r[0]
        for r in conn.execute(
            """
        SELECT DISTINCT valid_time FROM overlapping
        WHERE series_id = %s AND known_time = %s AND valid_time = ANY(%s)
        ORDER BY valid_time LIMIT 5
        """,
            (series_id, known_time, [p[0] for p in points]),
        )
    ]
    if taken:
        shown = ", ".join(t.isoformat() for t in taken)
        raise VersionConflict(
            f"Versions with known_time {known_time.isoformat()} already exist for "
            f"valid_time {shown}; nothing was stored."
        )


def insert_overlapping(
    conn: psycopg.Connection, series_id: int, batch_id: int, known_time: datetime, write_time: datetime, points: Points
) -> None:
    """Append one batch's versions of an overlapping series."""
    with (
        _unique_valid_times(points),
        partitions.routed("overlapping", lambda: partitions.months_of(p[0] for p in points)),
        conn.cursor() as cur,
        cur.copy(
            "COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time, change_time) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "int8", "timestamptz", "timestamptz", "float8", "timestamptz", "timestamptz"])
        write = copy.write_row
        span = Span()
        for vt, vte, value in points:
            write((batch_id, series_id, vt, vte, value, known_time, write_time))
            span.add(vt)
    span.widen(conn, series_id)
