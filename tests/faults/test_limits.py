"""Limits and recovery (issue 8, items 5-10, 13, 14 and the held PostgreSQL kill -9 property).

Real server processes on real PostgreSQL (the test's own cluster where it is stopped or killed),
misbehaving clients speaking raw HTTP over loopback sockets. Every wait is bounded.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.faults.conftest import backends, seed_series, wait_until
from tests.helpers import assert_problem
from tests.processes import server_env

BIN = Path(sys.executable).parent
TIMEDB = [str(BIN / "timedb")] if (BIN / "timedb").exists() else [sys.executable, "-m", "timedb"]
SERIES_LOCK = 7345002  # pg_advisory_xact_lock(SERIES_LOCK, series_id): a series' write lock (timedb/db/locks.py)
MiB = 1 << 20


# ------------------------------------------------------------------ helpers


@dataclass
class RawResponse:
    """An HTTP response read off a raw socket (enough of httpx.Response for assert_problem)."""

    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def port_of(server: Any) -> int:
    return int(urlsplit(server.url).port or 0)


def connect(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)


def request_head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> RawResponse:
    """One response (Content-Length framed) within timeout seconds; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    buf = b""

    def more() -> bytes:
        remaining = deadline - time.monotonic()
        data: bytes | None = None
        if remaining > 0:
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                pass
            except ConnectionResetError:
                data = b""
        if data is None:
            pytest.fail(f"no complete response within {timeout} s (got {buf[:300]!r})")
        return data

    while b"\r\n\r\n" not in buf:
        chunk = more()
        if not chunk:
            pytest.fail(f"connection closed without a complete response (got {buf[:300]!r})")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = more()
        if not chunk:
            pytest.fail(f"connection closed in the middle of a response body ({body[:300]!r})")
        body += chunk
    return RawResponse(int(lines[0].split()[1]), headers, body[:length])


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closes the connection (EOF or reset), None if still open after timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


def send_while_unanswered(sock: socket.socket, chunks: list[bytes], pause: float = 0.0) -> None:
    """Send chunks until the server answers (or closes, or stops reading for 5 s)."""
    for chunk in chunks:
        if select.select([sock], [], [], pause)[0]:
            return  # a response (or EOF) is waiting
        sock.settimeout(5)
        try:
            sock.sendall(chunk)
        except (OSError, TimeoutError):
            return


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def values_body(series_id: int, points: int, start_minute: int = 0) -> bytes:
    data = [{"valid_time": _minute(start_minute + i), "value": float(i)} for i in range(points)]
    return json.dumps({"series_id": series_id, "data": data}).encode()


def _minute(i: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1704067200 + 60 * i))  # from 2024-01-01


def make_series(dsn: str, name: str = "s", overlapping: bool = False) -> int:
    """A series created with SQL (not through the server under test)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO series_table (name, unit, overlapping) VALUES (%s, 'MW', %s) RETURNING series_id",
            (name, overlapping),
        ).fetchone()
    assert row is not None
    return int(row[0])


def stored_rows(dsn: str, series_id: int, table: str = "flat") -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE series_id = %s", (series_id,)).fetchone()
    assert row is not None
    return int(row[0])


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = call()
    return result, time.monotonic() - t0


def assert_unavailable(resp: Any, type_: str | None = None) -> dict[str, Any]:
    """A 503 problem with a Retry-After of whole seconds."""
    body = assert_problem(resp, 503, type_)
    assert resp.headers.get("retry-after", "").isdigit(), dict(resp.headers)
    return body


def no_busy_sessions(dsn: str) -> Callable[[], bool]:
    """Check: none of the server's sessions runs a query or sits in an open transaction."""

    def check() -> bool:
        return all(b["state"] == "idle" for b in backends(dsn))

    return check


def run_all(calls: list[Callable[[], Any]], timeout: float) -> list[Any]:
    """Run calls concurrently, each in its own thread; their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        deadline = time.monotonic() + timeout
        return [f.result(timeout=max(0.1, deadline - time.monotonic())) for f in futures]


# ------------------------------------------------------------------ item 5 and held: PostgreSQL outages


def test_recovers_within_5s_after_a_20s_database_outage(cluster, cluster_db, serve):
    """Item 5: while PostgreSQL is stopped for ~20 s, requests get 503 service-unavailable problems
    with Retry-After in bounded time (no hang); once it accepts connections again, /readyz and a
    read answer 200 within 5 s, without restarting the server (the pool's reconnect backoff is
    capped; psycopg_pool's doubling backoff alone took ~10 s or more after a 20 s outage)."""
    sid = seed_series(cluster_db, 100)
    server = serve(dsn=cluster_db)
    with server.client(timeout=15) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get("/values", params={"series_id": sid}).status_code == 200
        cluster.stop()
        down = time.monotonic()
        slow: list[str] = []  # checked last, so that the recovery is checked even when this fails
        while time.monotonic() - down < 20 and len(slow) < 30:
            for path, params in (("/values", {"series_id": sid}), ("/readyz", {})):
                resp, took = timed(lambda p=path, q=params: http.get(p, params=q))
                assert_unavailable(resp, "/problems/service-unavailable")
                if took > 8:  # the pool timeout is 5 s
                    slow.append(f"{path} answered after {took:.1f} s")
            time.sleep(0.5)
        cluster.start()  # returns once the database accepts connections
        up = time.monotonic()

        def recovered() -> bool:
            try:
                return (
                    http.get("/readyz", timeout=1).status_code == 200
                    and http.get("/values", params={"series_id": sid}, timeout=1).status_code == 200
                )
            except httpx.TimeoutException:
                return False

        while not recovered():
            if time.monotonic() - up > 5:
                pytest.fail("still no 200 from /readyz and /values 5 s after the database came back")
            time.sleep(0.2)
        assert time.monotonic() - up < 6
        for _ in range(5):
            assert http.get("/values", params={"series_id": sid}).json()["count"] == 100
    assert not slow, slow
    assert server.alive()


def test_postgres_kill9_gives_503_then_recovers_without_stale_connections(cluster, cluster_db, serve):
    """Held: PostgreSQL killed with SIGKILL: requests get 503 problem documents with Retry-After,
    /readyz 503; after a restart /readyz turns 200 and every request after that is 200 (reads,
    writes, several in a row and concurrently): no stale pooled connection is ever handed out."""
    sid = seed_series(cluster_db, 100)
    server = serve(dsn=cluster_db)
    with server.client(timeout=15) as http:
        for _ in range(4):  # the pool holds connections that kill -9 will break
            assert http.get("/values", params={"series_id": sid}).status_code == 200
        cluster.kill9()
        during = run_all(
            [
                lambda: http.get("/readyz"),
                lambda: http.get("/values", params={"series_id": sid}),
                lambda: http.post(
                    "/values", json={"series_id": sid, "data": [{"valid_time": "2030-01-01T00:00:00Z", "value": 1.0}]}
                ),
            ],
            timeout=30,
        )
        for resp in during:
            assert_unavailable(resp)
        cluster.start()
        wait_until(lambda: http.get("/readyz").status_code == 200, timeout=15, interval=0.2)
        for i in range(12):
            assert http.get("/values", params={"series_id": sid}).status_code == 200
            resp = http.post(
                "/values", json={"series_id": sid, "data": [{"valid_time": _minute(10**6 + i), "value": 1.0}]}
            )
            assert resp.status_code == 200, resp.text
            assert http.get("/readyz").status_code == 200
        results = run_all([lambda: [http.get("/series").status_code for _ in range(5)] for _ in range(4)], timeout=60)
        assert all(code == 200 for codes in results for code in codes), results
    # the write attempted during the outage was not stored; the 12 after it were
    assert stored_rows(cluster_db, sid) == 112


# ------------------------------------------------------------------ item 6: limits on database work


def test_lock_timeout_answers_503_and_stores_nothing(serve):
    """Item 6: with TIMEDB_LOCK_TIMEOUT=0.5s, a write waiting for its series' write lock (held by
    another session) or for a table locked ACCESS EXCLUSIVE, and a read waiting for that table,
    answer 503 /problems/lock-timeout with Retry-After within a few seconds and store nothing;
    once the lock is gone the same requests succeed."""
    server = serve(TIMEDB_LOCK_TIMEOUT="0.5s")
    sid = make_series(server.dsn)
    point = {"series_id": sid, "data": [{"valid_time": "2024-01-01T00:00:00Z", "value": 1.0}]}
    with server.client(timeout=10) as http, psycopg.connect(server.dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SERIES_LOCK, sid))
        resp, took = timed(lambda: http.post("/values", json=point))
        assert_unavailable(resp, "/problems/lock-timeout")
        assert took < 5
        holder.rollback()
        assert stored_rows(server.dsn, sid) == 0

        holder.execute("LOCK TABLE flat IN ACCESS EXCLUSIVE MODE")
        for call in (lambda: http.post("/values", json=point), lambda: http.get("/values", params={"series_id": sid})):
            resp, took = timed(call)
            assert_unavailable(resp, "/problems/lock-timeout")
            assert took < 5
        assert http.get("/series").status_code == 200  # what is not locked is served meanwhile
        holder.rollback()
        assert stored_rows(server.dsn, sid) == 0

        assert http.post("/values", json=point).status_code == 200
        assert http.get("/values", params={"series_id": sid}).json()["count"] == 1
    wait_until(no_busy_sessions(server.dsn), timeout=5)


def test_statement_timeout_answers_503_query_timeout(serve, make_database):
    """Item 6: with TIMEDB_STATEMENT_TIMEOUT=0.05s, a read that must sort a few hundred thousand
    rows before its first row (versions=true) and a write slowed by a trigger answer 503
    /problems/query-timeout (never 500), the write stores nothing, no session is left running
    or in a transaction, and the server keeps serving."""
    dsn = make_database()
    big = seed_series(dsn, 100_000, overlapping=True, revisions=3)
    sid = make_series(dsn, "small")
    server = serve(dsn=dsn, TIMEDB_STATEMENT_TIMEOUT="0.05s")
    with server.client(timeout=30) as http:
        resp, took = timed(lambda: http.get("/values", params={"series_id": big, "versions": "true"}))
        assert_unavailable(resp, "/problems/query-timeout")
        assert took < 10

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$"
            )
            conn.execute("CREATE TRIGGER slow_row BEFORE INSERT ON flat FOR EACH ROW EXECUTE FUNCTION slow_row()")
        body = {"series_id": sid, "data": [{"valid_time": _minute(i), "value": 1.0} for i in range(3)]}
        resp, took = timed(lambda: http.post("/values", json=body))
        assert_unavailable(resp, "/problems/query-timeout")
        assert took < 10
        assert stored_rows(dsn, sid) == 0
        wait_until(no_busy_sessions(dsn), timeout=5)

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER slow_row ON flat")
        assert http.post("/values", json=body).status_code == 200
        assert http.get("/values", params={"series_id": sid}).json()["count"] == 3
        # a read that streams from its first row is not cut by the per-step limit
        assert (
            http.get("/values", params={"series_id": big, "end_valid": "2020-01-02T00:00:00Z"}).json()["count"] == 1440
        )
    wait_until(no_busy_sessions(dsn), timeout=5)


def test_series_list_is_paged_by_1000_by_default(client, clean_db):
    """Item 6: GET /series without limit returns at most 1,000 series and a Link rel=next to the
    rest (1,005 series)."""
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO series_table (name) SELECT 's' || lpad(i::text, 5, '0') FROM generate_series(1, 1005) i"
        )
    resp = client.get("/series")
    assert resp.status_code == 200
    first = resp.json()
    assert len(first) == 1000
    link = resp.headers.get("link", "")
    assert 'rel="next"' in link, dict(resp.headers)
    rest = client.get(link.split(">")[0].lstrip("<"))
    assert rest.status_code == 200
    assert [s["name"] for s in rest.json()] == [f"s{i:05d}" for i in range(1001, 1006)]
    assert "link" not in rest.headers


# ------------------------------------------------------------------ item 7: pool exhaustion


def test_pool_exhaustion_is_server_busy_and_healthz_stays_fast(serve):
    """Item 7: with TIMEDB_POOL_MAX_SIZE=2, TIMEDB_POOL_TIMEOUT=1, TIMEDB_POOL_MAX_WAITING=2 and both
    connections held by writes waiting on a table lock, further requests get 503
    /problems/server-busy with Retry-After within a few seconds (not 'database not reachable');
    and with 60 requests blocked waiting for a connection (every worker thread busy), /healthz
    still answers 200 within 2 s."""
    server = serve(
        TIMEDB_POOL_MAX_SIZE="2",
        TIMEDB_POOL_MIN_SIZE="2",
        TIMEDB_POOL_TIMEOUT="1",
        TIMEDB_POOL_MAX_WAITING="2",
        TIMEDB_LOCK_TIMEOUT="60s",
    )
    sid = make_series(server.dsn)
    point = {"series_id": sid, "data": [{"valid_time": "2024-01-01T00:00:00Z", "value": 1.0}]}
    with server.client(timeout=30) as http:
        with both_connections_waiting(server, http, point):
            busy = run_all(
                [lambda: timed(lambda: http.get("/series")) for _ in range(4)]
                + [lambda: timed(lambda: http.get("/readyz"))],
                timeout=30,
            )
            for resp, took in busy:
                body = assert_unavailable(resp, "/problems/server-busy")
                assert "not reachable" not in body["detail"]
                assert took < 5
    assert stored_rows(server.dsn, sid) == 2
    server.stop()

    # a queue without bound (max_waiting 0): 60 requests wait for a connection in worker threads
    server = serve(
        dsn=server.dsn,
        TIMEDB_POOL_MAX_SIZE="2",
        TIMEDB_POOL_MIN_SIZE="2",
        TIMEDB_POOL_TIMEOUT="8",
        TIMEDB_POOL_MAX_WAITING="0",
        TIMEDB_LOCK_TIMEOUT="60s",
    )
    sockets: list[socket.socket] = []
    with server.client(timeout=30) as http:
        with both_connections_waiting(server, http, point):
            for _ in range(60):
                sock = connect(server)
                sockets.append(sock)
                sock.sendall(request_head("GET", "/series"))
            time.sleep(0.5)
            for _ in range(3):
                try:
                    resp, took = timed(lambda: httpx.get(server.url + "/healthz", timeout=2))
                except httpx.TimeoutException:
                    pytest.fail("/healthz did not answer within 2 s while requests waited for connections")
                assert resp.status_code == 200
                assert took < 2
                time.sleep(0.5)
        try:
            for sock in sockets:
                resp = read_response(sock, timeout=30)
                if resp.status_code != 200:
                    assert_unavailable(resp, "/problems/server-busy")
        finally:
            for sock in sockets:
                sock.close()


@contextmanager
def both_connections_waiting(server: Any, http: httpx.Client, point: dict[str, Any]) -> Iterator[None]:
    """The server's two pool connections held by POSTs waiting on a table lock (released, and
    the POSTs answered 200, when the block ends)."""

    def waiting_writers() -> bool:
        return sum(b["wait_event_type"] == "Lock" for b in backends(server.dsn)) >= 2

    with psycopg.connect(server.dsn) as holder, ThreadPoolExecutor(max_workers=2) as writers:
        holder.execute("LOCK TABLE flat IN ACCESS EXCLUSIVE MODE")
        posts = [writers.submit(http.post, "/values", json=point) for _ in range(2)]
        try:
            wait_until(waiting_writers, timeout=10)
            yield
        finally:
            holder.rollback()
        assert [p.result(timeout=30).status_code for p in posts] == [200, 200]


# ------------------------------------------------------------------ item 8: request bodies


def test_body_limits(serve):
    """Item 8: a declared Content-Length of 1e9 with 100 bytes sent gets a 413 problem at once and
    the connection is closed; a body over TIMEDB_MAX_BODY_BYTES (declared or chunked) gets 413;
    with TIMEDB_MAX_LARGE_BODIES=1 a second large body, while a first one is being uploaded
    slowly, gets 503 /problems/server-busy (and the first is stored); a body that stalls gets
    408 /problems/request-timeout after TIMEDB_CLIENT_TIMEOUT."""
    server = serve(
        TIMEDB_MAX_BODY_BYTES=str(4 * MiB),
        TIMEDB_MAX_LARGE_BODIES="1",
        TIMEDB_POOL_TIMEOUT="1",
        TIMEDB_CLIENT_TIMEOUT="2",
    )
    sid = make_series(server.dsn)
    json_head = {"Content-Type": "application/json"}

    # declared 1e9 bytes, 100 sent: answered before the body is read
    with connect(server) as sock:
        t0 = time.monotonic()
        sock.sendall(request_head("POST", "/values", {**json_head, "Content-Length": "1000000000"}) + b"{" * 100)
        resp = read_response(sock, timeout=5)
        assert_problem(resp, 413, "/problems/payload-too-large")
        assert time.monotonic() - t0 < 5
        assert closed_within(sock, 5) is not None, "the connection stayed open after the 413"

    # over the limit: declared (answered before the body is read), and chunked (answered once the
    # limit is passed; nothing more is sent, so the server closes a drained connection: no reset)
    with connect(server) as sock:
        sock.sendall(request_head("POST", "/values", {**json_head, "Content-Length": str(5 * MiB)}) + b" " * 65536)
        assert_problem(read_response(sock, timeout=5), 413, "/problems/payload-too-large")
    with connect(server) as sock:
        part = b"%x\r\n%s\r\n" % (256 * 1024, b" " * 256 * 1024)
        head = request_head("POST", "/values", {**json_head, "Transfer-Encoding": "chunked"})
        send_while_unanswered(sock, [head, *[part] * 17])  # 4.25 MiB
        assert_problem(read_response(sock, timeout=10), 413, "/problems/payload-too-large")

    # one large body at a time: a second one waits TIMEDB_POOL_TIMEOUT, then 503 server-busy
    large = values_body(sid, 30_000)
    assert len(large) > 1.2 * MiB
    slow_result: dict[str, Any] = {}
    first_sent = threading.Event()

    def slow_upload() -> None:
        with connect(server) as slow:
            pieces = chunked(large, len(large) // 10 + 1)
            slow.sendall(request_head("POST", "/values", {**json_head, "Content-Length": str(len(large))}))
            for piece in pieces:
                slow.sendall(piece)
                first_sent.set()
                time.sleep(0.3)  # ~3 s in all, each pause within TIMEDB_CLIENT_TIMEOUT
            slow_result["response"] = read_response(slow, timeout=30)

    uploader = threading.Thread(target=slow_upload, daemon=True)
    uploader.start()
    try:
        assert first_sent.wait(timeout=5)
        time.sleep(0.2)
        with connect(server) as sock:
            t0 = time.monotonic()
            sock.sendall(
                request_head("POST", "/values", {**json_head, "Content-Length": str(len(large))}) + large[:1000]
            )
            resp = read_response(sock, timeout=5)
            assert_unavailable(resp, "/problems/server-busy")
            assert time.monotonic() - t0 < 5
            assert uploader.is_alive(), "the first upload ended before the second one was answered"
    finally:
        uploader.join(timeout=30)
    assert not uploader.is_alive()
    assert slow_result["response"].status_code == 200, slow_result["response"].text
    assert slow_result["response"].json()["rows_inserted"] == 30_000

    # a body that stalls half-way: 408 after TIMEDB_CLIENT_TIMEOUT (2 s), connection closed
    with connect(server) as sock:
        t0 = time.monotonic()
        sock.sendall(request_head("POST", "/values", {**json_head, "Content-Length": "1000"}) + large[:100])
        assert_problem(read_response(sock, timeout=8), 408, "/problems/request-timeout")
        assert 1.5 < time.monotonic() - t0 < 6
        assert closed_within(sock, 5) is not None
    assert stored_rows(server.dsn, sid) == 30_000
    assert server.alive()


# ------------------------------------------------------------------ item 9: deep nesting


def nested(depth: int, leaf: str = "1", open_: str = "[", close: str = "]") -> str:
    return open_ * depth + leaf + close * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.mark.parametrize("depth", [40, 1000, 1022])
def test_deep_batch_params_is_400(client, depth):
    """Item 9: batch_params nested 40, 1,000 and 1,022 levels (limit 32) is a 400 (naming
    batch_params, or saying the body nests too deeply), never a 500 (RecursionError in a JSON
    encoder)."""
    sid = client.post("/series", json={"name": "forecast", "overlapping": True}).json()["series_id"]
    body = (
        f'{{"series_id": {sid}, "data": [{{"valid_time": "2024-01-01T00:00:00Z", "value": 1}}], '
        f'"batch_params": {nested_object(depth)}}}'
    )
    problem = assert_problem(client.post("/values", content=body, headers=JSON_HEADERS), 400)
    # (past a few hundred levels the schema validator gives up before it can name the field)
    assert "batch_params" in problem["detail"] or "nests too deeply" in problem["detail"], problem
    if depth < 100:
        assert "batch_params" in problem["detail"], problem
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


def test_deep_nesting_elsewhere_is_400(client):
    """Item 9: a `labels` query parameter nested ~990 levels (GET /series, /values, /series/count),
    a `value` that is a 300-level nested array, and `labels` in POST /series nested 40 and 1,000
    levels are 400s, never 500s."""
    deep_labels = '{"a":' + nested(989) + "}"
    assert len(deep_labels) < 2000  # within the parameter's maxLength: the depth is what is refused
    for path in ("/series", "/values", "/series/count"):
        assert_problem(client.get(path, params={"labels": deep_labels, "name": "x"}), 400)
    sid = client.post("/series", json={"name": "flat"}).json()["series_id"]
    value = f'{{"series_id": {sid}, "data": [{{"valid_time": "2024-01-01T00:00:00Z", "value": {nested(300)}}}]}}'
    assert_problem(client.post("/values", content=value, headers=JSON_HEADERS), 400)
    for depth in (40, 1000):
        series = f'{{"name": "deep", "labels": {nested_object(depth)}}}'
        assert_problem(client.post("/series", content=series, headers=JSON_HEADERS), 400)
    assert client.get("/series/count").json() == {"count": 1}
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


# ------------------------------------------------------------------ item 10: DSN passwords


BAD_DSN = "postgresql://user:PASS@[::1/db"


@pytest.mark.parametrize("command", ["uvicorn", "timedb api", "timedb create tables"])
def test_malformed_dsn_password_is_never_printed(command):
    """Item 10: with a malformed DSN that holds a password, `uvicorn timedb.api:app`, `timedb api`
    and `timedb create tables --dsn ... --yes` exit non-zero with one clear line (no traceback)
    and never print the password."""
    port = "0"  # (never bound: the command fails first)
    argv, env = {
        "uvicorn": ([sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", port], server_env(BAD_DSN)),
        "timedb api": ([*TIMEDB, "api", "--port", port], server_env(BAD_DSN)),
        "timedb create tables": ([*TIMEDB, "create", "tables", "--dsn", BAD_DSN, "--yes"], server_env(None)),
    }[command]
    done = subprocess.run(
        argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=60, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "PASS" not in done.stdout and "PASS" not in done.stderr, output
    assert "Traceback" not in output, output
    reported = [line for line in output.splitlines() if "[::1/db" in line or "DSN" in line]
    assert len(reported) == 1, output


# ------------------------------------------------------------------ item 13: slow clients


def slowloris(server: Any, limit: float = 10) -> tuple[RawResponse | None, float]:
    """Send request headers one byte every 0.5 s until the server answers or closes; returns the
    response (None when closed without one) and the seconds since connecting."""
    with connect(server) as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while time.monotonic() - t0 < limit:
            if select.select([sock], [], [], 0.5)[0]:
                break
            try:
                sock.sendall(b"a")
            except OSError:
                break
        else:
            pytest.fail(f"a slowloris client was still connected after {limit} s")
        sock.settimeout(5)
        try:
            first = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            first = b""
        took = time.monotonic() - t0
        if not first:
            return None, took
        if closed_within(sock, 5) is None:
            pytest.fail("the connection stayed open after the 408")
        status = int(first.split(b" ", 2)[1])
        return RawResponse(status, {}, first), took


def test_slow_clients_are_cut_off(serve):
    """Item 13 (`timedb api`, TIMEDB_CLIENT_TIMEOUT=2): a slowloris client (a header byte every
    0.5 s) gets 408 and is closed within ~2-4 s; a client that sends nothing is closed within a
    few seconds; keep-alive requests on one connection still work, across more than the timeout
    in all; a body that stalls gets a 408 problem."""
    server = serve(TIMEDB_CLIENT_TIMEOUT="2")

    resp, took = slowloris(server)
    assert resp is not None and resp.status_code == 408, resp
    assert took < 4.5

    with connect(server) as idle:
        seconds = closed_within(idle, 6)
        assert seconds is not None, "a silent connection stayed open"
        assert seconds > 1  # closed by the timeout, not refused

    with connect(server) as keep:  # three requests on one connection, 2.4 s in all
        for i in range(3):
            if i:
                time.sleep(1.2)
            keep.sendall(request_head("GET", "/healthz"))
            assert read_response(keep, timeout=5).status_code == 200

    with connect(server) as sock:
        t0 = time.monotonic()
        sock.sendall(
            request_head("POST", "/series", {"Content-Type": "application/json", "Content-Length": "100"})
            + b'{"name": '
        )
        assert_problem(read_response(sock, timeout=8), 408, "/problems/request-timeout")
        assert time.monotonic() - t0 < 6
    assert server.alive()


def test_gunicorn_worker_cuts_off_slow_clients_and_stops_on_sigterm(serve):
    """Item 13 under gunicorn (`-k timedb.workers.UvicornWorker`, TIMEDB_CLIENT_TIMEOUT=2): a
    slowloris client is answered 408 and closed; the server exits cleanly (status 0) on SIGTERM."""
    server = serve(
        command=[
            str(BIN / "gunicorn"),
            "timedb.api:app",
            "-k",
            "timedb.workers.UvicornWorker",
            "-w",
            "1",
            "--bind",
            "127.0.0.1:{port}",
        ],
        port_arg=False,
        TIMEDB_CLIENT_TIMEOUT="2",
    )
    resp, took = slowloris(server)
    assert resp is not None and resp.status_code == 408, resp
    assert took < 4.5
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert server.stop(signal.SIGTERM, timeout=20) < 15
    assert server.proc.returncode == 0, server.log()[-3000:]


# ------------------------------------------------------------------ item 14: PgBouncer


def mixed_traffic(http: httpx.Client, worker: int, rounds: int) -> list[httpx.Response]:
    """Get-or-create a series, write, read, correct and list, `rounds` times."""
    out = []
    for i in range(rounds):
        resp = http.post("/series", json={"name": f"bouncer-{worker}", "unit": "MW"})
        out.append(resp)
        if resp.status_code != 200:
            continue
        sid = resp.json()["series_id"]
        vt = _minute(i)
        out.append(http.post("/values", json={"series_id": sid, "data": [{"valid_time": vt, "value": float(i)}]}))
        if out[-1].status_code == 200:  # (a correction of a point not stored is a 404)
            out.append(http.put("/values", json={"updates": [{"series_id": sid, "valid_time": vt, "value": -1.0}]}))
        out.append(http.get("/values", params={"series_id": sid}))
        out.append(http.get("/series", params={"name": f"bouncer-{worker}"}))
        out.append(http.get("/readyz"))
    return out


def test_pgbouncer_transaction_mode(serve, make_database, bouncer):
    """Item 14: through PgBouncer in transaction mode (pool_size 2), a mix of requests from 4
    concurrent clients gets no error, with the default settings (prepared statements after 5
    executions) and with TIMEDB_PREPARE_THRESHOLD=0 (always): the server sees the pooler (its
    backend key is not the backend's) and keeps prepared statements off, saying so once in the
    log; with TIMEDB_PREPARE_THRESHOLD=none there is nothing to say. (Before the fix the
    default gave 500s here.)"""
    dbname = conninfo_to_dict(make_database())["dbname"]
    dsn = bouncer.dsn_for(dbname)
    for threshold, warned in ((None, True), ("0", True), ("none", False)):
        env = {} if threshold is None else {"TIMEDB_PREPARE_THRESHOLD": threshold}
        server = serve(dsn=dsn, **env)
        with server.client(timeout=30) as http:
            results = run_all([lambda w=w, http=http: mixed_traffic(http, w, 8) for w in range(4)], timeout=120)
        failed = [(r.status_code, r.text[:200]) for rs in results for r in rs if r.status_code != 200]
        assert not failed, (env, failed)
        assert sum(len(rs) for rs in results) == 4 * 8 * 6  # every request was made
        server.stop()
        log = server.log()
        assert log.count("prepared statements stay off") == warned, (env, log[-3000:])
        assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]


def test_prepared_statements_stay_on_without_a_pooler(serve, db_dsn):
    """The pooler check does not misfire: straight to PostgreSQL, TIMEDB_PREPARE_THRESHOLD=0
    serves (with prepared statements) and logs no pooler warning."""
    server = serve(dsn=db_dsn, TIMEDB_PREPARE_THRESHOLD="0")
    with server.client() as http:
        for _ in range(3):
            assert http.get("/series/count").status_code == 200
    server.stop()
    assert "prepared statements stay off" not in server.log()
