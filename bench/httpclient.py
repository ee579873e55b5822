"""The benchmark's HTTP client: the standard library's http.client on one keep-alive connection.

Each request is timed: wall time, time to the first body bytes, and the CPU this thread spent
(`thread_time`), so the report can show that the client did not starve the server. A body can be
drained without being kept (large reads). Why http.client and not a hand-written client:
"HTTP client" in bench/README.md.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
LABEL = "http.client"  # how the report names this load client
BLOCK = 1 << 20  # most bytes taken from the socket per read


@dataclass(frozen=True)
class Request:
    """One request, built once and sent as often as wanted."""

    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    authorization: str | None = None

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": self.content_type} if self.body is not None else {}
        if self.authorization:
            out["Authorization"] = self.authorization
        return out


@dataclass
class Reply:
    status: int
    body: bytes  # the whole body, or (when drained) its first 256 and last 64 bytes joined by b"..."
    nbytes: int
    wall: float
    client_cpu: float
    first_byte: float  # seconds from sending the request to the first body bytes (wall when there are none)


class Client:
    """One keep-alive connection to the server on HOST:port."""

    idle_limit = 3.0  # seconds; reconnect rather than reuse a connection the server may have closed (uvicorn: 5 s)

    def __init__(self, port: int, timeout: float = 600.0) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.last_used = time.monotonic()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes | None = None, keep: bool = True) -> Reply:
        return self.send(Request(method, path, body), keep)

    def send(self, req: Request, keep: bool = True) -> Reply:
        """Send one request and read the reply; `keep=False` drains the body."""
        if time.monotonic() - self.last_used > self.idle_limit:
            self.conn.close()  # the next request connects again
        t0, c0 = time.perf_counter(), time.thread_time()
        self.conn.request(req.method, req.path, req.body, req.headers())
        resp = self.conn.getresponse()
        parts: list[bytes] = []
        head = tail = b""
        nbytes = 0
        first = None
        while chunk := resp.read1(BLOCK):
            if first is None:
                first = time.perf_counter() - t0
            nbytes += len(chunk)
            if keep:
                parts.append(chunk)
            else:
                head += chunk[: max(0, 256 - len(head))]
                tail = (tail + chunk[-64:])[-64:]
        resp.read()  # a body read to its end by read1 is not closed yet; this frees the connection
        wall = time.perf_counter() - t0
        self.last_used = time.monotonic()
        body = b"".join(parts) if keep else head + b"..." + tail
        return Reply(resp.status, body, nbytes, wall, time.thread_time() - c0, wall if first is None else first)
