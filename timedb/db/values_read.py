"""Reads of one series, streamed as JSON chunks without materialising the result."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import islice
from typing import Any

import orjson
from psycopg import sql
from psycopg_pool import ConnectionPool

from timedb.db.pool import connection
from timedb.db.series import SeriesFilter, resolve_one

CHUNK_ROWS = 5000
_DUMP = orjson.dumps
_OPTS = orjson.OPT_NAIVE_UTC  # the queries return UTC wall times; print them with +00:00


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
    """The read query for one series kind and mode; first column is the total count."""
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
    inner = template.format(
        vt=_utc("valid_time"), vte=_utc("valid_time_end"), kt=_utc("known_time"),
        ct=_utc("change_time"), t=table, w=where, rank=rank,
        batch=sql.SQL("batch_id" if overlapping else "NULL::bigint"),
    )
    # count(*) OVER () lets the count lead the document; WindowAgg keeps the inner order
    return sql.SQL("SELECT count(*) OVER (), q.* FROM ({}) q").format(inner), params


def _latest(rows: Sequence[tuple[Any, ...]]) -> bytes:
    return _DUMP(
        [{"valid_time": vt, "value": v} if vte is None else {"valid_time": vt, "valid_time_end": vte, "value": v}
         for _, vt, vte, v in rows],
        option=_OPTS,
    )[1:-1]


def _versions(rows: Sequence[tuple[Any, ...]]) -> bytes:
    return _DUMP(
        [{"known_time": kt, "valid_time": vt, "value": v} if vte is None
         else {"known_time": kt, "valid_time": vt, "valid_time_end": vte, "value": v}
         for _, kt, vt, vte, v in rows],
        option=_OPTS,
    )[1:-1]


def _audit(rows: Sequence[tuple[Any, ...]]) -> bytes:
    out = []
    for _, kt, vt, vte, ct, v, by, ann, tags, batch in rows:
        rec: dict[str, Any] = {"known_time": kt, "valid_time": vt}
        if vte is not None:
            rec["valid_time_end"] = vte
        rec.update(change_time=ct, value=v, changed_by=by, annotation=ann, tags=tags, batch_id=batch)
        out.append(rec)
    return _DUMP(out, option=_OPTS)[1:-1]


ENCODERS: dict[Mode, Callable[[Sequence[tuple[Any, ...]]], bytes]] = {
    Mode.LATEST: _latest, Mode.VERSIONS: _versions, Mode.AUDIT: _audit,
}


def stream_values(
    pool: ConnectionPool, flt: SeriesFilter, window: Window, mode: Mode, chunk_rows: int = CHUNK_ROWS
) -> Generator[bytes, None, None]:
    """Yield the JSON document `{"count": n, "data": [...]}` in chunks.

    The first `next()` resolves the series and runs the query, so lookup errors
    raise before any byte is sent. Closing the generator early rolls back and
    returns the connection to the pool.
    """
    encode = ENCODERS[mode]
    with connection(pool) as conn:
        series = resolve_one(conn, flt)
        # a client that vanishes mid-stream must not pin a transaction forever
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = '60s'")
        query, params = build_query(series["overlapping"], mode, window)
        params["series_id"] = series["series_id"]
        with conn.cursor() as cur:
            rows = cur.stream(query, params, binary=True, size=chunk_rows)
            chunk = list(islice(rows, chunk_rows))
            count = chunk[0][0] if chunk else 0
            yield b'{"count":%d,"data":[' % count + encode(chunk)
            while chunk := list(islice(rows, chunk_rows)):
                yield b"," + encode(chunk)
    yield b"]}"
