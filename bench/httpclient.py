"""A minimal keep-alive HTTP/1.1 client: cheap enough to time a server with.

It sends pre-encoded request bytes with one `sendall` and reads responses with
C-level `readinto` into a reused buffer; a streamed (chunked) response can be
drained without keeping it. Its own CPU time is measured per request
(`thread_time`) so the report can show that the client did not starve the server.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass
from typing import cast


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes  # the whole body, or (when drained) its first and last bytes joined by b"..."
    nbytes: int
    wall: float
    client_cpu: float
    first_byte: float = 0.0  # seconds from sending the request to the response's first body bytes


class HttpError(RuntimeError):
    pass


class Client:
    """One keep-alive connection to host:port."""

    idle_limit = 3.0  # seconds; reconnect rather than reuse a connection the server may have closed

    def __init__(self, host: str, port: int, timeout: float = 600.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._scratch = bytearray(1 << 20)
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = cast(io.BufferedReader, self.sock.makefile("rb", buffering=1 << 20))
        self.last_used = time.monotonic()

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(
        method: str, path: str, body: bytes | None = None, host: str = "127.0.0.1", authorization: str | None = None
    ) -> bytes:
        """The request bytes (send the same bytes many times without re-encoding)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n"
        if authorization:
            head += f"Authorization: {authorization}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + (body or b"")

    def send(self, raw: bytes, keep: bool = True) -> Reply:
        """Send one encoded request and read the reply; `keep=False` drains the body."""
        if time.monotonic() - self.last_used > self.idle_limit:
            self.close()  # the server drops idle keep-alive connections (uvicorn: after 5 s)
            self._connect()
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            self.sock.sendall(raw)
            status, headers = self._head()
        except (ConnectionError, TimeoutError) as exc:
            raise HttpError(f"connection failed: {exc}") from exc
        self._sent = t0
        self._first: float | None = None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, n = self._chunked(keep)
        else:
            n = int(headers.get("content-length", "0"))
            body = self._exact(n, keep)
        if headers.get("connection", "").lower() == "close":
            self.close()
            self._connect()
        wall = time.perf_counter() - t0
        reply = Reply(
            status, headers, body, n, wall, time.thread_time() - c0, wall if self._first is None else self._first
        )
        self.last_used = time.monotonic()
        return reply

    def request(self, method: str, path: str, body: bytes | None = None, keep: bool = True) -> Reply:
        return self.send(self.encode(method, path, body), keep)

    def _head(self) -> tuple[int, dict[str, str]]:
        line = self.rfile.readline(65536)
        if not line:
            raise ConnectionError("server closed the connection")
        parts = line.split(None, 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            h = self.rfile.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def _exact(self, n: int, keep: bool) -> bytes:
        if keep:
            data = self.rfile.read(n)
            if len(data) != n:
                raise HttpError("short body")
            return data
        first = b""
        last = b""
        left = n
        view = memoryview(self._scratch)
        while left:
            got = self.rfile.readinto(view[: min(left, len(view))])
            if not got:
                raise HttpError("short body")
            if not first:
                first = bytes(view[: min(got, 256)])
            last = (last + bytes(view[max(0, got - 64) : got]))[-64:]
            left -= got
        return first + b"..." + last

    def _chunked(self, keep: bool) -> tuple[bytes, int]:
        parts: list[bytes] = []
        first = b""
        last = b""
        total = 0
        view = memoryview(self._scratch)
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line:
                raise HttpError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0], 16)
            if self._first is None:
                self._first = time.perf_counter() - self._sent
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if keep:
                parts.append(self.rfile.read(size))
            else:
                left = size
                while left:
                    got = self.rfile.readinto(view[: min(left, len(view))])
                    if not got:
                        raise HttpError("short chunk")
                    if len(first) < 256:
                        first += bytes(view[: min(got, 256 - len(first))])
                    last = (last + bytes(view[max(0, got - 64) : got]))[-64:]
                    left -= got
            self.rfile.readline(16)  # CRLF after the chunk
        if keep:
            return b"".join(parts), total
        return first + b"..." + last, total
