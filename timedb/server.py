"""uvicorn's HTTP/1.1 protocols with the two client timeouts uvicorn lacks.

uvicorn (0.54) waits for ever for a client that sends its request headers slowly (or never),
and `transport.close()` keeps a connection whose client stopped reading until its send buffer
drains, which never happens. With these protocols:

- request headers must be complete within TIMEDB_CLIENT_TIMEOUT of the connection opening or
  of the previous response ending (else 408 and close, or just close if nothing came);
- a connection whose client reads nothing for TIMEDB_CLIENT_TIMEOUT while the server has data
  to send is reset.

`timedb api` and the gunicorn worker `timedb.workers.UvicornWorker` use them; plain uvicorn
takes them with `--http timedb.server:HttpProtocol`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from timedb.errors import ConfigError
from timedb.settings import Settings, environment, read_duration

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nRequest Timeout\n"
)


WRITE_STALL_GRACE = 1.0


def _client_timeout() -> float:
    try:
        return read_duration(environment(), "TIMEDB_CLIENT_TIMEOUT", Settings.client_timeout)
    except ConfigError:  # reported by the app itself, which refuses to start
        return Settings.client_timeout


class ClientTimeouts:
    """The timers, mixed into both of uvicorn's protocol classes."""

    timeout = _client_timeout()

    # provided by uvicorn's protocol classes
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: Any
    client: Any

    _header_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _request_started = False

    def _await_headers(self) -> None:
        self._headers_done()
        if self.timeout > 0:
            self._request_started = False
            self._header_timer = self.loop.call_later(self.timeout, self._headers_late)

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._request_started:
            self.logger.info("%s - request headers not complete within %gs; 408", self.client, self.timeout)
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def _after_response(self, cycle: Any) -> None:
        # a pipelined request may already run (it replaced the cycle): it is not waiting for headers
        if not self.transport.is_closing() and (cycle is None or cycle.response_complete):
            self._await_headers()

    def _stop_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        self._write_timer = None
        self.logger.info(
            "%s - client read nothing for %gs; connection reset", self.client, self.timeout + WRITE_STALL_GRACE
        )
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # reset, instead of an orphaned socket holding the unsent data
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()  # connection_lost: a send() waiting on this client returns

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self.timeout > 0 and self._write_timer is None:
            # a second after the app's own per-send timeout, which logs what it broke off
            self._write_timer = self.loop.call_later(self.timeout + WRITE_STALL_GRACE, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        self._stop_write_timer()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._request_started = True
        super().data_received(data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        self._stop_write_timer()
        super().connection_lost(exc)  # type: ignore[misc]


class HttpToolsTimeouts(ClientTimeouts, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with client timeouts."""

    def on_headers_complete(self) -> None:
        self._headers_done()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._after_response(self.cycle)


class H11Timeouts(ClientTimeouts, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with client timeouts."""

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers were parsed
            self._headers_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._after_response(self.cycle)


try:  # as uvicorn's http="auto"
    import httptools  # noqa: F401

    HttpProtocol: type[asyncio.Protocol] = HttpToolsTimeouts
except ImportError:  # pragma: no cover
    HttpProtocol = H11Timeouts
