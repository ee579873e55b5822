"""Reads in progress as COPY output: PostgreSQL prints the rows (CSV), timedb passes the bytes on.

The columnar formats (CSV, Arrow) never need a Python object per row: the read's query is
wrapped in `COPY (SELECT <projection> FROM (<query>) r) TO STDOUT (FORMAT csv)` and the rows
arrive as bytes, block by block, from a held connection (see notes/fast-paths.md).
"""

from __future__ import annotations

import select
from enum import Enum

import psycopg
from psycopg import pq, sql

from timedb.db.errors import translated
from timedb.db.pool import Pool, checkout, release
from timedb.db.read_query import ISO_ZONED, Mode
from timedb.db.values_read import Plan, Watchdog

# the columns of a read, by mode, as read_query names them (and the JSON format's keys)
COLUMNS = {
    Mode.LATEST: ("valid_time", "valid_time_end", "value"),
    Mode.VERSIONS: ("known_time", "valid_time", "valid_time_end", "value"),
    Mode.AUDIT: (
        "known_time",
        "valid_time",
        "valid_time_end",
        "change_time",
        "value",
        "changed_by",
        "annotation",
        "tags",
        "batch_id",
        "inserted_by",
    ),
}
# seconds a COPY being cancelled may take to end before its connection is closed instead
CLOSE_TIMEOUT = 10.0
TIMESTAMPS = frozenset({"known_time", "valid_time", "valid_time_end", "change_time"})


def columns(mode: Mode, many: bool) -> tuple[str, ...]:
    """The column names of a read: multi-series rows start with series_id."""
    return ("series_id", *COLUMNS[mode]) if many else COLUMNS[mode]


class Printed(Enum):
    """How the COPY prints a read's values."""

    # as the JSON answer prints them (timestamps ISO 8601 with the offset, tags a JSON array),
    # after a header row: CSV for people and spreadsheets
    TEXT = "text"
    # for typed parsers: timestamps as UTC wall times (YYYY-MM-DD HH:MM:SS[.ffffff]), tags a
    # JSON array, no header
    TYPED = "typed"


# to_char leaves '.000000' only as the fraction of a second: dropped, as Python's isoformat does
_ISO_UTC = "replace(to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000', '')"


def projection(names: tuple[str, ...], printed: Printed, zoned: bool) -> sql.Composed:
    """The select list over the read `r`; zoned: its timestamps are timestamptz instants
    (a `tz` read) rather than UTC wall times."""
    items: list[sql.Composable] = []
    for name in names:
        column = sql.SQL("r.{}").format(sql.Identifier(name))
        if name in TIMESTAMPS:
            if printed is Printed.TEXT:
                expr = sql.SQL(ISO_ZONED if zoned else _ISO_UTC).format(c=column)
            else:
                expr = sql.SQL("({} AT TIME ZONE 'UTC')").format(column) if zoned else column
        elif name == "tags":
            expr = sql.SQL("to_json({})").format(column)
        else:
            expr = column
        items.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(name)))
    return sql.SQL(", ").join(items)


class CopyStream:
    """A read in progress as CSV bytes: its own pooled connection, rows read block by block.

    The contract of values_read.RowStream: opening runs the plan (so 404s and 400s raise
    before any byte of a response is sent) and starts the COPY; each step may take at most
    the statement timeout (Watchdog); every method blocks (call them from a worker thread);
    `close()` must be called however the read ends: it cancels a COPY still running and
    returns the connection to the pool.

    PostgreSQL sends every row as one message. psycopg's Copy object takes ~0.6 us of Python
    per message (its generators), a third more than the COPY itself: the rows are taken here
    with libpq's own calls (psycopg.pq), waiting on the socket only when none is buffered.
    """

    def __init__(
        self, pool: Pool, plan: Plan, mode: Mode, *, many: bool, printed: Printed, out_tz: str | None = None
    ) -> None:
        self.pool = pool
        self.names = columns(mode, many)
        self.rows = 0  # data rows read so far
        self.done = False
        self._header = printed is Printed.TEXT  # a header row still to read
        self._running = False  # the COPY has started and not ended
        self._conn: psycopg.Connection | None = checkout(pool, watched=True)
        self._pg = self._conn.pgconn
        self._socket = select.poll()
        self.watchdog = Watchdog(self._conn, pool.statement_timeout)
        try:
            with translated(), self.watchdog:
                # ISO dates and shortest-exact floats whatever the server's defaults, and the
                # zone of `tz` for timestamptz values: for this transaction only
                settings = "set_config('DateStyle', 'ISO, YMD', true), set_config('extra_float_digits', '1', true)"
                if out_tz is not None:
                    self._conn.execute(f"SELECT {settings}, set_config('TimeZone', %s, true)", (out_tz,))
                else:
                    self._conn.execute(f"SELECT {settings}")
                query, params = plan(self._conn)
                statement = sql.SQL("COPY (SELECT {} FROM ({}) r) TO STDOUT (FORMAT csv{})").format(
                    projection(self.names, printed, out_tz is not None),
                    query,
                    sql.SQL(", HEADER") if self._header else sql.SQL(""),
                )
                # COPY takes no bound parameters: psycopg merges them in as literals
                with psycopg.ClientCursor(self._conn) as cursor:
                    text = cursor.mogrify(statement, params)
                self._socket.register(self._pg.socket, select.POLLIN)
                self._pg.send_query(text.encode(self._conn.info.encoding))
                self._running = True
                self._start()
        except BaseException:
            self.close()
            raise

    def _wait(self, timeout: float | None = None) -> None:
        """Wait until the server has sent more (at most timeout seconds), and take it in."""
        if not self._socket.poll(None if timeout is None else round(timeout * 1000)):
            raise TimeoutError("the database sent nothing")
        self._pg.consume_input()

    def _result(self, timeout: float | None = None) -> pq.abc.PGresult | None:
        """The next result of the statement (None after the last)."""
        while self._pg.is_busy():
            self._wait(timeout)
        return self._pg.get_result()

    def _start(self) -> None:
        result = self._result()
        if result is not None and result.status == pq.ExecStatus.COPY_OUT:
            return
        self._end(result)

    def _end(self, result: pq.abc.PGresult | None) -> None:
        """Take the statement's remaining results; raise the error among them, if any."""
        self._running = False
        self.done = True
        error = None
        while result is not None:
            if error is None and result.status == pq.ExecStatus.FATAL_ERROR:
                error = _error(result, self._conn.info.encoding if self._conn else "utf-8")
            result = self._result()
        if error is not None:
            raise error

    def read(self, rows: int) -> bytes:
        """The CSV of up to `rows` more rows (the header row first, if any); fewer rows only
        at the end, b"" after it."""
        out = bytearray()
        if self.done:
            return b""
        get = self._pg.get_copy_data
        got = -1 if self._header else 0
        self._header = False
        with translated(), self.watchdog:
            while got < rows:
                size, data = get(1)  # 1: a buffered row, else 0 (none yet) or -1 (the end)
                if size > 0:
                    out += data
                    got += 1
                elif size == 0:
                    self._wait()
                else:
                    self._end(self._result())
                    break
        self.rows += max(got, 0)
        return bytes(out)

    def close(self) -> None:
        """Stop the COPY (if still running) and give the connection back; idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._running:
                conn.cancel_safe()
                # what the server sent before it saw the cancel, then its error
                while (size := self._pg.get_copy_data(1)[0]) >= 0:
                    if size == 0:
                        self._wait(CLOSE_TIMEOUT)
                self._running = False
                while self._result(CLOSE_TIMEOUT) is not None:
                    pass
        except (psycopg.Error, TimeoutError):
            conn.close()  # broken or unresponsive: the pool discards it
        release(self.pool, conn)


def _error(result: pq.abc.PGresult, encoding: str) -> psycopg.Error:
    """The psycopg exception of an error result (its class by SQLSTATE)."""
    state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode("ascii", "replace")
    try:
        cls = psycopg.errors.lookup(state)
    except KeyError:
        cls = psycopg.DatabaseError
    return cls((result.error_message or b"").decode(encoding, "replace").strip())
