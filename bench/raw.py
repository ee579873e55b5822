"""The raw PostgreSQL baselines the API is judged against, timed on the benchmark's own connection:
binary COPY of already-parsed rows, the server's query counted or streamed in the database, and
the server's corrections code without HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from timedb.db import corrections as fix
from timedb.db.values_read import CHUNK_ROWS

# the server's COPY statements and column lists (POST /values)
COPY_FLAT = "COPY flat (series_id, valid_time, valid_time_end, value) FROM STDIN (FORMAT BINARY)"
COPY_FLAT_TYPES = ["int8", "timestamptz", "timestamptz", "float8"]
COPY_OVL = (
    "COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time) FROM STDIN (FORMAT BINARY)"
)
COPY_OVL_TYPES = ["int8", "int8", "timestamptz", "timestamptz", "float8", "timestamptz"]

Rows = Sequence[tuple[Any, ...]]


def copy_seconds(conn: psycopg.Connection, stmt: str, types: list[str], chunks: Iterable[Rows]) -> float:
    """Seconds of binary COPY (`write_row` of parsed rows), one transaction per chunk, commits included."""
    t0 = time.perf_counter()
    for chunk in chunks:
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in chunk:
                write(row)
        conn.commit()
    return time.perf_counter() - t0


def count_seconds(
    conn: psycopg.Connection, query: sql.Composed, params: dict[str, Any], expect: int, what: str = "count(q.*)"
) -> float:
    """Seconds of `SELECT <what> FROM (<query>) q` in the database, which must count `expect` rows.

    `count(q.*)` makes PostgreSQL compute every column the server reads (a plain count(*) lets it
    skip the output columns); `count(value)` is the in-database rate of the values read."""
    counted = sql.SQL("SELECT {} FROM ({}) q").format(sql.SQL(what), query)
    t0 = time.perf_counter()
    got = conn.execute(counted, params).fetchone()[0]
    seconds = time.perf_counter() - t0
    conn.rollback()
    if got != expect:
        raise RuntimeError(f"in-database count {got}, expected {expect}")
    return seconds


def stream_seconds(
    conn: psycopg.Connection, query: sql.Composed, params: dict[str, Any], first_only: bool = False
) -> tuple[float, float, int]:
    """(seconds to the first row, to the last, rows) of a query streamed with psycopg (binary, in
    the server's chunk size); `first_only` stops after the first row."""
    t0 = time.perf_counter()
    first = None
    n = 0
    with conn.cursor() as cur:
        stream = cur.stream(query, params, binary=True, size=CHUNK_ROWS)
        for _ in stream:
            n += 1
            if first is None:
                first = time.perf_counter() - t0
                if first_only:
                    stream.close()  # type: ignore[attr-defined]
                    break
    conn.rollback()
    return first or 0.0, time.perf_counter() - t0, n


def corrections_seconds(conn: psycopg.Connection, rounds: Iterable[list[fix.Correction]]) -> float:
    """Seconds of `timedb.db.corrections.apply_corrections`, one transaction per round; each round
    must store all of its corrections."""
    t0 = time.perf_counter()
    for items in rounds:
        stored = fix.apply_corrections(conn, items)
        conn.commit()
        if len(stored) != len(items):
            raise RuntimeError(f"apply_corrections stored {len(stored)} of {len(items)}")
    return time.perf_counter() - t0
