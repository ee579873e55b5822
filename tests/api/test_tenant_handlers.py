"""Requests with a label scope (timedb.db.tenant) through the real handlers.

Access tokens set the scope in their security handler; here a tiny test-only middleware sets it
from an `X-Test-Scope` header instead, so the handlers and the data layer are tested without the
auth layer (off: TIMEDB_AUTH=none). A series outside the scope must answer exactly as if it did
not exist: each request is sent once before the hidden series is created (by another tenant) and
once after, and both answers must be equal, status, media type and body.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.helpers import LOCAL, assert_problem, make_partitions
from timedb.app import create_app
from timedb.db import tenant
from timedb.settings import Settings

ACME = {"tenant": "acme"}
OTHER = {"tenant": "other"}
AS_ACME = {"X-Test-Scope": json.dumps(ACME)}
AS_OTHER = {"X-Test-Scope": json.dumps(OTHER)}
VT = "2025-01-01T00:00:00+00:00"
FACTS = ("batches_table", "flat", "overlapping")


class ScopeFromHeader:
    """Set the request's label scope from X-Test-Scope (a JSON object), as a token would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = dict(scope["headers"]).get(b"x-test-scope")
            tenant.set_current(orjson.loads(raw) if raw else None)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def scoped_client(app_dsn: str) -> Iterator[Any]:
    app = create_app(Settings(dsn=app_dsn, validate_responses=True, auth="none"))
    app.add_middleware(ScopeFromHeader)  # innermost: after the security handler cleared the scope
    with app.test_client(**LOCAL) as c:
        yield c


@pytest.fixture
def client(scoped_client: Any, clean_db: str) -> Any:
    return scoped_client


def create(
    client: Any, name: str, labels: dict[str, str], overlapping: bool = False, headers: dict[str, str] | None = None
) -> int:
    resp = client.post(
        "/series", json={"name": name, "unit": "MW", "labels": labels, "overlapping": overlapping}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["series_id"])


def answer(resp: Any) -> tuple[int, str, Any]:
    """What a client sees: status, media type and body (a problem whole, as parsed)."""
    kind = resp.headers["content-type"].split(";")[0]
    body = resp.json() if "json" in kind else resp.text
    return resp.status_code, kind, body


def rows_of(db: str, sid: int) -> dict[str, int]:
    with psycopg.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE series_id = %s", (sid,)).fetchone()[0] for t in FACTS}


def series_row(db: str, sid: int) -> tuple[Any, ...]:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT name, unit, labels, description FROM series_table WHERE series_id = %s", (sid,)
        ).fetchone()
    assert row is not None
    return row


@pytest.fixture
def mine(client: Any, clean_db: str) -> dict[str, int]:
    """Series of tenant acme: a flat one with a value, an overlapping one with a batch (VT's
    month made first: a write that makes a partition spends an identity value, and the tests
    count on the hidden series' batch being 2)."""
    make_partitions(clean_db, VT[:7])
    flat = create(client, "wind", {**ACME, "site": "a"}, headers=AS_ACME)
    over = create(client, "solar", {**ACME, "site": "b"}, overlapping=True, headers=AS_ACME)
    for sid in (flat, over):
        resp = client.post(
            "/values", json={"series_id": sid, "data": [{"valid_time": VT, "value": 1.0}]}, headers=AS_ACME
        )
        assert resp.status_code == 200, resp.text
    return {"flat": flat, "over": over}


# Requests of tenant acme naming the hidden series (id `h`, name "hidden", site "x") or that it
# could show up in; (method, path, body or query params).
def requests(h: int, mine: dict[str, int]) -> dict[str, tuple[str, str, Any]]:
    by_name = {"name": "hidden", "labels": {"site": "x"}}
    point = {"valid_time": VT, "value": 2.0}
    return {
        "list": ("GET", "/series", {}),
        "list by id": ("GET", "/series", {"series_id": h}),
        "list by name": ("GET", "/series", {"name": "hidden"}),
        "list by label": ("GET", "/series", {"labels": '{"site": "x"}'}),
        "list by tenant": ("GET", "/series", {"labels": json.dumps(OTHER)}),
        "list page": ("GET", "/series", {"limit": 1}),
        "count": ("GET", "/series/count", {}),
        "count by label": ("GET", "/series/count", {"labels": '{"site": "x"}'}),
        "label values": ("GET", "/series/labels", {"label_key": "site"}),
        "tenant values": ("GET", "/series/labels", {"label_key": "tenant"}),
        "get": ("GET", f"/series/{h}", None),
        "patch": ("PATCH", f"/series/{h}", {"description": "mine now", "labels": ACME}),
        "read by id": ("GET", "/values", {"series_id": h}),
        "read by id, csv": ("GET", "/values", {"series_id": h, "format": "csv"}),
        "read by id, arrow": ("GET", "/values", {"series_id": h, "format": "arrow"}),
        "read by name": ("GET", "/values", {"name": "hidden", "labels": '{"site": "x"}'}),
        "read by label": ("GET", "/values", {"labels": '{"site": "x"}'}),
        "read versions by id": ("GET", "/values", {"series_id": h, "versions": "true"}),
        "query by id": ("POST", "/values/query", {"series": [{"series_id": mine["flat"]}, {"series_id": h}]}),
        "query by name": ("POST", "/values/query", {"series": [by_name]}),
        "query by filter": ("POST", "/values/query", {"filter": {}}),
        "query by filter, csv": ("POST", "/values/query?format=csv", {"filter": {}}),
        "query by name filter": ("POST", "/values/query", {"filter": {"name": "hidden"}}),
        "insert by id": ("POST", "/values", {"series_id": h, "data": [point]}),
        "insert by name": ("POST", "/values", {**by_name, "data": [point]}),
        "insert by id, skip_unchanged": ("POST", "/values", {"series_id": h, "data": [point], "skip_unchanged": True}),
        "bulk by id": (
            "POST",
            "/values/bulk",
            {"rows": [{"series_id": mine["flat"], **point}, {"series_id": h, **point}]},
        ),
        "bulk by name": ("POST", "/values/bulk", {"rows": [{**by_name, **point}]}),
        "correct by id": ("PUT", "/values", {"updates": [{"series_id": h, "valid_time": VT, "value": 3.0}]}),
        "correct by name": ("PUT", "/values", {"updates": [{**by_name, "valid_time": VT, "value": 3.0}]}),
        "correct by id, second item": (
            "PUT",
            "/values",
            {
                "updates": [
                    {"series_id": mine["flat"], "valid_time": VT, "value": 3.0},
                    {"series_id": h, "valid_time": VT, "value": 3.0},
                ]
            },
        ),
        # the hidden series' batch (id 2: after the one of acme's overlapping series) with acme's series
        "correct another's batch": (
            "PUT",
            "/values",
            {"updates": [{"series_id": mine["over"], "batch_id": 2, "valid_time": VT, "value": 3.0}]},
        ),
    }


def send(client: Any, method: str, path: str, payload: Any, headers: dict[str, str]) -> Any:
    if method in ("GET",):
        return client.get(path, params=payload, headers=headers)
    return client.request(method, path, json=payload, headers=headers)


REQUESTS = sorted(requests(0, {"flat": 0, "over": 0}))


def hide(client: Any, hidden_id: int) -> None:
    """Create the hidden series (tenant other, overlapping, with a value in batch 2)."""
    assert create(client, "hidden", {**OTHER, "site": "x"}, overlapping=True, headers=AS_OTHER) == hidden_id
    resp = client.post(
        "/values", json={"series_id": hidden_id, "data": [{"valid_time": VT, "value": 9.0}]}, headers=AS_OTHER
    )
    assert resp.status_code == 200 and resp.json()["batch_id"] == 2, resp.text


@pytest.mark.grid
@pytest.mark.parametrize("what", REQUESTS)
def test_a_series_outside_the_scope_answers_as_if_it_did_not_exist(client, clean_db, mine, what):
    hidden = max(mine.values()) + 1  # the id the hidden series will get
    method, path, payload = requests(hidden, mine)[what]
    writes = method in ("PUT", "PATCH") or (method, path) in (("POST", "/values"), ("POST", "/values/bulk"))
    # a write that fails changes nothing, so it can be sent before and after; one that
    # succeeds is sent in its own database state each time
    snapshot = {sid: rows_of(clean_db, sid) for sid in mine.values()}
    before = answer(send(client, method, path, payload, AS_ACME))
    if writes and before[0] == 200:
        pytest.fail(f"{what} should fail without the hidden series: {before}")
    assert {sid: rows_of(clean_db, sid) for sid in mine.values()} == snapshot
    hide(client, hidden)
    stored = rows_of(clean_db, hidden), series_row(clean_db, hidden)
    after = answer(send(client, method, path, payload, AS_ACME))
    assert after == before
    # the hidden series is untouched, and so is acme's data after a refused write
    assert (rows_of(clean_db, hidden), series_row(clean_db, hidden)) == stored
    assert {sid: rows_of(clean_db, sid) for sid in mine.values()} == snapshot
    # while its own tenant or an unscoped request does see it
    assert any(answer(send(client, method, path, payload, headers)) != before for headers in (AS_OTHER, {}))


def test_lists_counts_and_label_values_hold_only_series_inside_the_scope(client, mine):
    create(client, "wind", {**OTHER, "site": "z"}, headers=AS_OTHER)
    create(client, "wind", {"site": "y"})
    resp = client.get("/series", headers=AS_ACME)
    assert [s["series_id"] for s in resp.json()] == [mine["over"], mine["flat"]]
    assert client.get("/series/count", headers=AS_ACME).json() == {"count": 2}
    assert client.get("/series/count").json() == {"count": 4}
    assert client.get("/series/labels", params={"label_key": "site"}, headers=AS_ACME).json()["values"] == ["a", "b"]
    assert client.get("/series/labels", params={"label_key": "tenant"}, headers=AS_ACME).json()["values"] == ["acme"]
    assert client.get("/series/labels", params={"label_key": "site"}).json()["values"] == ["a", "b", "y", "z"]
    # a page cursor naming a series of another tenant is a cursor that was never handed out
    page = client.get("/series", params={"limit": 1}, headers=AS_OTHER)
    cursor = page.headers["link"].split("cursor=")[1].split(">")[0] if "link" in page.headers else None
    assert cursor is None  # other has one series: one page
    theirs = client.get("/series", params={"labels": json.dumps(OTHER)}).json()[0]["series_id"]
    forged = base64.urlsafe_b64encode(b"%d" % theirs).decode().rstrip("=")
    nowhere = base64.urlsafe_b64encode(b"%d" % 999).decode().rstrip("=")
    assert answer(client.get("/series", params={"cursor": forged}, headers=AS_ACME)) == answer(
        client.get("/series", params={"cursor": nowhere}, headers=AS_ACME)
    )


def test_ambiguity_counts_only_series_inside_the_scope(client, mine):
    create(client, "wind", {**OTHER, "site": "a"}, headers=AS_OTHER)
    resp = client.get("/values", params={"name": "wind"}, headers=AS_ACME)
    assert resp.status_code == 200, resp.text
    assert [r["value"] for r in resp.json()["data"]] == [1.0]
    assert_problem(client.get("/values", params={"name": "wind"}), 400, "/problems/ambiguous-series")
    resp = client.post("/values", json={"name": "wind", "data": [{"valid_time": VT, "value": 5.0}]}, headers=AS_ACME)
    assert resp.status_code == 200 and resp.json()["series_id"] == mine["flat"], resp.text
    second = create(client, "wind", {**ACME, "site": "c"}, headers=AS_ACME)
    body = assert_problem(
        client.get("/values", params={"name": "wind"}, headers=AS_ACME), 400, "/problems/ambiguous-series"
    )
    assert "match 2 series" in body["detail"], body
    assert str(second) in body["detail"] and str(mine["flat"]) in body["detail"]


def test_in_scope_operations_work(client, clean_db, mine):
    flat, over = mine["flat"], mine["over"]
    assert client.get(f"/series/{flat}", headers=AS_ACME).json()["labels"] == {**ACME, "site": "a"}
    resp = client.patch(f"/series/{flat}", json={"description": "d", "labels": {"kind": "k"}}, headers=AS_ACME)
    assert resp.status_code == 200 and resp.json()["labels"] == {**ACME, "site": "a", "kind": "k"}, resp.text
    resp = client.get("/values", params={"series_id": over}, headers=AS_ACME)
    assert [r["value"] for r in resp.json()["data"]] == [1.0]
    resp = client.post("/values/query", json={"filter": {}}, headers=AS_ACME)
    assert resp.status_code == 200 and resp.json()["count"] == 2, resp.text
    resp = client.post(
        "/values/bulk", json={"rows": [{"series_id": flat, "valid_time": VT, "value": 4.0}]}, headers=AS_ACME
    )
    assert resp.status_code == 200 and resp.json()["rows_inserted"] == 1, resp.text
    resp = client.put(
        "/values",
        json={"updates": [{"series_id": over, "batch_id": 1, "valid_time": VT, "value": 6.0}]},
        headers=AS_ACME,
    )
    assert resp.status_code == 200, resp.text
    assert rows_of(clean_db, flat) == {"batches_table": 0, "flat": 2, "overlapping": 0}
    assert rows_of(clean_db, over) == {"batches_table": 1, "flat": 0, "overlapping": 2}


def test_creating_a_series_outside_the_scope_is_forbidden(client, clean_db):
    for labels in ({}, {"site": "a"}, OTHER):
        resp = client.post("/series", json={"name": "wind", "labels": labels}, headers=AS_ACME)
        body = assert_problem(resp, 403, "/problems/forbidden")
        assert body["detail"] == 'This token may only create series whose labels contain {"tenant":"acme"}.'
    # the same answer whether or not another tenant has that very series
    create(client, "wind", OTHER, headers=AS_OTHER)
    again = client.post("/series", json={"name": "wind", "labels": OTHER}, headers=AS_ACME)
    assert answer(again) == answer(resp)
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM series_table").fetchone()[0] == 1
    assert create(client, "wind", {**ACME, "site": "a"}, headers=AS_ACME) == 2


def test_bulk_creation_lists_the_items_outside_the_scope(client, clean_db):
    items = [
        {"name": "a", "labels": ACME},
        {"name": "b", "labels": OTHER},
        {"name": "c"},
        {"name": "d", "labels": {**ACME, "x": "y"}},
    ]
    body = assert_problem(
        client.post("/series/bulk", json={"series": items}, headers=AS_ACME), 403, "/problems/forbidden"
    )
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert body["errors"][0]["message"] == "series[1]: labels {'tenant': 'other'} do not contain {\"tenant\":\"acme\"}."
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM series_table").fetchone()[0] == 0
    resp = client.post("/series/bulk", json={"series": [items[0], items[3]]}, headers=AS_ACME)
    assert resp.status_code == 200 and [s["created"] for s in resp.json()["series"]] == [True, True], resp.text


def test_a_patch_cannot_move_a_series_out_of_the_scope(client, clean_db, mine):
    sid = mine["flat"]
    stored = series_row(clean_db, sid)
    for patch in ({"labels": OTHER}, {"labels": {"tenant": None}}, {"labels": None}):
        body = assert_problem(client.patch(f"/series/{sid}", json=patch, headers=AS_ACME), 403, "/problems/forbidden")
        assert '{"tenant":"acme"}' in body["detail"]
    assert series_row(clean_db, sid) == stored


def test_an_idempotent_replay_stays_inside_the_scope(client, clean_db, mine):
    body = {"series_id": mine["flat"], "data": [{"valid_time": "2025-02-01T00:00:00+00:00", "value": 7.0}]}
    key = {"Idempotency-Key": "k-1"}
    first = client.post("/values", json=body, headers={**AS_ACME, **key})
    assert first.status_code == 200, first.text
    replay = client.post("/values", json=body, headers={**AS_ACME, **key})
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == first.json()
    assert rows_of(clean_db, mine["flat"])["flat"] == 2


def test_an_idempotency_key_of_another_tenant_is_not_replayed(client, clean_db, mine):
    body = {"series_id": mine["flat"], "data": [{"valid_time": "2025-02-01T00:00:00+00:00", "value": 7.0}]}
    key = {"Idempotency-Key": "k-1"}
    assert client.post("/values", json=body, headers={**AS_ACME, **key}).status_code == 200
    nowhere = {**body, "series_id": 999}
    expected = answer(client.post("/values", json=nowhere, headers=AS_OTHER))
    resp = client.post("/values", json=body, headers={**AS_OTHER, **key})
    got = answer(resp)
    assert got[0] == 404 and got[2]["detail"] == expected[2]["detail"].replace("999", str(mine["flat"]))
    assert rows_of(clean_db, mine["flat"])["flat"] == 2
