"""Stream a large read to the client without letting a client or a failure wedge the server.

Rows are fetched and encoded in worker threads (never on the event loop); each part of the
response must be accepted by the client within TIMEDB_CLIENT_TIMEOUT; a client that goes
away stops the query at once; and a read that fails after the 200 was sent breaks the
connection, so the client sees an incomplete body, never a normal end of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from timedb.db.values_read import Row, RowStream
from timedb.encoders import STREAM_HEAD, stream_tail
from timedb.errors import TimedbError

log = logging.getLogger("timedb")


class StreamAborted(Exception):
    """A response broken off after its status was sent (the server drops the connection)."""


class QuietAbort(logging.Filter):
    """Keep uvicorn's traceback for a StreamAborted out of the log: timedb has logged the
    cause in one line (uvicorn logs any exception that ends a started response)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc: BaseException | None = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, StreamAborted):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def install_quiet_abort() -> None:
    """Add the QuietAbort filter to uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietAbort) for f in logger.filters):
        logger.addFilter(QuietAbort())


class StreamedRows(StreamingResponse):
    """A 200 ValuesResponse whose records come from a RowStream, `count` last."""

    def __init__(self, stream: RowStream, records: Callable[[list[Row]], bytes],
                 first: list[list[Row]], client_timeout: float) -> None:
        super().__init__(iter(()), 200, media_type="application/json")
        self.stream = stream
        self.records = records
        self.first = first
        self.client_timeout = client_timeout or None
        self.rows = 0

    def _next_part(self) -> bytes | None:
        """The next chunk's records, fetched and encoded (in a worker thread)."""
        chunk = self.stream.next_chunk()
        if not chunk:
            return None
        self.rows += len(chunk)
        return b"," + self.records(chunk)

    async def _send(self, send: Send, message: Message) -> None:
        try:
            with anyio.fail_after(self.client_timeout):
                await send(message)
        except TimeoutError:
            raise StreamAborted(f"the client accepted nothing for {self.client_timeout:g} s "
                                "(TIMEDB_CLIENT_TIMEOUT)") from None

    async def _send_all(self, send: Send) -> None:
        await self._send(send, {"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self.rows = sum(len(c) for c in self.first)
        head = STREAM_HEAD + b",".join(self.records(c) for c in self.first)
        await self._send(send, {"type": "http.response.body", "body": head, "more_body": True})
        self.first = []
        while (part := await anyio.to_thread.run_sync(self._next_part)) is not None:
            await self._send(send, {"type": "http.response.body", "body": part, "more_body": True})
        await self._send(send, {"type": "http.response.body", "body": stream_tail(self.rows), "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = f"{scope.get('method', 'GET')} {scope.get('path', '')}"
        failure: str | None = None
        try:
            async with anyio.create_task_group() as group:
                async def stop_when_gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    log.info("%s: the client went away after %d rows; query stopped", where, self.rows)
                    group.cancel_scope.cancel()

                group.start_soon(stop_when_gone)
                # failures are caught here, not around the group (which would wrap them)
                try:
                    await self._send_all(send)
                except StreamAborted as exc:
                    failure = str(exc)
                    log.warning("%s: response aborted after %d rows: %s", where, self.rows, failure)
                except TimedbError as exc:
                    failure = exc.detail
                    cause = exc.__cause__
                    log.error("%s: response aborted after %d rows: %s%s", where, self.rows, failure,
                              f" (cause: {type(cause).__name__}: {str(cause).strip()[:300]})" if cause else "")
                except Exception as exc:
                    failure = "unexpected error"
                    log.error("%s: response aborted after %d rows", where, self.rows, exc_info=exc)
                group.cancel_scope.cancel()
        finally:
            # the stream holds a pooled connection; closing it is blocking work (query
            # cancellation): in a thread, and shielded from the cancellation that ends us
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.stream.close)
        if failure is not None:
            # the only way to make an ASGI server drop the connection mid-body
            raise StreamAborted(failure)
