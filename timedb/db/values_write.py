"""Bulk writes of points with binary COPY."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from timedb.errors import DuplicateValidTime, VersionConflict

# (valid_time, valid_time_end, value)
Point = tuple[datetime, datetime | None, float | None]


@contextmanager
def _unique_valid_times(points: list[Point]) -> Iterator[None]:
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
    conn: psycopg.Connection, series_id: int, points: list[Point], known_time: datetime | None
) -> None:
    """Append points as the current values of a flat series (change_time = now())."""
    with _unique_valid_times(points), conn.cursor() as cur:
        if known_time is None:
            stmt = "COPY flat (series_id, valid_time, valid_time_end, value) FROM STDIN (FORMAT BINARY)"
            types = ["int8", "timestamptz", "timestamptz", "float8"]
        else:
            stmt = ("COPY flat (series_id, valid_time, valid_time_end, value, known_time) "
                    "FROM STDIN (FORMAT BINARY)")
            types = ["int8", "timestamptz", "timestamptz", "float8", "timestamptz"]
        with cur.copy(stmt) as copy:
            copy.set_types(types)
            write = copy.write_row
            if known_time is None:
                for vt, vte, value in points:
                    write((series_id, vt, vte, value))
            else:
                for vt, vte, value in points:
                    write((series_id, vt, vte, value, known_time))


def create_batch(
    conn: psycopg.Connection,
    series_id: int,
    *,
    known_time: datetime | None,
    workflow_id: str,
    batch_params: dict[str, Any] | None,
    start_time: datetime,
) -> tuple[int, datetime]:
    """A new batch; returns (batch_id, known_time), known_time defaulting to now()."""
    row = conn.execute(
        """
        INSERT INTO batches_table (series_id, workflow_id, batch_start_time, known_time, batch_params)
        VALUES (%s, %s, %s, coalesce(%s, now()), %s)
        RETURNING batch_id, known_time
        """,
        (series_id, workflow_id, start_time, known_time,
         None if batch_params is None else Jsonb(batch_params)),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def check_versions_free(
    conn: psycopg.Connection, series_id: int, batch_id: int, known_time: datetime, points: list[Point]
) -> None:
    """409 when another batch of this series already stored a version at this known_time."""
    # serialise writers that name the same known_time for one series
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", (7345002, str(series_id)))
    others = conn.execute(
        "SELECT 1 FROM batches_table WHERE series_id = %s AND known_time = %s AND batch_id <> %s LIMIT 1",
        (series_id, known_time, batch_id),
    ).fetchone()
    if others is None:
        return
    taken = [r[0] for r in conn.execute(
        """
        SELECT DISTINCT valid_time FROM overlapping
        WHERE series_id = %s AND known_time = %s AND valid_time = ANY(%s)
        ORDER BY valid_time LIMIT 5
        """,
        (series_id, known_time, [p[0] for p in points]),
    )]
    if taken:
        shown = ", ".join(t.isoformat() for t in taken)
        raise VersionConflict(
            f"Versions with known_time {known_time.isoformat()} already exist for "
            f"valid_time {shown}; nothing was stored."
        )


def insert_overlapping(
    conn: psycopg.Connection, series_id: int, batch_id: int, known_time: datetime, points: list[Point]
) -> None:
    """Append one batch's versions of an overlapping series."""
    with _unique_valid_times(points), conn.cursor() as cur, cur.copy(
        "COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int8", "timestamptz", "timestamptz", "float8", "timestamptz"])
        write = copy.write_row
        for vt, vte, value in points:
            write((batch_id, series_id, vt, vte, value, known_time))
