"""The error contract across the API: problem+json for every failure, no internals leaked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import LOCAL, assert_problem, make_series
from timedb.app import create_app
from timedb.settings import Settings

JSON = {"Content-Type": "application/json"}
POINT = {"valid_time": "2025-01-01T00:00:00Z", "value": 1.0}
BODY_ENDPOINTS = [
    ("POST", "/series", {"name": "a"}),
    ("POST", "/values", {"series_id": 1, "data": [POINT]}),
    ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01T00:00:00Z", "value": 2.0}]}),
]
BODY_IDS = [f"{m} {p}" for m, p, _ in BODY_ENDPOINTS]
LEAKS = (
    "fatal",
    "sqlstate",
    "does not exist",
    "series_table",
    "timedb_test_",
    "connection to server",
    "operationalerror",
    "pool",
    "127.0.0.1",
    "postgres",
)


def assert_no_leak(resp: Any) -> None:
    text = resp.text.lower()
    for leak in LEAKS:
        assert leak not in text, resp.text


def dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


# ------------------------------------------------------------------ bodies


@pytest.mark.grid
@pytest.mark.parametrize(
    "raw",
    [b"{bad", b'{"name": "a",}', b"[", b"{'name': 'a'}", b'{"name": "a"} x', b'{"name": "a\\x"}'],
    ids=["bad", "trailing-comma", "bracket", "single-quotes", "trailing-garbage", "bad-escape"],
)
@pytest.mark.parametrize(("method", "path", "_body"), BODY_ENDPOINTS, ids=BODY_IDS)
def test_malformed_json_is_400(client, method, path, _body, raw):
    assert_problem(client.request(method, path, content=raw, headers=JSON), 400)


@pytest.mark.parametrize(("method", "path", "_body"), BODY_ENDPOINTS, ids=BODY_IDS)
def test_non_utf8_body_is_400(client, method, path, _body):
    resp = client.request(method, path, content=b'{"name": "\xff\xfe"}', headers=JSON)
    assert_problem(resp, 400)


@pytest.mark.grid
@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"\n", b"null", b"[]", b'"x"', b"1"],
    ids=["empty", "spaces", "newline", "null", "array", "string", "number"],
)
@pytest.mark.parametrize(("method", "path", "_body"), BODY_ENDPOINTS, ids=BODY_IDS)
def test_empty_or_non_object_body_is_400(client, method, path, _body, raw):
    assert_problem(client.request(method, path, content=raw, headers=JSON), 400)


@pytest.mark.parametrize(("method", "path", "_body"), BODY_ENDPOINTS, ids=BODY_IDS)
def test_missing_body_is_400(client, method, path, _body):
    assert_problem(client.request(method, path), 400)


@pytest.mark.grid
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize(("method", "path", "body"), BODY_ENDPOINTS, ids=BODY_IDS)
def test_wrong_content_type_is_415(client, method, path, body, content_type):
    resp = client.request(method, path, content=json.dumps(body), headers={"Content-Type": content_type})
    assert_problem(resp, 415)


def test_json_with_charset_is_accepted(client):
    resp = client.post(
        "/series", content=json.dumps({"name": "a"}), headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert resp.status_code == 200, resp.text


def test_non_finite_number_is_422(client):
    sid = make_series(client, name="a")
    for raw in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = json.dumps({"series_id": sid, "data": [{"valid_time": "2025-01-01", "value": "V"}]})
        body = body.replace('"V"', raw)
        assert_problem(client.post("/values", content=body, headers=JSON), 422)


# ------------------------------------------------------ the validator validates


@pytest.mark.grid
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/values", {"series_id": 1, "data": [{**POINT, "extra": 1}]}),
        ("POST", "/values", {"series_id": 1, "data": [{**POINT, "value": "1.0"}]}),
        ("POST", "/values", {"series_id": 1, "data": [{"valid_time": "yesterday", "value": 1.0}]}),
        ("POST", "/values", {"series_id": 1, "data": [{"value": 1.0}]}),
        ("POST", "/values", {"series_id": 1, "data": []}),
        ("POST", "/values", {"series_id": "1", "data": [POINT]}),
        ("POST", "/values", {"series_id": 0, "data": [POINT]}),
        ("POST", "/values", {"series_id": 1, "data": [POINT], "bogus": True}),
        ("POST", "/values", {"series_id": 1, "data": [POINT], "labels": {"site": 1}}),
        ("POST", "/values", {"series_id": 1}),
        ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "value": "x"}]}),
        ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "bogus": 1}]}),
        ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "tags": "a"}]}),
        ("PUT", "/values", {"updates": []}),
        ("PUT", "/values", {"update": [{"series_id": 1, "valid_time": "2025-01-01"}]}),
        ("POST", "/series", {"name": "a", "labels": {"site": 1}}),
        ("POST", "/series", {"name": "a", "bogus": 1}),
    ],
    ids=lambda v: json.dumps(v)[:70] if isinstance(v, dict) else v,
)
def test_invalid_bodies_are_rejected(client, method, path, body):
    sid = make_series(client, name="target")
    assert sid == 1
    assert_problem(client.request(method, path, json=body), 400)
    # nothing was written
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0
    assert client.get("/series/count").json() == {"count": 1}


def test_invalid_body_with_charset_content_type_is_rejected(client):
    resp = client.post(
        "/series",
        content=json.dumps({"name": "a", "bogus": 1}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert_problem(resp, 400)


def test_nullable_fields_pass_the_validator(client):
    sid = make_series(client, name="a")
    body = {
        "series_id": sid,
        "name": None,
        "known_time": None,
        "batch_params": None,
        "data": [{"valid_time": "2025-01-01T00:00:00Z", "valid_time_end": None, "value": None}],
    }
    resp = client.post("/values", json=body)
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------ routing and parameters


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("GET", "/series/nope"), ("POST", "/nope"), ("GET", "/values/1")]
)
def test_unknown_path_is_404_problem(client, method, path):
    assert_problem(client.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/values", {"GET", "POST", "PUT"}),
        ("PATCH", "/values", {"GET", "POST", "PUT"}),
        ("DELETE", "/series", {"GET", "POST"}),
        ("PUT", "/series", {"GET", "POST"}),
        ("POST", "/series/count", {"GET"}),
        ("DELETE", "/series/labels", {"GET"}),
        ("POST", "/healthz", {"GET"}),
        ("PUT", "/", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    resp = client.request(method, path)
    assert_problem(resp, 405)
    assert "allow" in resp.headers, resp.headers
    listed = {m.strip().upper() for m in resp.headers["allow"].split(",")}
    assert allowed <= listed, resp.headers["allow"]
    assert method not in listed


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/series", {"bogus": "1"}),
        ("/series", {"name": "a", "Name": "a"}),
        ("/series/count", {"limit": "1"}),
        ("/series/count", {"cursor": "x"}),
        ("/series/labels", {"label_key": "site", "limit": "1"}),
        ("/values", {"series_id": "1", "bogus": "1"}),
        ("/", {"x": "1"}),
    ],
)
def test_unknown_query_parameter_is_400(client, path, params):
    make_series(client, name="a")
    assert_problem(client.get(path, params=params), 400)


def test_unknown_query_parameter_on_post_is_400(client):
    assert_problem(client.post("/series", params={"x": "1"}, json={"name": "a"}), 400)
    assert client.get("/series/count").json() == {"count": 0}


def test_live_server_speaks_problem_json(live):
    """The same contract over real HTTP (uvicorn), not only the in-process client."""
    assert_problem(live.get("/nope"), 404)
    assert_problem(live.post("/series", content=b"{bad", headers=JSON), 400)
    assert_problem(live.post("/series", content=b'{"name":"a"}', headers={"Content-Type": "text/plain"}), 415)
    assert_problem(live.request("DELETE", "/values"), 405)


# ------------------------------------------------------------- chunked bodies


def _chunks(body: dict[str, Any]) -> Iterator[bytes]:
    raw = json.dumps(body).encode()
    for i in range(0, len(raw), 7):
        yield raw[i : i + 7]


def test_chunked_body_without_content_length_is_read(live):
    resp = live.post("/series", content=_chunks({"name": "chunky"}), headers=JSON)
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 200, resp.text
    assert live.get("/series/count").json() == {"count": 1}


def test_chunked_invalid_body_is_400(live):
    assert_problem(live.post("/series", content=_chunks({"name": "a", "bogus": 1}), headers=JSON), 400)


# ------------------------------------------------------------ body size limit


@pytest.fixture(scope="module")
def small_client(make_database) -> Iterator[Any]:
    app = create_app(Settings(dsn=make_database(), validate_responses=True, max_body_bytes=1000))
    with app.test_client(**LOCAL) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/series", {"name": "big", "description": "x" * 2000}),
        ("POST", "/values", {"series_id": 1, "data": [POINT] * 50}),
        ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "value": 1.0}] * 50}),
    ],
    ids=BODY_IDS,
)
def test_body_over_limit_is_413(small_client, method, path, body):
    before = small_client.get("/series/count").json()["count"]
    assert_problem(small_client.request(method, path, json=body), 413, "/problems/payload-too-large")
    assert small_client.get("/series/count").json()["count"] == before


def test_body_under_limit_is_accepted(small_client):
    resp = small_client.post("/series", json={"name": "small", "description": "x" * 900})
    assert resp.status_code == 200, resp.text


def test_chunked_body_over_limit_is_413(small_client):
    resp = small_client.post("/series", content=_chunks({"name": "big", "description": "x" * 5000}), headers=JSON)
    assert_problem(resp, 413, "/problems/payload-too-large")


# ---------------------------------------------------------------- schema missing


@pytest.fixture(scope="module")
def schemaless_client(make_database) -> Iterator[Any]:
    app = create_app(Settings(dsn=make_database(with_tables=False), validate_responses=True))
    with app.test_client(**LOCAL) as c:
        yield c


DB_REQUESTS = [
    ("GET", "/series", {}, None),
    ("GET", "/series/count", {}, None),
    ("GET", "/series/labels", {"label_key": "site"}, None),
    ("POST", "/series", {}, {"name": "a"}),
    ("GET", "/values", {"series_id": "1"}, None),
    ("POST", "/values", {}, {"series_id": 1, "data": [POINT]}),
    ("POST", "/values", {}, {"name": "a", "data": [POINT]}),
    ("PUT", "/values", {}, {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "value": 1.0}]}),
    ("GET", "/readyz", {}, None),
]
DB_IDS = [f"{m} {p} {json.dumps(b)[:30] if b else ''}".strip() for m, p, _, b in DB_REQUESTS]


def assert_unavailable(resp: Any, type_: str) -> dict[str, Any]:
    body = assert_problem(resp, 503, type_)
    assert int(resp.headers["retry-after"]) > 0
    assert_no_leak(resp)
    return body


@pytest.mark.grid
@pytest.mark.parametrize(("method", "path", "params", "body"), DB_REQUESTS, ids=DB_IDS)
def test_schema_missing_is_503(schemaless_client, method, path, params, body):
    resp = schemaless_client.request(method, path, params=params, json=body)
    problem = assert_unavailable(resp, "/problems/schema-missing")
    assert "timedb create tables" in problem["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/", "/openapi.json"])
def test_schema_missing_leaves_healthz_and_docs_up(schemaless_client, path):
    assert schemaless_client.get(path).status_code == 200


# ---------------------------------------------------------- database goes away


@pytest.fixture
def doomed(make_database, server_dsn) -> Iterator[tuple[Any, str]]:
    """A client on its own fresh database (which the test may destroy), short pool timeout."""
    dsn = make_database()
    app = create_app(Settings(dsn=dsn, validate_responses=True, pool_min_size=2, pool_max_size=3, pool_timeout=1.0))
    with app.test_client(**LOCAL) as c:
        assert c.get("/series").status_code == 200
        assert c.get("/readyz").status_code == 200
        yield c, dbname(dsn)


@pytest.mark.faults
def test_dropped_database_gives_503(doomed, server_dsn):
    client, name = doomed
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    # the first requests meet the pool's dead connections, later ones the failing reconnects
    for method, path, params, body in DB_REQUESTS * 2:
        start = time.monotonic()
        resp = client.request(method, path, params=params, json=body)
        assert_unavailable(resp, "/problems/service-unavailable")
        assert name not in resp.text
        assert time.monotonic() - start < 10, "a request hung instead of failing fast"
    assert client.get("/healthz").status_code == 200


@pytest.fixture
def survivor(make_database) -> Iterator[tuple[Any, str]]:
    """A client on its own fresh database with the default pool timeout (reconnects take time)."""
    dsn = make_database()
    app = create_app(Settings(dsn=dsn, validate_responses=True, pool_min_size=2, pool_max_size=3))
    with app.test_client(**LOCAL) as c:
        assert c.get("/series").status_code == 200
        yield c, dbname(dsn)


@pytest.mark.faults
def test_terminated_connections_are_replaced_transparently(survivor, server_dsn):
    """The database restarted (or killed idle sessions) but is up: requests must not fail."""
    # (with doomed's 1 s pool timeout a loaded machine may not reconnect in time: PoolTimeout)
    client, name = survivor
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        killed = conn.execute(
            # wait (up to 5 s) until each backend has exited: only then are its sockets closed
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()[0]
    assert killed >= 1
    time.sleep(0.2)
    statuses = []
    for _ in range(4):
        resp = client.get("/series")
        if resp.status_code != 200:
            assert_unavailable(resp, "/problems/service-unavailable")
        statuses.append(resp.status_code)
    assert statuses == [200] * 4
