"""Reads in progress: rows in chunks from a held connection, never the whole result at once."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import psycopg
from psycopg import sql

from timedb.db import extent
from timedb.db.errors import translated
from timedb.db.pool import Pool, checkout, release
from timedb.db.read_query import ReadSpec, build_query, multi_query
from timedb.db.series import SeriesFilter, list_matching, resolve_many, resolve_one
from timedb.units import conversion

CHUNK_ROWS = 5000
Row = tuple[Any, ...]


class Watchdog:
    """Cancel the connection's running query when one step takes longer than `limit` seconds.

    A streamed read is one long statement that may rightly run for minutes while the client
    downloads it, so statement_timeout would cut large reads; instead every step (the series
    lookup, each chunk of rows) gets the limit on its own. 0 disables it.
    """

    def __init__(self, conn: psycopg.Connection, limit: float) -> None:
        self.conn = conn
        self.limit = limit
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Watchdog:
        if self.limit > 0:
            self._timer = threading.Timer(self.limit, self.conn.cancel_safe)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# plan(conn) -> (query, params): looks up what the read needs (raising 404/400 as problems)
Plan = Callable[[psycopg.Connection], tuple[sql.Composed, dict[str, Any]]]


def one_series(flt: SeriesFilter, spec: ReadSpec) -> Plan:
    """The plan of a read of the one series matching flt."""

    def plan(conn: psycopg.Connection) -> tuple[sql.Composed, dict[str, Any]]:
        series = resolve_one(conn, flt)
        bounded = dataclasses.replace(spec, window=extent.bounded(conn, series["series_id"], spec.window))
        query, params = build_query(series["overlapping"], bounded)
        params["series_id"] = series["series_id"]
        if spec.unit is not None:
            convert = conversion(series["unit"], spec.unit)
            params.update(unit_scale=convert.scale, unit_offset=convert.offset)
        return query, params

    return plan


def many_series(
    items: list[dict[str, Any]] | None,
    flt: SeriesFilter | None,
    spec: ReadSpec,
    limit: int,
    found: list[dict[str, Any]],
) -> Plan:
    """The plan of a read of many series: the listed items (each resolving to one series) or
    every series matching flt, at most `limit`; the series read are appended to `found`."""

    def plan(conn: psycopg.Connection) -> tuple[sql.Composed, dict[str, Any]]:
        found.extend(
            resolve_many(conn, items, limit) if items is not None else list_matching(conn, flt or SeriesFilter(), limit)
        )
        query, params = multi_query(spec)
        params.update(ids=[s["series_id"] for s in found], overlapping=[s["overlapping"] for s in found])
        if spec.unit is not None:
            converts = [conversion(s["unit"], spec.unit) for s in found]
            params.update(scales=[c.scale for c in converts], offsets=[c.offset for c in converts])
        return query, params

    return plan


class RowStream:
    """A read in progress: its own pooled connection, rows fetched chunk by chunk.

    Opening runs the plan (lookups, so 404s and 400s raise before any byte of a response is
    sent) and starts the query. Every method blocks: call them from a worker thread. `close()`
    must be called however the read ends; it stops the query first (a stream left open holds
    the connection's lock) and returns the connection to the pool.
    """

    def __init__(self, pool: Pool, plan: Plan, out_tz: str | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        self.pool = pool
        self.chunk_rows = chunk_rows
        self._conn: psycopg.Connection | None = checkout(pool, watched=True)
        self._rows: Iterator[Row] | None = None
        self.watchdog = Watchdog(self._conn, pool.statement_timeout)
        try:
            with translated(), self.watchdog:
                if out_tz is not None:  # timestamptz values load as instants in this zone
                    self._conn.execute("SELECT set_config('TimeZone', %s, true)", (out_tz,))
                query, params = plan(self._conn)
                self._cursor = self._conn.cursor()
                self._rows = self._cursor.stream(query, params, binary=True, size=chunk_rows)
        except BaseException:
            self.close()
            raise

    def next_chunk(self) -> list[Row]:
        """Up to chunk_rows rows; an empty list at the end."""
        assert self._rows is not None
        with translated(), self.watchdog:
            return list(islice(self._rows, self.chunk_rows))

    def close(self) -> None:
        """Stop the query (if still running) and give the connection back; idempotent."""
        rows, self._rows = self._rows, None
        try:
            if rows is not None:
                rows.close()  # type: ignore[attr-defined]  # cancels the query, drains what was sent
                self._cursor.close()
        except psycopg.Error:
            pass  # a broken connection: release() hands it back to be discarded
        conn, self._conn = self._conn, None
        if conn is not None:
            release(self.pool, conn)
