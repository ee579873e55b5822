"""Every operation x every kind of caller (issue 11): no token, a malformed, unknown, expired or
revoked one, read, write and admin tokens, and a token bound to another tenant. The server
requires tokens (TIMEDB_AUTH=tokens) and runs on a database of its own; series 1 belongs to
tenant acme. Expected answers are written out per (operation, caller), not derived from the
server's spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers import LOCAL
from timedb.app import create_app
from timedb.db import tokens as store
from timedb.db.commands import using
from timedb.settings import Settings

ACME = {"tenant": "acme"}
VT = "2025-01-02T00:00:00Z"
# (name, method, path, body, kind): kind says what a token of another tenant gets
OPERATIONS = [
    ("list", "GET", "/series", None, "empty-list"),
    ("count", "GET", "/series/count", None, "zero"),
    ("labels", "GET", "/series/labels?label_key=tenant", None, "no-values"),
    ("get", "GET", "/series/1", None, "404"),
    ("read", "GET", "/values?series_id=1", None, "404"),
    ("read-by-name", "GET", '/values?name=wind&labels={"tenant":"acme"}', None, "404"),
    ("query", "POST", "/values/query", {"series": [{"series_id": 1}]}, "404"),
    ("query-filter", "POST", "/values/query", {"filter": {"name": "wind"}}, "empty-query"),
    ("create", "POST", "/series", {"name": "wind", "labels": ACME}, "403"),
    ("bulk-create", "POST", "/series/bulk", {"series": [{"name": "wind", "labels": ACME}]}, "403"),
    ("patch", "PATCH", "/series/1", {"description": "checked"}, "404"),
    ("insert", "POST", "/values", {"series_id": 1, "data": [{"valid_time": VT, "value": 1.0}]}, "404"),
    ("bulk-insert", "POST", "/values/bulk", {"rows": [{"series_id": 1, "valid_time": VT, "value": 2.0}]}, "404"),
    ("correct", "PUT", "/values", {"updates": [{"series_id": 1, "valid_time": VT, "value": 3.0}]}, "404"),
]
READS = {"list", "count", "labels", "get", "read", "read-by-name", "query", "query-filter"}
CALLERS = ["none", "malformed", "unknown", "expired", "revoked", "read", "write", "admin", "other-tenant"]


@pytest.fixture(scope="module")
def server(make_database) -> Any:
    dsn = make_database()
    past = datetime.now(UTC) - timedelta(hours=1)

    def tokens(conn: psycopg.Connection) -> dict[str, str]:
        made = {scope: store.create(conn, scope, scope, {}, None) for scope in ("read", "write", "admin")}
        made["other-tenant"] = store.create(conn, "other", "admin", {"tenant": "other"}, None)
        made["expired"] = store.create(conn, "expired", "admin", {}, past)
        made["revoked"] = store.create(conn, "revoked", "admin", {}, None)
        store.revoke(conn, "revoked")
        return made

    secrets = using(dsn, tokens)
    app = create_app(Settings(dsn=dsn, validate_responses=True, auth="tokens"))
    with app.test_client(**LOCAL) as client:
        resp = client.post(
            "/series", json={"name": "wind", "labels": ACME}, headers={"Authorization": f"Bearer {secrets['admin']}"}
        )
        assert resp.json()["series_id"] == 1, resp.text
        yield client, secrets


def headers(caller: str, secrets: dict[str, str]) -> dict[str, str]:
    if caller == "none":
        return {}
    if caller == "malformed":
        return {"Authorization": f"Token {secrets['admin']}"}
    if caller == "unknown":
        return {"Authorization": "Bearer tdb_" + "A" * 43}
    return {"Authorization": f"Bearer {secrets[caller]}"}


def expected(op: str, kind: str, caller: str) -> tuple[int, Any]:
    """(status, what the body must show: None, or a check on the JSON)."""
    if caller in ("none", "malformed", "unknown", "expired", "revoked"):
        return 401, None
    if caller == "read" and op not in READS:
        return 403, None
    if caller != "other-tenant":
        return 200, None
    return {
        "empty-list": (200, []),
        "zero": (200, {"count": 0}),
        "no-values": (200, {"label_key": "tenant", "values": []}),
        "empty-query": (200, "no-series"),
        "404": (404, None),
        "403": (403, None),
    }[kind]


@pytest.mark.grid
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("op", "method", "path", "body", "kind"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_every_operation_for_every_caller(server, op, method, path, body, kind, caller):
    client, secrets = server
    resp = client.request(method, path, json=body, headers=headers(caller, secrets))
    status, shown = expected(op, kind, caller)
    assert resp.status_code == status, (op, caller, resp.text)
    if status >= 400:
        problem = resp.json()
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == status and problem["type"].startswith("/problems/")
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    elif shown == "no-series":
        assert resp.json()["series"] == [] and resp.json()["data"] == []
    elif shown is not None:
        assert resp.json() == shown


def test_another_tenant_sees_what_a_missing_series_shows(server):
    """A 404 for tenant acme's series 1 is word for word the 404 of a series that does not exist."""
    client, secrets = server
    other = headers("other-tenant", secrets)
    for path, there, nowhere in (
        ("/series/{}", "1", "999"),
        ("/values?series_id={}", "1", "999"),
        ('/values?name={}&labels={{"tenant":"acme"}}', "wind", "calm"),
        ("/values?name={}", "wind", "calm"),
    ):
        hidden = client.get(path.format(there), headers=other).json()
        missing = client.get(path.format(nowhere), headers=other).json()
        assert hidden["status"] == missing["status"] == 404
        assert hidden == {**missing, "detail": missing["detail"].replace(nowhere, there)}
