"""Streamed reads under faults (issue 8, items 1-3, and the held "SIGTERM lets in-flight work finish").

A `GET /values` of more than 5,000 rows is streamed. Clients that walk away, stall or get cut
off by a failing database must never freeze the process, pin a database session, or receive
something that looks like a complete document. Real server processes, real PostgreSQL,
raw sockets where a well-behaved client would not misbehave enough.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg
import pytest

from tests.faults.conftest import TIMEDB, Server, backends, seed_series, wait_until

BIG = 100_000  # rows of the series clients walk away from
HUGE = 500_000  # rows that never fit in the socket buffers between PostgreSQL, server and client
ROUNDS = 6  # misbehaving clients per disconnect style
DOCUMENT_END = re.compile(rb'\](,"count":\d+)?\}$')  # how a complete document ends (count last or first)


# --- helpers -------------------------------------------------------------------------------------


def values_path(sid: int, **params: object) -> str:
    return "/values?" + urlencode({"series_id": sid, **params})


def send_raw(server: Server, method: str, path: str, rcvbuf: int | None = None) -> socket.socket:
    """Open a connection and send one request; the caller reads (or not) and closes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    if rcvbuf:  # before connect: the window the client advertises
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    port = urlsplit(server.url).port
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 5) -> bytes:
    """Receive until done(received) or the peer closes; bounded by timeout."""
    received = b""
    deadline = time.monotonic() + timeout
    while not done(received):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        part = sock.recv(65536)
        if not part:
            break
        received += part
    return received


def read_to_end(sock: socket.socket, timeout: float = 15) -> tuple[bytes, str]:
    """Everything until the connection ends; returns (bytes, how it ended: 'eof' or 'reset')."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return received, "reset"
        if not part:
            return received, "eof"
        received += part
    pytest.fail(f"the connection was still open {timeout} s later ({len(received)} bytes received)")


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The body of a chunked HTTP message (maybe cut off anywhere); True if it had its terminal chunk."""
    body, rest = b"", raw.partition(b"\r\n\r\n")[2]
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body, True
        body += rest[:size]
        rest = rest[size + 2 :]
    return body, False


def busy_sessions(dsn: str) -> list[dict]:
    """The server's sessions that run a query or sit inside a transaction."""
    return [b for b in backends(dsn) if b["state"] == "active" or (b["state"] or "").startswith("idle in transaction")]


def stalled_sessions(dsn: str) -> list[dict]:
    """The server's sessions blocked sending rows that nobody reads."""
    return [b for b in backends(dsn) if b["state"] == "active" and b["wait_event"] == "ClientWrite"]


def healthy(server: Server, timeout: float = 5, after: str = "") -> None:
    """/healthz answers 200 within timeout seconds."""
    try:
        resp = httpx.get(server.url + "/healthz", timeout=timeout)
    except httpx.HTTPError as exc:
        pytest.fail(f"/healthz did not answer within {timeout} s{after} ({exc!r}); log:\n{server.log()[-3000:]}")
    assert resp.status_code == 200, resp.text


def log_shows(server: Server, pattern: str, timeout: float = 5) -> str:
    """Wait until the server log has a line matching pattern; returns the log."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log := server.log()):
        if time.monotonic() > deadline:
            pytest.fail(f"no line matching {pattern!r} in the server log within {timeout} s:\n{log[-3000:]}")
        time.sleep(0.1)
    return log


def answers(server: Server, path: str) -> bool:
    """GET path gives 200 within 5 s."""
    try:
        return httpx.get(server.url + path, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def read_all(server: Server, sid: int, rows: int, **params: object) -> dict:
    """A full read: 200 and the complete document of `rows` records."""
    with server.client(timeout=60) as c:
        resp = c.get(values_path(sid, **params))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["count"] == len(doc["data"]) == rows
    return doc


def assert_incomplete(body: bytes) -> None:
    """A body cut off mid-stream: not JSON, not ending like a document."""
    assert body.startswith(b'{"'), body[:200]
    assert not DOCUMENT_END.search(body), body[-200:]
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


# --- 1. clients that disconnect mid-stream --------------------------------------------------------


def close_after_50ms(server: Server, sid: int) -> None:
    sock = send_raw(server, "GET", values_path(sid))
    time.sleep(0.05)
    sock.close()  # unread data in the receive buffer: the kernel answers with a reset


def close_after_first_bytes(server: Server, sid: int) -> None:
    with send_raw(server, "GET", values_path(sid)) as sock:
        head = read_until(sock, lambda got: b"\r\n\r\n" in got and len(got) > 4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]


def head_request(server: Server, sid: int) -> None:
    """What `curl -I` does: HEAD, read the headers, close."""
    with send_raw(server, "HEAD", values_path(sid)) as sock:
        head = read_until(sock, lambda got: b"\r\n\r\n" in got)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]


def httpx_tiny_read_timeout(server: Server, sid: int) -> None:
    """A client that gives up as soon as the server pauses (as `curl -m 1` does, sooner)."""
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=0.001)) as c:
        try:
            with c.stream("GET", values_path(sid)) as resp:
                for _ in resp.iter_raw():
                    pass
        except httpx.ReadTimeout:
            pass


@pytest.mark.parametrize(
    "disconnect",
    [close_after_50ms, close_after_first_bytes, head_request, httpx_tiny_read_timeout],
    ids=lambda f: f.__name__,
)
def test_client_disconnect_mid_stream_does_not_freeze_the_server(serve, disconnect):
    """Clients leaving a streamed read (closing 50 ms after sending, after the first bytes, after
    the headers of a HEAD, or on a tiny read timeout) leave a server that answers /healthz, serves
    the full series, holds no running read or open transaction, and exits on SIGTERM.
    (Before the fix the first such client froze the whole process for good.)"""
    server = serve()
    sid = seed_series(server.dsn, BIG)
    for i in range(ROUNDS):
        disconnect(server, sid)
        healthy(server, after=f" after {disconnect.__name__} #{i + 1}")
    read_all(server, sid, BIG)
    wait_until(lambda: not busy_sessions(server.dsn), 10)
    server.stop(timeout=15)


# --- 2. a client that stops reading ---------------------------------------------------------------


@pytest.fixture
def stalled_reader(serve) -> Iterator[Callable[..., tuple[Server, socket.socket, int]]]:
    """start(**serve_args) -> (server, socket, small): a server with a HUGE series and a client that
    requested it, with a tiny receive window, and reads nothing; returns once PostgreSQL blocks
    sending rows (ClientWrite). small: the id of a 10-row series."""
    socks: list[socket.socket] = []

    def start(**kwargs: object) -> tuple[Server, socket.socket, int]:
        server = serve(**kwargs)
        sid = seed_series(server.dsn, HUGE)
        small = seed_series(server.dsn, 10, name="small")
        socks.append(sock := send_raw(server, "GET", values_path(sid), rcvbuf=4096))
        wait_until(lambda: stalled_sessions(server.dsn), 15)
        return server, sock, small

    yield start
    for sock in socks:
        sock.close()


def test_stalled_reader_is_cut_off_after_client_timeout(stalled_reader):
    """A reader that stops reading is given up after TIMEDB_CLIENT_TIMEOUT: its query is stopped
    (no session left 'active'), the cut is logged in one line without a traceback,
    the client sees the connection end without a complete document, and other requests are served
    meanwhile. (Before the fix the backend stayed active in ClientWrite for ever.)"""
    server, sock, small = stalled_reader(TIMEDB_CLIENT_TIMEOUT="2")
    healthy(server)  # meanwhile
    read_all(server, small, 10)
    wait_until(lambda: not busy_sessions(server.dsn), 10)
    # the app gives up first and logs it as a failed request (a WARNING); a second later
    # `timedb api`'s protocol resets the connection the client left full
    cut = r"WARNING: .*GET /values: response aborted after \d+ rows: the client accepted nothing for 2 s"
    log = log_shows(server, cut)
    assert "Traceback" not in log, log[-3000:]
    assert len([line for line in log.splitlines() if re.search(cut, line)]) == 1, log[-3000:]
    raw, _ = read_to_end(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    body, terminated = dechunk(raw)
    assert not terminated
    assert_incomplete(body)
    healthy(server)
    read_all(server, small, 10)


def test_sigterm_with_a_stalled_reader_exits_after_the_graceful_limit(stalled_reader):
    """SIGTERM while a reader is stalled (client timeout far away): `timedb api
    --timeout-graceful-shutdown 3` exits within the limit plus a few seconds, and PostgreSQL
    drops the session. (Before the fix the process never exited.)"""
    server, _, _ = stalled_reader(
        command=[*TIMEDB, "api", "--timeout-graceful-shutdown", "3"], TIMEDB_CLIENT_TIMEOUT="120"
    )
    server.stop(timeout=3 + 7)
    wait_until(lambda: not backends(server.dsn), 10)


# --- 3. the database fails mid-stream -------------------------------------------------------------


@pytest.mark.parametrize("fault", ["terminate_backend", "kill9_postgres"])
def test_stream_cut_by_the_database_ends_in_an_error(serve, cluster, cluster_db, fault):
    """The database fails while a large read is being sent (its backend terminated, or PostgreSQL
    killed with SIGKILL): the client gets an error, never a complete document; the server logs
    'response aborted', keeps answering, and reads work again once the database is back."""
    server = serve(dsn=cluster_db)
    sid = seed_series(cluster_db, HUGE)
    small = seed_series(cluster_db, 10, name="small")
    body = b""
    with httpx.Client(base_url=server.url, timeout=15) as c, c.stream("GET", values_path(sid)) as resp:
        assert resp.status_code == 200
        parts = resp.iter_bytes()
        body += next(parts)
        # the client reads nothing for now: the buffers fill up and PostgreSQL still has rows to send
        wait_until(lambda: stalled_sessions(cluster_db), 15)
        if fault == "terminate_backend":
            assert cluster.terminate_backends("timedb") >= 1
        else:
            cluster.kill9()
        deadline = time.monotonic() + 30
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for part in parts:  # at full speed now
                body += part
                assert time.monotonic() < deadline, f"still reading {len(body)} bytes later"
    assert_incomplete(body)
    log = log_shows(server, r"GET /values: response aborted after \d+ rows")
    assert "Traceback" not in log, log[-3000:]
    healthy(server)
    if fault == "kill9_postgres":
        cluster.restart()
    wait_until(lambda: answers(server, values_path(small)), 8)  # the pool reconnects by itself
    read_all(server, small, 10)


# --- 4. held: SIGTERM lets in-flight work finish --------------------------------------------------


def test_sigterm_lets_in_flight_read_and_write_finish(serve):
    """SIGTERM while a large streamed read is being consumed and a large POST /values is being
    uploaded: both complete (the whole document; 200 with every row stored), then the process exits."""
    server = serve()
    sid = seed_series(server.dsn, 300_000)
    target = seed_series(server.dsn, 0, name="target")
    points = 200_000
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    payload = json.dumps(
        {
            "series_id": target,
            "data": [{"valid_time": (t0 + timedelta(minutes=i)).isoformat(), "value": i} for i in range(points)],
        }
    ).encode()
    read_started, write_started, signalled = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, tuple | Exception] = {}

    def read() -> None:
        try:
            with server.client(timeout=30) as c, c.stream("GET", values_path(sid)) as resp:
                parts = resp.iter_bytes()
                body = next(parts)
                read_started.set()
                signalled.wait(10)
                body += b"".join(parts)
                results["read"] = (resp.status_code, body)
        except Exception as exc:
            results["read"] = exc

    def upload() -> Iterator[bytes]:
        half = len(payload) // 2
        yield payload[:half]
        write_started.set()
        signalled.wait(10)
        yield payload[half:]

    def write() -> None:
        try:
            with server.client(timeout=60) as c:
                resp = c.post(
                    "/values",
                    content=upload(),
                    headers={"Content-Type": "application/json", "Content-Length": str(len(payload))},
                )
                results["write"] = (resp.status_code, resp.json())
        except Exception as exc:
            results["write"] = exc

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for t in threads:
        t.start()
    try:
        assert read_started.wait(15) and write_started.wait(15), results
        server.proc.send_signal(signal.SIGTERM)
    finally:
        signalled.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert isinstance(results["read"], tuple), results["read"]
    assert isinstance(results["write"], tuple), results["write"]
    status, body = results["read"]
    assert status == 200
    doc = json.loads(body)
    assert doc["count"] == len(doc["data"]) == 300_000
    status, answer = results["write"]
    assert status == 200, answer
    assert answer["rows_inserted"] == points
    try:
        server.proc.wait(timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit after SIGTERM:\n{server.log()[-3000:]}")
    with psycopg.connect(server.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM flat WHERE series_id = %s", (target,)).fetchone()
    assert stored == (points,)


# --- 5. the document shape ------------------------------------------------------------------------


def test_streamed_document_shape_and_the_edges(serve):
    """Up to 5,000 rows the document is `{"count":N,"data":[...]}` with a Content-Length; above,
    it is streamed (chunked) as `{"data":[...],"count":N}`, count last and equal to len(data);
    every record present once, in order, at the edges 5,000/5,001 and 10,000/10,001."""
    server = serve()
    sizes = [0, 1, 4_999, 5_000, 5_001, 10_000, 10_001, 20_000]
    ids = {n: seed_series(server.dsn, n, name=f"s{n}") for n in sizes}
    with server.client() as c:
        for n in sizes:
            resp = c.get(values_path(ids[n]))
            assert resp.status_code == 200, resp.text
            raw = resp.content
            if n <= 5_000:
                assert raw.startswith(b'{"count":%d,"data":[' % n), (n, raw[:100])
                assert resp.headers.get("content-length") == str(len(raw)), n
            else:
                assert raw.startswith(b'{"data":['), (n, raw[:100])
                assert raw.endswith(b'],"count":%d}' % n), (n, raw[-100:])
                assert resp.headers.get("transfer-encoding") == "chunked", n
            doc = json.loads(raw)
            assert doc["count"] == len(doc["data"]) == n
            assert [r["value"] for r in doc["data"]] == list(range(n)), n
