"""Stream a large read to the client without letting a client or a failure wedge the server.

Rows are fetched and encoded in worker threads (never on the event loop); each part of the
response must be accepted by the client within TIMEDB_CLIENT_TIMEOUT; a client that goes
away stops the query at once; and a read that fails after the 200 was sent breaks the
connection, so the client sees an incomplete body, never a normal end of one.
"""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from timedb import metrics
from timedb.errors import TimedbError
from timedb.formats import Body
from timedb.handlers.context import settings

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


class StreamedBody(StreamingResponse):
    """A 200 response whose body comes part by part from a Body (timedb.formats)."""

    def __init__(self, body: Body, head: bytes, client_timeout: float) -> None:
        super().__init__(iter(()), 200, media_type=body.media_type)
        self.body_parts = body
        self.head = head
        self.client_timeout = client_timeout or None
        self.sent_all = False  # every part is out: a disconnect now is the end of the exchange

    async def _send(self, send: Send, message: Message) -> None:
        try:
            with anyio.fail_after(self.client_timeout):
                await send(message)
        except TimeoutError:
            raise StreamAborted(
                f"the client accepted nothing for {self.client_timeout:g} s (TIMEDB_CLIENT_TIMEOUT)"
            ) from None

    async def _send_all(self, send: Send) -> None:
        await self._send(send, {"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await self._send(send, {"type": "http.response.body", "body": self.head, "more_body": True})
        while (part := await anyio.to_thread.run_sync(self.body_parts.next)) is not None:
            await self._send(send, {"type": "http.response.body", "body": part, "more_body": True})
        self.sent_all = True
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = f"{scope.get('method', 'GET')} {scope.get('path', '')}"
        failure: str | None = None
        try:
            async with anyio.create_task_group() as group:

                async def stop_when_gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    # (the server reports a disconnect as soon as the response is complete)
                    if not self.sent_all:
                        log.info("%s: the client went away after %d rows; query stopped", where, self.body_parts.count)
                    group.cancel_scope.cancel()

                group.start_soon(stop_when_gone)
                # failures are caught here, not around the group (which would wrap them)
                try:
                    await self._send_all(send)
                except StreamAborted as exc:
                    failure = str(exc)
                    log.warning("%s: response aborted after %d rows: %s", where, self.body_parts.count, failure)
                except TimedbError as exc:
                    failure = exc.detail
                    cause = exc.__cause__
                    log.error(
                        "%s: response aborted after %d rows: %s%s",
                        where,
                        self.body_parts.count,
                        failure,
                        f" (cause: {type(cause).__name__}: {str(cause).strip()[:300]})" if cause else "",
                    )
                except Exception as exc:
                    failure = "unexpected error"
                    log.error("%s: response aborted after %d rows", where, self.body_parts.count, exc_info=exc)
                group.cancel_scope.cancel()
        finally:
            # the stream holds a pooled connection; closing it is blocking work (query
            # cancellation): in a thread, and shielded from the cancellation that ends us
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.body_parts.close)
            metrics.rows_read(self.body_parts.count)
        if failure is not None:
            # the only way to make an ASGI server drop the connection mid-body
            raise StreamAborted(failure)


def respond(body: Body) -> Response:
    """A plain response when the body is complete at once (JSON: count first, validated in
    tests), else a streamed one."""
    try:
        head, complete = body.first()
        if complete:
            body.close()
            metrics.rows_read(body.count)
            return Response(head, 200, media_type=body.media_type)
    except BaseException:
        body.close()
        raise
    return StreamedBody(body, head, settings().client_timeout)
