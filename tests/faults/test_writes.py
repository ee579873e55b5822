"""Fault tests for writes (issue 8, items 4, 11, 12, 15 and the kill -9 property).

Concurrent corrections lose no update, default known times never collide, Idempotency-Key makes
retries safe, serialization failures and deadlocks are retried a bounded number of times, and a
server killed with SIGKILL under concurrent writes leaves every write whole. Real server processes
(or the real app in-process) on real PostgreSQL; every expectation is computed here, from the
requests sent and from the database, not by the code under test.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.faults.conftest import Server, backends, wait_until
from tests.helpers import LOCAL, assert_problem

KT = "2025-01-01T00:00:00+00:00"
VT = "2025-01-02T00:00:00+00:00"
T0 = datetime(2025, 1, 2, tzinfo=UTC)
JOIN_TIMEOUT = 60.0  # seconds for every group of client threads
REPLAYED = "Idempotent-Replayed"
KEY = "Idempotency-Key"


# --- helpers ----------------------------------------------------------------------------------------


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of the test's own (not the server's)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def execute(dsn: str, sql: str, params: Any = None) -> None:
    """Run one statement that returns no rows, on a connection of the test's own."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql, params)


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    return query(dsn, sql, params)[0][0]


def new_series(c: httpx.Client, name: str, overlapping: bool = False) -> int:
    """A new series through the API (a unique name per call); returns its id."""
    resp = c.post("/series", json={"name": f"{name}-{uuid.uuid4().hex[:8]}", "unit": "MW", "overlapping": overlapping})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["series_id"])


def points(n: int, value: float, start: datetime = T0) -> list[dict[str, Any]]:
    """n points one minute apart from start, all with this value."""
    return [{"valid_time": (start + timedelta(minutes=i)).isoformat(), "value": value} for i in range(n)]


def encoded(body: dict[str, Any]) -> bytes:
    """The exact bytes of a request body: a retry must send the same bytes as the first try."""
    return json.dumps(body, separators=(",", ":")).encode()


def send(c: httpx.Client, method: str, body: dict[str, Any], key: str | bytes | None = None) -> httpx.Response:
    """POST or PUT /values with this body (as encoded()) and, if given, an Idempotency-Key."""
    headers: dict[str, Any] = {"content-type": "application/json"}
    if key is not None:
        headers[KEY] = key
    return c.request(method, "/values", content=encoded(body), headers=headers)


def audit(c: httpx.Client, sid: int) -> list[dict[str, Any]]:
    """Every stored row of a series (GET /values?include_updates=true), oldest change first."""
    resp = c.get("/values", params={"series_id": sid, "include_updates": "true"})
    assert resp.status_code == 200, resp.text
    return sorted(resp.json()["data"], key=lambda r: datetime.fromisoformat(r["change_time"]))


def flat_rows(dsn: str, sid: int) -> int:
    return int(scalar(dsn, "SELECT count(*) FROM flat WHERE series_id = %s", (sid,)))


def batches(dsn: str, sid: int) -> list[tuple[int, int]]:
    """(batch_id, rows of the batch) of an overlapping series, orphan batches included."""
    return [
        (int(b), int(n))
        for b, n in query(
            dsn,
            "SELECT b.batch_id, count(o.batch_id) FROM batches_table b LEFT JOIN overlapping o "
            "ON o.batch_id = b.batch_id WHERE b.series_id = %s GROUP BY b.batch_id ORDER BY 1",
            (sid,),
        )
    ]


def in_threads(n: int, work: Callable[[int], Any], timeout: float = JOIN_TIMEOUT) -> list[Any]:
    """work(0..n-1) in n threads released together; their results in order (re-raises the first error)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"client threads still running after {timeout} s"
    if errors:
        raise errors[0]
    return results


# --- item 4: no lost update on flat corrections ------------------------------------------------------

THREADS, PER_THREAD = 16, 5


def test_concurrent_partial_corrections_of_one_flat_point_lose_no_update(serve):
    """16 threads x 5 partial PUT /values (value-only and annotation-only, mixed) on one flat point
    all succeed, and the audit trail proves they were applied one after another: each row changes
    exactly the field of its own request and carries the other over from the row before (a
    correction that read a stale current row would revert the other field), every request left
    exactly one row, and the current value is that of the newest value correction."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "point")
        resp = send(c, "POST", {"series_id": sid, "known_time": KT, "data": [{"valid_time": VT, "value": 0.0}]})
        assert resp.status_code == 200, resp.text

    # request n sets a value or an annotation that no other request (nor the seed row) uses
    def request(n: int) -> tuple[str, Any]:
        return ("value", 1000.0 + n) if n % 2 == 0 else ("annotation", f"note-{n}")

    by_token = {request(n): n for n in range(THREADS * PER_THREAD)}

    def corrector(t: int) -> list[tuple[int, str]]:
        answers = []
        with server.client() as c:
            for j in range(PER_THREAD):
                field, token = request(t * PER_THREAD + (j + t) % PER_THREAD)
                resp = send(c, "PUT", {"updates": [{"series_id": sid, "valid_time": VT, field: token}]})
                answers.append((resp.status_code, resp.text))
        return answers

    answers = [a for per_thread in in_threads(THREADS, corrector) for a in per_thread]
    assert [s for s, _ in answers if s != 200] == [], [t for s, t in answers if s != 200][:3]

    with server.client() as c:
        rows = audit(c, sid)
        current = c.get("/values", params={"series_id": sid}).json()["data"]
    assert len(rows) == 1 + THREADS * PER_THREAD
    assert (rows[0]["value"], rows[0]["annotation"]) == (0.0, None)
    assert all(r["tags"] is None and r["changed_by"] is None and r["valid_time"] == VT for r in rows)

    stale, made_by, newest_value = [], [], 0.0
    for k in range(1, len(rows)):
        prev, row = rows[k - 1], rows[k]
        changed = [f for f in ("value", "annotation") if row[f] != prev[f]]
        n = by_token.get((changed[0], row[changed[0]])) if len(changed) == 1 else None
        if n is None:  # two fields changed (one reverted), or none, or content of no request
            stale.append((k, prev["value"], prev["annotation"], row["value"], row["annotation"]))
            continue
        made_by.append(n)
        if changed == ["value"]:
            newest_value = row["value"]
    assert stale == [], f"{len(stale)} of {len(rows)} rows carry a stale field (k, before, after): {stale[:5]}"
    assert sorted(made_by) == list(range(THREADS * PER_THREAD)), "not one row per request"
    assert current == [{"valid_time": VT, "value": newest_value}]


# --- item 12: default known times never collide -------------------------------------------------------

WRITERS, POSTS = 8, 25


def test_concurrent_posts_without_known_time_never_collide_overlapping(serve):
    """8 threads x 25 POST /values without known_time to one overlapping series, all at the same
    valid_times: every request is stored (200, never a 409), each batch gets a known_time of its
    own, and versions=true holds exactly one row per (known_time, valid_time)."""
    server = serve()
    vts = [(T0 + timedelta(hours=h)).isoformat() for h in range(3)]
    with server.client() as c:
        sid = new_series(c, "forecast", overlapping=True)

    def writer(t: int) -> list[tuple[int, int, str]]:
        out = []
        with server.client() as c:
            for j in range(POSTS):
                n = t * POSTS + j
                resp = send(c, "POST", {"series_id": sid, "data": [{"valid_time": v, "value": n} for v in vts]})
                out.append((n, resp.status_code, resp.text))
        return out

    results = [r for per_thread in in_threads(WRITERS, writer) for r in per_thread]
    refused = [(s, text) for _, s, text in results if s != 200]
    assert refused == [], f"{len(refused)} of {len(results)} refused: {refused[:3]}"
    batch_of = {n: json.loads(text)["batch_id"] for n, _, text in results}
    assert len(set(batch_of.values())) == WRITERS * POSTS

    # the database: one known_time per batch, all distinct, each batch holding its own 3 points
    stored = query(
        server.dsn,
        "SELECT b.batch_id, b.known_time, array_agg(o.value ORDER BY o.valid_time), "
        "array_agg(DISTINCT o.known_time) FROM batches_table b JOIN overlapping o "
        "ON o.batch_id = b.batch_id WHERE b.series_id = %s GROUP BY 1, 2",
        (sid,),
    )
    assert len(stored) == WRITERS * POSTS
    assert len({kt for _, kt, _, _ in stored}) == WRITERS * POSTS, "two batches share a known_time"
    assert all(kts == [kt] for _, kt, _, kts in stored)
    assert {b: vals for b, _, vals, _ in stored} == {b: [float(n)] * 3 for n, b in batch_of.items()}

    with server.client() as c:
        resp = c.get("/values", params={"series_id": sid, "versions": "true"})
    assert resp.status_code == 200, resp.text
    versions = Counter((r["known_time"], r["valid_time"]) for r in resp.json()["data"])
    assert len(versions) == WRITERS * POSTS * len(vts) and set(versions.values()) == {1}
    assert Counter(kt for kt, _ in versions) == dict.fromkeys((kt for kt, _ in versions), len(vts))


def test_concurrent_posts_to_one_flat_valid_time_are_all_stored(serve):
    """8 threads x 25 POST /values without known_time to the same valid_time of a flat series:
    every request is answered 200 and stored (one audit row per request, with its own value)."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "meter")

    def writer(t: int) -> list[tuple[int, str]]:
        out = []
        with server.client() as c:
            for j in range(POSTS):
                resp = send(c, "POST", {"series_id": sid, "data": [{"valid_time": VT, "value": t * POSTS + j}]})
                out.append((resp.status_code, resp.text))
        return out

    results = [r for per_thread in in_threads(WRITERS, writer) for r in per_thread]
    refused = [r for r in results if r[0] != 200]
    assert refused == [], f"{len(refused)} of {len(results)} refused: {refused[:3]}"
    with server.client() as c:
        rows = audit(c, sid)
    assert sorted(r["value"] for r in rows) == [float(n) for n in range(WRITERS * POSTS)]
    assert len({r["change_time"] for r in rows}) == WRITERS * POSTS


# --- item 11: Idempotency-Key ---------------------------------------------------------------------------


def test_same_key_and_body_replays_the_first_answer_and_stores_nothing_again(serve):
    """A retry with the same Idempotency-Key and body gets the first answer again (same JSON,
    Idempotent-Replayed: true) and stores nothing: for a flat series, an overlapping series without
    known_time (still one batch) and a PUT correction (still one correction row)."""
    server = serve()
    with server.client() as c:
        flat, fc = new_series(c, "meter"), new_series(c, "forecast", overlapping=True)
        cases = [
            ("POST", {"series_id": flat, "data": points(5, 1.0)}),
            ("POST", {"series_id": fc, "data": points(5, 2.0)}),
            (
                "PUT",
                {"updates": [{"series_id": flat, "valid_time": T0.isoformat(), "value": 9.0, "annotation": "fixed"}]},
            ),
        ]
        firsts = []
        for method, body in cases:
            key = str(uuid.uuid4())
            first = send(c, method, body, key)
            assert first.status_code == 200, first.text
            assert REPLAYED not in first.headers
            firsts.append(first.json())
            for _ in range(2):
                again = send(c, method, body, key)
                assert again.status_code == 200, again.text
                assert again.headers.get(REPLAYED) == "true", (method, dict(again.headers))
                assert again.json() == first.json()
        rows = audit(c, flat)
    assert [r["value"] for r in rows] == [1.0] * 5 + [9.0]  # the points once, the correction once
    assert rows[-1]["annotation"] == "fixed"
    assert flat_rows(server.dsn, flat) == 6
    assert batches(server.dsn, fc) == [(firsts[1]["batch_id"], 5)]


def test_same_key_with_another_body_method_or_path_is_422_and_stores_nothing(serve):
    """An Idempotency-Key reused for a different request is a 422 idempotency-key-reused problem
    and stores nothing: another body on POST, and a PUT (another method) with a POST's key."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "meter")
        key = str(uuid.uuid4())
        assert send(c, "POST", {"series_id": sid, "data": points(3, 1.0)}, key).status_code == 200
        other = send(c, "POST", {"series_id": sid, "data": points(3, 2.0)}, key)
        assert_problem(other, 422, "/problems/idempotency-key-reused")
        put = send(c, "PUT", {"updates": [{"series_id": sid, "valid_time": T0.isoformat(), "value": 5.0}]}, key)
        assert_problem(put, 422, "/problems/idempotency-key-reused")
        rows = audit(c, sid)
    assert [r["value"] for r in rows] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_concurrent_requests_with_one_key_store_once(serve, overlapping):
    """8 requests with the same Idempotency-Key and body at once: exactly one is executed (the
    points stored once; overlapping: one batch), the 7 others get its answer replayed."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "target", overlapping)
    body, key = {"series_id": sid, "data": points(50, 3.0)}, str(uuid.uuid4())

    def post(_: int) -> httpx.Response:
        with server.client() as c:
            return send(c, "POST", body, key)

    answers = in_threads(8, post)
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert sorted(a.headers.get(REPLAYED, "") for a in answers) == [""] + ["true"] * 7
    assert all(a.json() == answers[0].json() for a in answers)
    if overlapping:
        assert batches(server.dsn, sid) == [(answers[0].json()["batch_id"], 50)]
    else:
        assert flat_rows(server.dsn, sid) == 50


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_retry_after_a_lost_answer_stores_once(serve, overlapping):
    """A POST that committed but whose 200 the client never read (raw socket closed unread) is
    retried with the same Idempotency-Key: the retry gets the stored answer, nothing is stored
    twice (flat: the points once; overlapping without known_time: one batch)."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "target", overlapping)
    body, key = {"series_id": sid, "data": points(20, 4.0)}, str(uuid.uuid4())
    content = encoded(body)
    port = int(server.url.rsplit(":", 1)[1])
    head = (
        f"POST /values HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(content)}\r\n{KEY}: {key}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + content)
        # the write committed; the answer waits unread in the socket and is dropped with it
        wait_until(
            lambda: flat_rows(server.dsn, sid) == 20 or sum(n for _, n in batches(server.dsn, sid)) == 20, timeout=30
        )
    with server.client() as c:
        retry = send(c, "POST", body, key)
    assert retry.status_code == 200, retry.text
    assert retry.headers.get(REPLAYED) == "true"
    if overlapping:
        stored = batches(server.dsn, sid)
        assert stored == [(stored[0][0], 20)]
        assert retry.json() == {"batch_id": stored[0][0], "series_id": sid, "rows_inserted": 20}
    else:
        assert flat_rows(server.dsn, sid) == 20
        assert retry.json() == {"batch_id": None, "series_id": sid, "rows_inserted": 20}


def test_failed_request_keeps_no_key(serve):
    """A request that failed (404 unknown series, 409 version conflict) stores no key: once the
    cause is gone, the same key and body are executed (and then replayed)."""
    server = serve()
    name, key404, key409 = f"later-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), str(uuid.uuid4())
    by_name = {"name": name, "data": points(3, 1.0)}
    with server.client() as c:
        assert_problem(send(c, "POST", by_name, key404), 404)
        resp = c.post("/series", json={"name": name, "unit": "MW"})
        assert resp.status_code == 200, resp.text
        sid = resp.json()["series_id"]
        assert send(c, "POST", by_name, key404).status_code == 200
        assert send(c, "POST", by_name, key404).headers.get(REPLAYED) == "true"
        assert flat_rows(server.dsn, sid) == 3

        fc = new_series(c, "forecast", overlapping=True)
        taken = send(c, "POST", {"series_id": fc, "known_time": KT, "data": points(2, 1.0)})
        assert taken.status_code == 200, taken.text
        clash = {"series_id": fc, "known_time": KT, "data": points(2, 2.0)}
        assert_problem(send(c, "POST", clash, key409), 409)
        # remove the version it clashed with (test setup, directly in the database)
        execute(
            server.dsn,
            "WITH o AS (DELETE FROM overlapping WHERE batch_id = %(b)s RETURNING 1) "
            "DELETE FROM batches_table WHERE batch_id = %(b)s",
            {"b": taken.json()["batch_id"]},
        )
        done = send(c, "POST", clash, key409)
        assert done.status_code == 200, done.text
        assert REPLAYED not in done.headers
        assert send(c, "POST", clash, key409).headers.get(REPLAYED) == "true"
        assert batches(server.dsn, fc) == [(done.json()["batch_id"], 2)]
    stored = query(
        server.dsn, "SELECT key, status FROM idempotency_keys WHERE key = ANY(%s) ORDER BY key", ([key404, key409],)
    )
    assert stored == sorted([(key404, 200), (key409, 200)])


def test_key_expires_after_the_ttl(serve):
    """With TIMEDB_IDEMPOTENCY_TTL=1 a retry after 2 s is executed again (stored a second time)
    and takes the key over; within the TTL it is replayed."""
    server = serve(TIMEDB_IDEMPOTENCY_TTL="1")
    with server.client() as c:
        sid = new_series(c, "meter")
        body, key = {"series_id": sid, "data": points(2, 1.0)}, str(uuid.uuid4())
        t0 = time.monotonic()
        assert send(c, "POST", body, key).status_code == 200
        replay = send(c, "POST", body, key)
        if time.monotonic() - t0 < 0.9:  # still within the TTL (not asserted on a stalled machine)
            assert replay.headers.get(REPLAYED) == "true"
            assert flat_rows(server.dsn, sid) == 2
        time.sleep(2)
        again = send(c, "POST", body, key)
        assert again.status_code == 200, again.text
        assert REPLAYED not in again.headers
        t1 = time.monotonic()
        taken_over = send(c, "POST", body, key)
        if time.monotonic() - t1 < 0.9:  # the key now holds the new answer
            assert taken_over.headers.get(REPLAYED) == "true"
        executed = sum(REPLAYED not in r.headers for r in (replay, again, taken_over))
        assert flat_rows(server.dsn, sid) == 2 * (1 + executed)


def test_invalid_keys_are_400_and_store_nothing(serve):
    """An Idempotency-Key that is empty, longer than 255 characters, or holds a space or a
    non-ASCII character is a 400 and stores nothing; 255 printable ASCII characters are fine."""
    server = serve()
    with server.client() as c:
        sid = new_series(c, "meter")
        body = {"series_id": sid, "data": points(2, 1.0)}
        for key in ["", "k" * 256, "a b", "cl\u00e9".encode()]:
            resp = send(c, "POST", body, key)
            assert_problem(resp, 400)
            put = send(c, "PUT", {"updates": [{"series_id": sid, "valid_time": T0.isoformat(), "value": 2.0}]}, key)
            assert_problem(put, 400)
        assert flat_rows(server.dsn, sid) == 0
        longest = "!" + "k" * 253 + "~"
        assert send(c, "POST", body, longest).status_code == 200
        assert send(c, "POST", body, longest).headers.get(REPLAYED) == "true"
    assert flat_rows(server.dsn, sid) == 2


# --- item 15: serialization failures and deadlocks: bounded retries, then 503 ---------------------------


@pytest.fixture
def app_client(make_database) -> Iterator[tuple[str, Any]]:
    """The real app in-process (Connexion's test client) on a fresh database; yields (dsn, client)."""
    from timedb.app import create_app
    from timedb.settings import Settings

    dsn = make_database()
    with create_app(Settings(dsn=dsn, validate_responses=True)).test_client(**LOCAL) as client:
        yield dsn, client


def inject_failures(dsn: str, times: int, errcode: str) -> None:
    """Make the first `times` INSERT statements on flat fail with this SQLSTATE (a sequence
    counts them: it is not rolled back with the failed transaction)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE fail_seq")
        conn.execute(f"""
            CREATE FUNCTION fail_first() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('fail_seq') <= {int(times)} THEN
                    RAISE EXCEPTION 'injected' USING ERRCODE = '{errcode}';
                END IF;
                RETURN NULL;
            END $$""")
        conn.execute("CREATE TRIGGER fail_first BEFORE INSERT ON flat FOR EACH STATEMENT EXECUTE FUNCTION fail_first()")


def attempts(dsn: str) -> int:
    return int(scalar(dsn, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fail_seq"))


def seeded_meter(dsn: str, client: Any) -> int:
    """A flat series with one point (value 1 at T0), written before any failure is injected."""
    resp = client.post("/series", json={"name": "meter", "unit": "MW"})
    assert resp.status_code == 200, resp.text
    sid = int(resp.json()["series_id"])
    resp = client.post("/values", json={"series_id": sid, "data": points(1, 1.0)})
    assert resp.status_code == 200, resp.text
    return sid


def write_request(method: str, sid: int) -> dict[str, Any]:
    if method == "POST":
        return {"series_id": sid, "data": points(4, 7.0, T0 + timedelta(days=1))}
    return {"updates": [{"series_id": sid, "valid_time": T0.isoformat(), "value": 7.0}]}


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("errcode", ["serialization_failure", "deadlock_detected"])
def test_transient_failures_are_retried(app_client, errcode, method):
    """Two serialization failures (or deadlocks) in a row are retried: the third attempt
    succeeds with 200 and the write is stored exactly once."""
    dsn, client = app_client
    sid = seeded_meter(dsn, client)
    inject_failures(dsn, 2, errcode)
    resp = client.request(method, "/values", json=write_request(method, sid))
    assert resp.status_code == 200, resp.text
    assert attempts(dsn) == 3
    stored = query(dsn, "SELECT value, count(*) FROM flat WHERE series_id = %s GROUP BY 1 ORDER BY 1", (sid,))
    assert stored == [(1.0, 1), (7.0, 4 if method == "POST" else 1)]


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("errcode", ["serialization_failure", "deadlock_detected"])
def test_persistent_failures_give_up_after_three_attempts(app_client, errcode, method):
    """A write that meets a serialization failure (or deadlock) on every attempt is tried exactly
    3 times, then answered 503 concurrent-change with Retry-After; nothing is stored, and its
    Idempotency-Key stays free: once the cause is gone the same key is executed."""
    dsn, client = app_client
    sid = seeded_meter(dsn, client)
    inject_failures(dsn, 10, errcode)
    body, key = write_request(method, sid), str(uuid.uuid4())
    resp = client.request(
        method, "/values", content=encoded(body), headers={"content-type": "application/json", KEY: key}
    )
    assert_problem(resp, 503, "/problems/concurrent-change")
    assert int(resp.headers["Retry-After"]) >= 1
    assert attempts(dsn) == 3
    assert query(dsn, "SELECT value, count(*) FROM flat WHERE series_id = %s GROUP BY 1", (sid,)) == [(1.0, 1)]
    execute(dsn, "DROP TRIGGER fail_first ON flat")
    resp = client.request(
        method, "/values", content=encoded(body), headers={"content-type": "application/json", KEY: key}
    )
    assert resp.status_code == 200, resp.text
    assert REPLAYED not in resp.headers


# --- held: kill -9 of the server under concurrent writes -------------------------------------------------

KILL_POINTS = 2000
KILL_WRITERS = 4  # even: overlapping series, odd: flat series
KT0 = datetime(2024, 1, 1, tzinfo=UTC)


def kill_round(server: Server, fc: int, meter: int, round_: int) -> tuple[dict[int, int | None], int]:
    """Writers post 2,000-point requests until the server is killed with SIGKILL (after >= 1 s and
    some answers); returns {tag: status (None: no answer)} and how many requests were cut."""
    outcome: dict[int, int | None] = {}
    lock, stop = threading.Lock(), threading.Event()

    def writer(w: int) -> None:
        with server.client(timeout=30) as c:
            for j in range(500):  # bounded; the kill ends it long before
                if stop.is_set():
                    return
                tag = round_ * 100_000 + w * 1000 + j  # known_time offset (s) or flat value
                if w % 2 == 0:
                    body = {
                        "series_id": fc,
                        "known_time": (KT0 + timedelta(seconds=tag)).isoformat(),
                        "data": points(KILL_POINTS, float(tag)),
                    }
                else:
                    body = {"series_id": meter, "data": points(KILL_POINTS, float(tag))}
                with lock:
                    outcome[tag] = None
                try:
                    status: int | None = c.post("/values", json=body).status_code
                except httpx.HTTPError:
                    status = None
                with lock:
                    outcome[tag] = status
                if status is None:
                    return

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(KILL_WRITERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # every writer had a request acknowledged before the kill
    wait_until(
        lambda: {tag // 1000 % 100 for tag, s in dict(outcome).items() if s == 200} == set(range(KILL_WRITERS)),
        timeout=60,
    )
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    server.stop(signal.SIGKILL, timeout=10)
    stop.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "writer threads still running after the kill"
    with lock:
        return dict(outcome), sum(s is None for s in outcome.values())


def check_whole(dsn: str, fc: int, meter: int, outcome: dict[int, int | None]) -> None:
    """Every acknowledged request fully stored, every other one completely or not at all, no
    orphan batch (a batch without its points) and no point without its batch."""
    stored: dict[int, int] = {}
    for known_time, n_batches, rows in query(
        dsn,
        "SELECT b.known_time, count(DISTINCT b.batch_id), count(o.batch_id) FROM batches_table b "
        "LEFT JOIN overlapping o ON o.batch_id = b.batch_id WHERE b.series_id = %s GROUP BY 1",
        (fc,),
    ):
        assert (n_batches, rows) == (1, KILL_POINTS), (
            f"known_time {known_time}: {n_batches} batch(es) holding {rows} rows (orphan or partial batch)"
        )
        stored[int((known_time - KT0).total_seconds())] = rows
    assert (
        scalar(
            dsn,
            "SELECT count(*) FROM overlapping o WHERE NOT EXISTS "
            "(SELECT 1 FROM batches_table b WHERE b.batch_id = o.batch_id)",
        )
        == 0
    )
    for value, rows in query(dsn, "SELECT value, count(*) FROM flat WHERE series_id = %s GROUP BY 1", (meter,)):
        stored[int(value)] = rows
    assert set(stored) <= set(outcome), "rows of a request never sent"
    for tag, status in outcome.items():
        if status == 200:
            assert stored.get(tag) == KILL_POINTS, f"acknowledged request {tag}: {stored.get(tag, 0)} rows"
        else:
            assert status is None, f"request {tag} answered {status} before the kill"
            assert stored.get(tag, 0) in (0, KILL_POINTS), f"cut request {tag}: {stored[tag]} rows"


def test_kill9_under_concurrent_writes_leaves_every_write_whole(serve):
    """Twice: writers post 2,000-point batches (overlapping series with distinct explicit
    known_times, and a flat series) until the server is killed with SIGKILL after ~1 s. In the
    database every acknowledged request is fully stored, every cut one completely or not at all,
    no batch lacks its points; a server started again on the same database serves reads and
    writes."""
    server = serve()
    with server.client() as c:
        fc, meter = new_series(c, "kill-fc", overlapping=True), new_series(c, "kill-meter")
    outcome: dict[int, int | None] = {}
    for round_ in range(2):
        got, _cut = kill_round(server, fc, meter, round_)
        outcome.update(got)
        # the killed server's sessions end (their open transactions roll back) before the checks
        wait_until(lambda: not backends(server.dsn), timeout=30)
        check_whole(server.dsn, fc, meter, outcome)
        server = serve(dsn=server.dsn)
    assert sum(s == 200 for s in outcome.values()) >= 2 * KILL_WRITERS

    with server.client() as c:
        resp = c.post("/values", json={"series_id": fc, "known_time": KT, "data": points(3, 5.0)})
        assert resp.status_code == 200, resp.text
        latest = c.get("/values", params={"series_id": meter})
        assert latest.status_code == 200, latest.text
        assert latest.json()["count"] == KILL_POINTS
        assert c.get("/readyz").status_code == 200
