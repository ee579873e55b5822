"""Access tokens (issue 11): modes, scopes, 401/403 problems, revocation and expiry at once,
the `timedb tokens` commands. Each module-scoped app runs on a database of its own, so the
tokens made here never reach the other tests' database."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LOCAL, assert_problem, empty_tables, table_rows
from tests.processes import server_env, start_server, stop_process
from timedb.app import create_app
from timedb.db import tokens as store
from timedb.db.commands import using
from timedb.settings import Settings

REMOTE = ("203.0.113.7", 40000)  # a documentation address: not this machine
SECRET = re.compile(r"^tdb_[A-Za-z0-9_-]{43}$")
TABLES_WRITTEN = ("series_table", "batches_table", "flat", "overlapping")
PUBLIC = ["/", "/healthz", "/readyz", "/openapi.json", "/docs/", "/redoc", "/ui/", "/ui/main.js"]


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "timedb", "tokens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(dsn),
    )


def make_token(dsn: str, name: str, scope: str, labels: dict[str, str] | None = None) -> str:
    return using(dsn, lambda c: store.create(c, name, scope, labels or {}, None))


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> float:
    """Seconds until check() holds (bounded); fails the test after `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def auto_dsn(make_database) -> str:
    return make_database()


@pytest.fixture(scope="module")
def clients(auto_dsn: str) -> Iterator[dict[str, Any]]:
    """Clients of one app with TIMEDB_AUTH unset: from this machine and from elsewhere."""
    app = create_app(Settings(dsn=auto_dsn, validate_responses=True))
    with app.test_client(**LOCAL) as local, app.test_client(client=REMOTE) as remote:
        yield {"local": local, "remote": remote}


@pytest.fixture
def no_tokens(auto_dsn: str, clients: dict[str, Any]) -> dict[str, Any]:
    empty_tables(auto_dsn)
    eventually(lambda: clients["remote"].get("/series/count").status_code == 403)
    return clients


# ----------------------------------------------------------------------------- modes


def test_without_tokens_only_this_machine_is_served(no_tokens):
    assert no_tokens["local"].get("/series/count").json() == {"count": 0}
    assert no_tokens["local"].post("/series", json={"name": "a"}).status_code == 200
    resp = no_tokens["remote"].get("/series/count")
    problem = assert_problem(resp, 403, "/problems/forbidden")
    assert "timedb tokens create" in problem["detail"] and "loopback" in problem["detail"]
    assert no_tokens["remote"].post("/series", json={"name": "b"}).status_code == 403
    assert no_tokens["local"].get("/series/count").json() == {"count": 1}  # the refused write changed nothing


@pytest.mark.grid
@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("[::1]:8000", True),
        ("api.localhost", True),
        ("evil.example.com", False),
        ("evil.example.com:8000", False),
        ("10.0.0.5", False),
        ("", False),
    ],
)
def test_local_requests_must_name_this_machine(no_tokens, host, served):
    """DNS rebinding: a page of another site, resolved to 127.0.0.1, sends its own name as Host.
    While no token exists only requests that name this machine are served."""
    resp = no_tokens["local"].get("/series/count", headers={"Host": host})
    if served:
        assert resp.json() == {"count": 0}
    else:
        problem = assert_problem(resp, 403, "/problems/forbidden")
        assert "Host" in problem["detail"] and "timedb tokens create" in problem["detail"]


@pytest.mark.parametrize("path", PUBLIC)
def test_public_pages_stay_public(no_tokens, auto_dsn, path):
    assert no_tokens["remote"].get(path).status_code == 200
    make_token(auto_dsn, "t", "read")
    eventually(lambda: no_tokens["local"].get("/series/count").status_code == 401)
    assert no_tokens["remote"].get(path).status_code == 200
    assert no_tokens["local"].get(path).status_code == 200


def test_once_a_token_exists_every_client_needs_one(no_tokens, auto_dsn):
    secret = make_token(auto_dsn, "first", "read")
    eventually(lambda: no_tokens["local"].get("/series/count").status_code == 401)
    for who in ("local", "remote"):
        resp = no_tokens[who].get("/series/count")
        problem = assert_problem(resp, 401, "/problems/unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in problem["detail"]
        assert no_tokens[who].get("/series/count", headers=bearer(secret)).json() == {"count": 0}


def test_tokens_mode_needs_a_token_even_before_one_exists(make_database):
    dsn = make_database()
    with create_app(Settings(dsn=dsn, auth="tokens")).test_client(**LOCAL) as c:
        assert_problem(c.get("/series/count"), 401, "/problems/unauthorized")
        assert c.get("/healthz").status_code == 200
        secret = make_token(dsn, "ci", "read")
        eventually(lambda: c.get("/series/count", headers=bearer(secret)).status_code == 200)


def test_none_mode_serves_everyone_and_ignores_tokens(make_database):
    dsn = make_database()
    make_token(dsn, "unused", "read")
    with create_app(Settings(dsn=dsn, auth="none")).test_client(client=REMOTE) as c:
        assert c.get("/series/count").json() == {"count": 0}
        assert c.post("/series", json={"name": "x"}, headers=bearer("tdb_nonsense")).status_code == 200


def test_auth_mode_setting_is_checked():
    from timedb.errors import ConfigError

    assert Settings.from_env({"TIMEDB_DSN": "x"}).auth == "auto"
    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_AUTH": "Tokens"}).auth == "tokens"
    with pytest.raises(ConfigError, match="TIMEDB_AUTH"):
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_AUTH": "off"})


# ----------------------------------------------------------------------------- scopes and forms


@pytest.fixture
def scoped(no_tokens, auto_dsn) -> dict[str, Any]:
    secrets = {scope: make_token(auto_dsn, scope, scope) for scope in ("read", "write", "admin")}
    eventually(lambda: no_tokens["local"].get("/series/count", headers=bearer(secrets["read"])).status_code == 200)
    return {"client": no_tokens["remote"], **secrets}


READS = [
    ("GET", "/series", None),
    ("GET", "/series/count", None),
    ("GET", "/series/labels?label_key=site", None),
    ("GET", "/series/1", None),
    ("GET", "/values?series_id=1", None),
    ("POST", "/values/query", {"series": [{"series_id": 1}]}),
]
WRITES = [
    ("POST", "/series", {"name": "wind", "labels": {"site": "b"}}),
    ("POST", "/series/bulk", {"series": [{"name": "wind", "labels": {"site": "c"}}]}),
    ("PATCH", "/series/1", {"description": "changed"}),
    ("POST", "/values", {"series_id": 1, "data": [{"valid_time": "2025-01-01T00:00:00Z", "value": 1.0}]}),
    ("POST", "/values/bulk", {"rows": [{"series_id": 1, "valid_time": "2025-01-02T00:00:00Z", "value": 2.0}]}),
    ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01T00:00:00Z", "value": 3.0}]}),
]


def _call(client: Any, method: str, path: str, body: Any, secret: str | None) -> Any:
    return client.request(method, path, json=body, headers=bearer(secret) if secret else {})


@pytest.mark.parametrize("scope", ["read", "write", "admin"])
def test_each_scope_allows_what_it_names(scoped, scope):
    c = scoped["client"]
    assert _call(c, "POST", "/series", {"name": "wind", "labels": {"site": "a"}}, scoped["admin"]).status_code == 200
    for method, path, body in READS:
        assert _call(c, method, path, body, scoped[scope]).status_code == 200, (scope, method, path)
    for method, path, body in WRITES:
        resp = _call(c, method, path, body, scoped[scope])
        if scope == "read":
            problem = assert_problem(resp, 403, "/problems/forbidden")
            assert "write" in problem["detail"] and "'read'" in problem["detail"], problem
        else:
            assert resp.status_code == 200, (scope, method, path, resp.text)


def test_refused_writes_change_nothing(scoped, auto_dsn):
    c = scoped["client"]
    _call(c, "POST", "/series", {"name": "wind", "labels": {"site": "a"}}, scoped["admin"])
    before = table_rows(auto_dsn, TABLES_WRITTEN)
    for method, path, body in WRITES:
        for secret in (None, "tdb_" + "x" * 43, scoped["read"]):
            assert _call(c, method, path, body, secret).status_code in (401, 403)
    assert table_rows(auto_dsn, TABLES_WRITTEN) == before


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "tdb_abc", "Bearer tdb_unknown"])
def test_malformed_or_unknown_credentials_are_401(scoped, header):
    resp = scoped["client"].get("/series/count", headers={"Authorization": header})
    assert_problem(resp, 401, "/problems/unauthorized")
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="timedb"'


@pytest.mark.processes
def test_revoked_token_stops_at_once(scoped, auto_dsn):
    c = scoped["client"]
    assert c.get("/series/count", headers=bearer(scoped["write"])).status_code == 200
    done = cli(auto_dsn, "revoke", "write")
    assert done.returncode == 0, done.stderr
    eventually(lambda: c.get("/series/count", headers=bearer(scoped["write"])).status_code == 401)
    assert c.get("/series/count", headers=bearer(scoped["read"])).status_code == 200


def test_expired_token_stops_when_it_expires(no_tokens, auto_dsn):
    """An expiry needs no notification: each request compares it with the clock."""
    from datetime import UTC, datetime, timedelta

    c = no_tokens["remote"]
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    secret = using(auto_dsn, lambda conn: store.create(conn, "short", "read", {}, expires))
    eventually(lambda: c.get("/series/count", headers=bearer(secret)).status_code == 200)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_problem(c.get("/series/count", headers=bearer(secret)), 401, "/problems/unauthorized")


def test_revocation_holds_while_the_listener_reconnects(scoped, auto_dsn, caplog):
    """The listener's connection is killed and the token revoked while it is down: the revocation's
    notification is lost, yet the token stops working (requests ask the database until the
    listener is back, which reloads the tokens) and never works again."""
    c = scoped["client"]
    with psycopg.connect(auto_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'timedb-tokens' AND datname = current_database()"
        )
        eventually(lambda: "token listener" in caplog.text)  # (the server knows it is down)
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = 'admin'")
    # at once while the listener is down; within the notification's delay if it came back already
    eventually(lambda: c.get("/series/count", headers=bearer(scoped["admin"])).status_code == 401)
    for _ in range(50):
        assert c.get("/series/count", headers=bearer(scoped["admin"])).status_code == 401
        time.sleep(0.01)
    assert c.get("/series/count", headers=bearer(scoped["read"])).status_code == 200


# ----------------------------------------------------------------------------- the commands


@pytest.mark.processes
def test_cli_create_prints_only_the_secret(auto_dsn, no_tokens):
    done = cli(auto_dsn, "create", "ci", "--scope", "write", "--labels", '{"tenant": "acme"}', "--expires", "90d")
    assert done.returncode == 0, done.stderr
    assert SECRET.match(done.stdout.strip()) and done.stdout.count("\n") == 1
    assert "ci" in done.stderr and "shown only now" in done.stderr
    with psycopg.connect(auto_dsn) as conn:
        row = conn.execute("SELECT scope, labels, expires_at - created_at, secret_hash FROM api_tokens").fetchone()
        stored = conn.execute("SELECT api_tokens::text FROM api_tokens").fetchone()[0]
    assert row[:2] == ("write", {"tenant": "acme"})
    assert abs(row[2].total_seconds() - 90 * 86400) < 60
    assert bytes(row[3]) == store.digest(done.stdout.strip())
    assert done.stdout.strip() not in stored and done.stdout.strip()[4:] not in stored


@pytest.mark.processes
def test_cli_list_and_revoke(auto_dsn, no_tokens):
    cli(auto_dsn, "create", "alpha", "--scope", "read")
    cli(auto_dsn, "create", "beta", "--scope", "admin", "--labels", '{"tenant": "x"}')
    listed = cli(auto_dsn, "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "LABELS", "CREATED", "EXPIRES", "LAST", "USED"]
    assert [line.split()[:3] for line in lines[1:]] == [["alpha", "read", "-"], ["beta", "admin", '{"tenant":"x"}']]
    assert "tdb_" not in listed.stdout
    assert cli(auto_dsn, "revoke", "alpha").returncode == 0
    assert [r.split()[0] for r in cli(auto_dsn, "list").stdout.splitlines()[1:]] == ["beta"]
    everything = cli(auto_dsn, "list", "--all", "--json").stdout.splitlines()
    assert len(everything) == 2 and '"revoked_at":null' in everything[1] and '"revoked_at":null' not in everything[0]
    again = cli(auto_dsn, "create", "alpha", "--scope", "write")  # a revoked name can be used again
    assert again.returncode == 0, again.stderr


@pytest.mark.processes
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["revoke", "nobody"], 1, "No active token named 'nobody'"),
        (["create", "dup", "--scope", "read"], 1, "exists already"),
        (["create", "x", "--scope", "root"], 2, "--scope"),
        (["create", "x", "--scope", "read", "--labels", "[1]"], 2, "--labels"),
        (["create", "x", "--scope", "read", "--labels", '{"a": 1}'], 2, "--labels"),
        (["create", "x", "--scope", "read", "--expires", "soon"], 2, "--expires"),
        (["create", "x", "--scope", "read", "--expires", "2001-01-01"], 2, "future"),
        (["create", " ", "--scope", "read"], 1, "blank"),
    ],
)
def test_cli_errors_are_one_line(auto_dsn, no_tokens, args, code, message):
    cli(auto_dsn, "create", "dup", "--scope", "read")
    done = cli(auto_dsn, *args)
    assert done.returncode == code, done
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.processes
def test_cli_without_the_tokens_table_says_what_to_run(make_database):
    dsn = make_database(with_tables=False)
    done = cli(dsn, "list")
    assert done.returncode == 1 and "timedb create tables" in done.stderr, done


# ----------------------------------------------------------------------------- real servers


def _serve(dsn: str, *extra: str) -> tuple[Any, str]:
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0", *extra], server_env(dsn)
    )
    return proc, url


@pytest.mark.processes
def test_revocation_reaches_every_server_process(make_database):
    import httpx

    dsn = make_database()
    secret = make_token(dsn, "shared", "read")
    servers = [_serve(dsn) for _ in range(2)]
    try:
        for _, url in servers:
            eventually(lambda url=url: httpx.get(url + "/series/count", headers=bearer(secret)).status_code == 200)
        assert cli(dsn, "revoke", "shared").returncode == 0
        for _, url in servers:
            eventually(
                lambda url=url: httpx.get(url + "/series/count", headers=bearer(secret)).status_code == 401, seconds=1
            )
    finally:
        outputs = [stop_process(proc) for proc, _ in servers]
    assert not any("Traceback" in out for out in outputs), outputs


def test_a_client_behind_a_proxy_is_not_local(make_database):
    """Behind a reverse proxy on the same machine (uvicorn --proxy-headers), the client's own
    address counts: without tokens, a remote client is refused, a local one served."""
    import httpx

    dsn = make_database()
    proc, url = _serve(dsn, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    try:
        remote = httpx.get(url + "/series/count", headers={"X-Forwarded-For": "198.51.100.20"})
        assert remote.status_code == 403 and "timedb tokens create" in remote.json()["detail"]
        local = httpx.get(url + "/series/count", headers={"X-Forwarded-For": "127.0.0.1"})
        assert local.json() == {"count": 0}
    finally:
        stop_process(proc)


def test_last_use_is_recorded_without_a_write_per_request(make_database):
    import httpx

    dsn = make_database()
    secret = make_token(dsn, "used", "read")
    proc, url = _serve(dsn)
    try:
        eventually(lambda: httpx.get(url + "/series/count", headers=bearer(secret)).status_code == 200)
        with psycopg.connect(dsn) as conn:  # (recorded in batches, not by the request itself)
            assert conn.execute("SELECT last_used_at FROM api_tokens").fetchone() == (None,)
    finally:
        stop_process(proc)  # (a stopping server records what it has)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT last_used_at IS NOT NULL FROM api_tokens").fetchone() == (True,)


# ----------------------------------------------------------------------------- who wrote what


def test_batches_and_corrections_name_the_token(scoped):
    """inserted_by: the token of each batch (POST /values and POST /values/bulk), in audit
    reads; changed_by: the token's name, whatever a write token sends; an admin token may name
    someone else."""
    c = scoped["client"]
    sid = _call(c, "POST", "/series", {"name": "fc", "overlapping": True}, scoped["admin"]).json()["series_id"]
    first = {
        "series_id": sid,
        "known_time": "2025-01-01T00:00:00Z",
        "data": [{"valid_time": "2025-01-02T00:00:00Z", "value": 1.0}],
    }
    assert _call(c, "POST", "/values", first, scoped["write"]).status_code == 200
    second = {
        "rows": [
            {"series_id": sid, "valid_time": "2025-01-02T00:00:00Z", "value": 2.0, "known_time": "2025-01-01T06:00:00Z"}
        ]
    }
    assert _call(c, "POST", "/values/bulk", second, scoped["admin"]).status_code == 200
    fixes = [
        (
            {
                "series_id": sid,
                "valid_time": "2025-01-02T00:00:00Z",
                "known_time": "2025-01-01T00:00:00Z",
                "value": 1.5,
                "changed_by": "someone-else",
            },
            "write",
            "write",
        ),
        (
            {
                "series_id": sid,
                "valid_time": "2025-01-02T00:00:00Z",
                "known_time": "2025-01-01T06:00:00Z",
                "value": 2.5,
                "changed_by": "ops@example.com",
            },
            "admin",
            "ops@example.com",
        ),
        (
            {
                "series_id": sid,
                "valid_time": "2025-01-02T00:00:00Z",
                "known_time": "2025-01-01T06:00:00Z",
                "annotation": "checked",
            },
            "admin",
            "admin",
        ),
    ]
    for update, token, _ in fixes:
        assert _call(c, "PUT", "/values", {"updates": [update]}, scoped[token]).status_code == 200
    audit = _call(c, "GET", f"/values?series_id={sid}&include_updates=true", None, scoped["read"]).json()["data"]
    got = sorted((r["known_time"][11:16], r["change_time"], r["inserted_by"], r["changed_by"]) for r in audit)
    assert [(kt, by, changed) for kt, _, by, changed in got] == [
        ("00:00", "write", None),
        ("00:00", "write", "write"),
        ("06:00", "admin", None),
        ("06:00", "admin", "ops@example.com"),
        ("06:00", "admin", "admin"),
    ]


def test_without_a_token_nothing_is_named(no_tokens):
    c = no_tokens["local"]
    sid = c.post("/series", json={"name": "fc", "overlapping": True}).json()["series_id"]
    c.post("/values", json={"series_id": sid, "data": [{"valid_time": "2025-01-02T00:00:00Z", "value": 1.0}]})
    c.put(
        "/values",
        json={
            "updates": [
                {"series_id": sid, "valid_time": "2025-01-02T00:00:00Z", "value": 2.0, "changed_by": "me@example.com"}
            ]
        },
    )
    audit = c.get("/values", params={"series_id": sid, "include_updates": "true"}).json()["data"]
    assert sorted((r["inserted_by"], r["changed_by"] or "") for r in audit) == [(None, ""), (None, "me@example.com")]
