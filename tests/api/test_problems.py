"""Issue 12's problem contract: every 400 is a timedb problem type whose one-line detail names
the parameter or JSON pointer, with a machine-readable `errors` list saying where each fault
is; Connexion's own 404/405/415 are timedb types too; NUL characters are refused up front."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LOCAL, assert_problem, make_series
from timedb.app import create_app
from timedb.settings import Settings

POINT = {"valid_time": "2025-01-01T00:00:00Z", "value": 1.0}


RULE, SCHEMA = "/problems/invalid-input", "/problems/schema-violation"


def bad_request(resp: Any, type_: str | None = None) -> dict[str, Any]:
    """A 400 of a timedb type: the spec's schemas refused it, or a rule its prose states."""
    problem = assert_problem(resp, 400, type_)
    assert problem["type"] in (RULE, SCHEMA, "/problems/ambiguous-series"), problem
    assert "\n" not in problem["detail"] and len(problem["detail"]) < 400, problem["detail"]
    assert problem["errors"] and all(e["in"] in ("query", "path", "header", "body") for e in problem["errors"])
    return problem


def where(problem: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["in"], e.get("name", e.get("pointer"))) for e in problem["errors"]]


QUERY_CASES = [
    ("/values", {"series_id": "abc"}, [("query", "series_id")]),
    ("/values", {"series_id": "1", "bogus": "1"}, [("query", "bogus")]),
    ("/values", {"series_id": "0", "start_valid": "tomorrow"}, [("query", "series_id"), ("query", "start_valid")]),
    ("/series", {"limit": "-1"}, [("query", "limit")]),
    ("/series", {"cursor": "not-a-cursor"}, [("query", "cursor")]),
    ("/series", {"labels": "[1]"}, [("query", "labels")]),
    ("/values", {"series_id": "1", "tz": "Mars/Base"}, [("query", "tz")]),
    ("/values", {"series_id": "1", "resample": "PT7M"}, [("query", "resample")]),
    ("/values", {"series_id": "1", "agg": "max"}, [("query", "agg")]),
    ("/values", {"series_id": "1", "min_horizon": "P1M"}, [("query", "min_horizon")]),
    ("/values", {"series_id": "1", "versions": "true", "include_updates": "true"}, [("query", "include_updates")]),
]


@pytest.mark.grid
@pytest.mark.parametrize(
    ("path", "params", "expected"), QUERY_CASES, ids=[f"{p}-{'-'.join(q)}" for p, q, _ in QUERY_CASES]
)
def test_query_faults_name_every_parameter(client, path, params, expected):
    problem = bad_request(client.get(path, params=params))
    assert where(problem) == expected
    assert expected[0][1] in problem["detail"]


def test_the_type_tells_a_schema_refusal_from_a_documented_rule(client):
    """/problems/schema-violation: the request does not match the spec (a client generated from
    it would not send it); /problems/invalid-input: a rule the spec states in prose."""
    assert bad_request(client.get("/values", params={"series_id": "abc"}))["type"] == SCHEMA
    assert bad_request(client.post("/series", json={"name": 1}))["type"] == SCHEMA
    assert bad_request(client.get("/values", params={"series_id": "1", "tz": "Mars/Base"}))["type"] == RULE
    assert (
        bad_request(
            client.put("/values", json={"updates": [{"series_id": 1, "valid_time": "2025-01-01"}]}),
        )["type"]
        == RULE
    )


def test_series_id_in_path_is_named(client):
    problem = bad_request(client.get("/series/0"))  # (/series/abc matches no route: a 404)
    assert where(problem) == [("path", "series_id")]


BODY_CASES = [
    ("POST", "/series", {"name": 1}, [("body", "/name")]),
    ("POST", "/series", {"unit": "MW"}, [("body", "/name")]),
    ("POST", "/series", {"name": "a", "colour": "red"}, [("body", "/colour")]),
    ("POST", "/series", {"name": "a", "labels": {"site": 1}}, [("body", "/labels/site")]),
    (
        "POST",
        "/values",
        {"series_id": 1, "data": [{"valid_time": "2025-01-01", "value": "x"}]},
        [("body", "/data/0/value")],
    ),
    ("POST", "/values", {"series_id": 1}, [("body", "/data")]),
    ("POST", "/values", {"data": [POINT]}, [("body", "/name")]),
    ("PUT", "/values", {"updates": [{"series_id": 1, "valid_time": "2025-01-01"}]}, [("body", "/updates/0")]),
    ("PUT", "/values", {"updates": [{"valid_time": "2025-01-01", "value": 1}]}, [("body", "/updates/0")]),
    ("POST", "/values/query", {"series": [{"series_id": 1}], "tz": "Mars/Base"}, [("body", "/tz")]),
    ("POST", "/values/query", {"series": [{"series_id": 1}], "agg": "max"}, [("body", "/agg")]),
    ("POST", "/values/query", {"series": [{"series_id": 1}], "filter": {}}, [("body", "/filter")]),
]


@pytest.mark.grid
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), BODY_CASES, ids=[f"{m}{p}-{i}" for i, (m, p, _, _) in enumerate(BODY_CASES)]
)
def test_body_faults_point_into_the_body(client, method, path, body, expected):
    problem = bad_request(client.request(method, path, json=body))
    assert where(problem) == expected


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"   "], ids=["truncated", "not-utf8", "blank"])
def test_unparsable_bodies_point_at_the_whole_body(client, raw):
    resp = client.post("/series", content=raw, headers={"Content-Type": "application/json"})
    assert where(bad_request(resp)) == [("body", "")]


def test_ambiguous_series_names_the_filter_where_it_was_given(client):
    make_series(client, name="w", labels={"site": "A"})
    make_series(client, name="w", labels={"site": "B"})
    get = bad_request(client.get("/values", params={"name": "w"}), "/problems/ambiguous-series")
    assert where(get) == [("query", "labels")] and len(get["matches"]) == 2
    post = bad_request(client.post("/values", json={"name": "w", "data": [POINT]}), "/problems/ambiguous-series")
    assert where(post) == [("body", "/labels")]
    put = bad_request(
        client.put(
            "/values",
            json={
                "updates": [
                    {"name": "w", "labels": {"site": "A"}, "valid_time": "2025-01-01", "value": 1},
                    {"name": "w", "valid_time": "2025-01-01", "value": 1},
                ]
            },
        ),
        "/problems/ambiguous-series",
    )
    assert where(put) == [("body", "/updates/1/labels")]


def test_every_fault_is_listed_not_only_the_first(client):
    problem = bad_request(client.get("/series", params={"limit": "0", "unknown1": "x", "unknown2": "y"}))
    assert sorted(where(problem)) == [("query", "limit"), ("query", "unknown1"), ("query", "unknown2")]


# ------------------------------------------------------------------ NUL characters

NUL_QUERIES = [
    ("/series", {"name": "a\x00b"}, "name"),
    ("/values", {"name": "a\x00"}, "name"),
    ("/series/count", {"unit": "\x00"}, "unit"),
    ("/series", {"labels": json.dumps({"site": "A\x00"})}, "labels"),
    ("/series", {"labels": json.dumps({"si\x00te": "A"})}, "labels"),
]


@pytest.mark.parametrize(
    ("path", "params", "name"), NUL_QUERIES, ids=[f"{p}-{n}-{i}" for i, (p, _, n) in enumerate(NUL_QUERIES)]
)
def test_nul_in_a_query_parameter_is_a_400_naming_it(client, path, params, name):
    problem = bad_request(client.get(path, params=params))
    assert where(problem) == [("query", name)] and "NUL" in problem["detail"]


NUL_BODIES = [
    ("POST", "/series", {"name": "a\x00"}, "/name"),
    ("POST", "/series", {"name": "a", "labels": {"k\x00": "v"}}, "/labels/k\x00"),
    ("POST", "/values", {"name": "s", "labels": {"k": "\x00"}, "data": [POINT]}, "/labels/k"),
    ("POST", "/values", {"series_id": 1, "workflow_id": "w\x00", "data": [POINT]}, "/workflow_id"),
    ("POST", "/values", {"series_id": 1, "batch_params": {"a": ["\x00"]}, "data": [POINT]}, "/batch_params/a/0"),
    (
        "PUT",
        "/values",
        {"updates": [{"series_id": 1, "valid_time": "2025-01-01", "tags": ["x", "\x00"]}]},
        "/updates/0/tags/1",
    ),
    ("POST", "/values/query", {"filter": {"name": "\x00"}}, "/filter/name"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "pointer"), NUL_BODIES, ids=[f"{m}{p}-{i}" for i, (m, p, _, _) in enumerate(NUL_BODIES)]
)
def test_nul_in_a_body_is_a_400_pointing_at_it_and_changes_nothing(client, method, path, body, pointer):
    problem = bad_request(client.request(method, path, json=body))
    assert where(problem) == [("body", pointer)] and "NUL" in problem["detail"]
    assert problem["type"] == RULE  # (the spec cannot declare it of keys and free JSON: a rule)
    assert client.get("/series/count").json() == {"count": 0}


def test_an_escaped_backslash_before_u0000_is_not_a_nul(client):
    resp = client.post("/series", json={"name": "a\\u0000b"})  # the text \u0000, six characters
    assert resp.status_code == 200, resp.text
    assert client.get(f"/series/{resp.json()['series_id']}").json()["name"] == "a\\u0000b"


def test_the_spec_refuses_nul_in_every_free_text_field():
    """Schemathesis and generated clients learn it from the spec: every request string that
    takes free text carries a pattern without NUL."""
    text = (Path(__file__).resolve().parents[2] / "openapi" / "timedb.yaml").read_text()
    free = re.findall(r"\{type: string(?:, nullable: true)?, maxLength: \d+\}", text)
    assert free == [], free


# ------------------------------------------------------------------ Connexion's own problems


def test_no_route_wrong_method_and_media_type_are_timedb_types(client):
    assert_problem(client.get("/nowhere"), 404, "/problems/not-found")
    resp = client.delete("/series")
    assert_problem(resp, 405, "/problems/method-not-allowed")
    assert set(resp.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    resp = client.post("/series", content=b"name=a", headers={"Content-Type": "text/plain"})
    assert_problem(resp, 415, "/problems/unsupported-media-type")


# ------------------------------------------------------------------ the served spec and GET /


def test_served_spec_names_the_server_root(client):
    for path in ("/openapi.json", "/openapi.yaml"):
        resp = client.get(path)
        assert resp.status_code == 200
    assert client.get("/openapi.json").json()["servers"] == [{"url": "/"}]


def test_served_spec_behind_a_root_path(app_dsn):
    app = create_app(Settings(dsn=app_dsn))
    with app.test_client(**LOCAL, root_path="/timedb") as client:
        assert client.get("/openapi.json").json()["servers"] == [{"url": "/timedb"}]
        link = client.get("/").headers["link"]
        assert '</timedb/healthz>; rel="health"' in link


EXPECTED_LINKS = {
    "health": "/healthz",
    "readiness": "/readyz",
    "metrics": "/metrics",
    "service-desc": "/openapi.json",
    "service-doc": "/docs",
    "describedby": "/redoc",
}


def parse_link(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(","):
        target, rel = part.split(";")
        out[rel.strip().removeprefix('rel="').removesuffix('"')] = target.strip()[1:-1]
    return out


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_root_keeps_its_json_and_links_the_rest(client, accept):
    resp = client.get("/", headers={"Accept": accept} if accept else {})
    assert resp.headers["content-type"] == "application/json"
    assert list(resp.json()) == ["name", "version", "description", "endpoints", "admin_note"]
    assert parse_link(resp.headers["link"]) == EXPECTED_LINKS
    for path in EXPECTED_LINKS.values():  # each one answers (metrics: on this loopback client)
        assert client.get(path).status_code == 200, path


def test_root_is_a_page_for_a_browser(client):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    resp = client.get("/", headers={"Accept": browser})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    for path in EXPECTED_LINKS.values():
        assert f'href="{path}"' in resp.text
    assert "POST /values - Insert time series data" in resp.text
    assert "default-src 'none'" in resp.headers["content-security-policy"]


def test_the_detail_stays_one_line_whatever_the_client_sent(client):
    problem = bad_request(client.post("/series", json={"name": "a", "labels": {"line\nbreak\x00": "v"}}))
    assert problem["errors"][0]["pointer"] == "/labels/line\nbreak\x00"  # (exact: it points at the key)
    assert "\n" not in problem["detail"] and "line\\u000abreak\\u0000" in problem["detail"]
