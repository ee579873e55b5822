"""Reads of one series: rows in chunks from a held connection, never the whole result at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import islice
from typing import Any

import psycopg
from psycopg import sql

from timedb.db.errors import translated
from timedb.db.pool import Pool, checkout, release
from timedb.db.series import SeriesFilter, resolve_one

CHUNK_ROWS = 5000
Row = tuple[Any, ...]


class Mode(Enum):
    LATEST = "latest"
    VERSIONS = "versions"
    AUDIT = "audit"


@dataclass(frozen=True)
class Window:
    """Cuts on the three time axes; None means unbounded."""

    start_valid: datetime | None = None
    end_valid: datetime | None = None
    start_known: datetime | None = None
    end_known: datetime | None = None
    changed_before: datetime | None = None

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        parts: list[sql.Composable] = [sql.SQL("series_id = %(series_id)s")]
        params: dict[str, Any] = {}
        for field, column, op in (
            ("start_valid", "valid_time", ">="),
            ("end_valid", "valid_time", "<"),
            ("start_known", "known_time", ">="),
            ("end_known", "known_time", "<"),
            ("changed_before", "change_time", "<"),
        ):
            value = getattr(self, field)
            if value is not None:
                parts.append(sql.SQL("{} {} %({})s").format(sql.Identifier(column), sql.SQL(op), sql.SQL(field)))
                params[field] = value
        return sql.SQL(" AND ").join(parts), params


def _utc(column: str) -> sql.Composable:
    return sql.SQL("{} AT TIME ZONE 'UTC'").format(sql.Identifier(column))


def build_query(overlapping: bool, mode: Mode, window: Window) -> tuple[sql.Composed, dict[str, Any]]:
    """The read query for one series kind and mode (timestamps as UTC wall times)."""
    table = sql.Identifier("overlapping" if overlapping else "flat")
    where, params = window.where()
    # overlapping: the newest forecast wins, then its newest correction; flat: the newest write
    rank = sql.SQL("known_time DESC, change_time DESC" if overlapping else "change_time DESC")
    template: sql.SQL
    if mode is Mode.LATEST:
        template = sql.SQL(
            "SELECT DISTINCT ON (valid_time) {vt}, {vte}, value FROM {t} WHERE {w} "
            "ORDER BY valid_time, {rank}"
        )
    elif mode is Mode.VERSIONS:
        template = sql.SQL(
            "SELECT DISTINCT ON (known_time, valid_time) {kt}, {vt}, {vte}, value FROM {t} WHERE {w} "
            "ORDER BY known_time, valid_time, change_time DESC"
        )
    else:
        template = sql.SQL(
            "SELECT {kt}, {vt}, {vte}, {ct}, value, changed_by, annotation, tags, {batch} "
            "FROM {t} WHERE {w} ORDER BY known_time, valid_time, change_time"
        )
    # no count(*) OVER (): it would materialise the whole result before the first row
    query = template.format(
        vt=_utc("valid_time"), vte=_utc("valid_time_end"), kt=_utc("known_time"),
        ct=_utc("change_time"), t=table, w=where, rank=rank,
        batch=sql.SQL("batch_id" if overlapping else "NULL::bigint"),
    )
    return query, params


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


class RowStream:
    """A read in progress: its own pooled connection, rows fetched chunk by chunk.

    Opening resolves the series and starts the query, so lookup errors (404, 400) raise
    before any byte of a response is sent. Every method blocks: call them from a worker
    thread. `close()` must be called however the read ends; it stops the query first (a
    stream left open holds the connection's lock) and returns the connection to the pool.
    """

    def __init__(self, pool: Pool, flt: SeriesFilter, window: Window, mode: Mode,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        self.pool = pool
        self.chunk_rows = chunk_rows
        self._conn: psycopg.Connection | None = checkout(pool, watched=True)
        self._cursor = self._conn.cursor()
        self._rows: Iterator[Row] | None = None
        self.watchdog = Watchdog(self._conn, pool.statement_timeout)
        try:
            with translated(), self.watchdog:
                series = resolve_one(self._conn, flt)
                query, params = build_query(series["overlapping"], mode, window)
                params["series_id"] = series["series_id"]
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
