"""POST /series, GET /series, GET /series/labels, GET /series/count."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, make_series, posts

LABELS_DETAIL = 'labels must be a valid JSON object (e.g. \'{"site":"Gotland"}\')'
KEYS = {"series_id", "name", "description", "unit", "labels", "overlapping", "retention"}


def listed(client: Any, **params: Any) -> list[dict[str, Any]]:
    resp = client.get("/series", params=params)
    assert resp.status_code == 200, resp.text
    rows = resp.json()
    for row in rows:
        assert set(row) == KEYS, row
    return rows


def count(client: Any, **params: Any) -> int:
    resp = client.get("/series/count", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["count"]


def get_one(client: Any, series_id: int) -> dict[str, Any]:
    rows = listed(client, series_id=series_id)
    assert len(rows) == 1, rows
    return rows[0]


def next_link(resp: Any) -> str | None:
    link = resp.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'\s*<([^>]*)>\s*;\s*rel="?next"?\s*', link)
    assert match, link
    return match.group(1)


# ---------------------------------------------------------------- POST /series


def test_create_returns_id_message_and_created(client):
    resp = client.post("/series", json={"name": "wind", "unit": "MW"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"series_id", "message", "created"}
    assert isinstance(body["series_id"], int) and body["series_id"] >= 1
    assert isinstance(body["message"], str) and body["message"]
    assert body["created"] is True


def test_create_trims_name_description_unit(client):
    sid = make_series(client, name="  wind power \t", description="\n Day-ahead  ", unit=" MW ")
    row = get_one(client, sid)
    assert (row["name"], row["description"], row["unit"]) == ("wind power", "Day-ahead", "MW")


def test_create_defaults(client):
    resp = client.post("/series", json={"name": "bare"})
    assert resp.status_code == 200, resp.text
    row = get_one(client, resp.json()["series_id"])
    assert row == {
        "series_id": resp.json()["series_id"],
        "name": "bare",
        "description": None,
        "unit": "dimensionless",
        "labels": {},
        "overlapping": False,
        "retention": "medium",
    }


def test_create_stores_every_attribute(client):
    sid = make_series(
        client,
        name="fc",
        unit="MW",
        labels={"site": "A", "model": "m1"},
        overlapping=True,
        retention="short",
        description="Forecast",
    )
    assert get_one(client, sid) == {
        "series_id": sid,
        "name": "fc",
        "description": "Forecast",
        "unit": "MW",
        "labels": {"site": "A", "model": "m1"},
        "overlapping": True,
        "retention": "short",
    }


@pytest.mark.parametrize("description", ["", "   ", "\t\n ", None])
def test_blank_description_is_null(client, description):
    sid = make_series(client, name="d", description=description)
    assert get_one(client, sid)["description"] is None


def test_recreate_identical_returns_same_id_not_created(client):
    body = {
        "name": "fc",
        "unit": "MW",
        "labels": {"site": "A"},
        "overlapping": True,
        "retention": "long",
        "description": "x",
    }
    first = client.post("/series", json=body).json()
    second = client.post("/series", json=body)
    assert second.status_code == 200, second.text
    assert second.json()["series_id"] == first["series_id"]
    assert second.json()["created"] is False
    assert count(client) == 1


def test_recreate_with_untrimmed_name_is_same_series(client):
    first = make_series(client, name="temp")
    resp = client.post("/series", json={"name": "  temp ", "unit": " MW", "overlapping": False})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["series_id"], resp.json()["created"]) == (first, False)
    assert count(client) == 1


def test_label_key_order_is_irrelevant(client):
    raw_a = '{"name": "s", "unit": "MW", "labels": {"site": "A", "model": "m1", "zone": "z"}}'
    raw_b = '{"name": "s", "unit": "MW", "labels": {"zone": "z", "model": "m1", "site": "A"}}'
    headers = {"Content-Type": "application/json"}
    a = client.post("/series", content=raw_a, headers=headers).json()
    b = client.post("/series", content=raw_b, headers=headers).json()
    assert a["series_id"] == b["series_id"]
    assert (a["created"], b["created"]) == (True, False)


def test_labels_are_part_of_identity(client):
    ids = {
        make_series(client, name="s", labels=labels)
        for labels in ({}, {"site": "A"}, {"site": "A", "model": "m"}, {"site": "B"})
    }
    assert len(ids) == 4
    assert count(client, name="s") == 4


def test_recreate_with_other_description_keeps_the_series(client):
    sid = make_series(client, name="s", description="first")
    resp = client.post("/series", json={"name": "s", "unit": "MW", "description": "second"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["series_id"], resp.json()["created"]) == (sid, False)
    assert get_one(client, sid)["description"] == "first"


@pytest.mark.parametrize(
    "change",
    [
        {"unit": "KW"},
        {"overlapping": True},
        {"retention": "long"},
        {"unit": "KW", "retention": "short"},
    ],
    ids=["unit", "overlapping", "retention", "unit+retention"],
)
def test_recreate_with_other_attributes_is_409(client, change):
    original = {
        "name": "s",
        "unit": "MW",
        "labels": {"site": "A"},
        "overlapping": False,
        "retention": "medium",
        "description": "orig",
    }
    sid = make_series(client, **original)
    resp = client.post("/series", json={**original, **change})
    assert_problem(resp, 409, "/problems/series-conflict")
    assert count(client) == 1
    row = get_one(client, sid)
    assert {k: row[k] for k in ("unit", "overlapping", "retention", "description")} == {
        "unit": "MW",
        "overlapping": False,
        "retention": "medium",
        "description": "orig",
    }


def test_recreate_relying_on_defaults_conflicts_with_non_defaults(client):
    make_series(client, name="fc", unit="dimensionless", overlapping=True, retention="long")
    assert_problem(client.post("/series", json={"name": "fc"}), 409, "/problems/series-conflict")


@pytest.mark.grid
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"unit": "MW"},
        {"name": None},
        {"name": 1},
        {"name": ""},
        {"name": "   "},
        {"name": "\t\n\r"},
        {"name": "\u00a0\u3000"},
        {"name": "x" * 1001},
        {"name": "a", "retention": "never"},
        {"name": "a", "retention": "MEDIUM"},
        {"name": "a", "retention": None},
        {"name": "a", "labels": {"site": 1}},
        {"name": "a", "labels": {"site": None}},
        {"name": "a", "labels": {"site": True}},
        {"name": "a", "labels": {"site": ["A"]}},
        {"name": "a", "labels": {"site": {"x": "y"}}},
        {"name": "a", "labels": ["site"]},
        {"name": "a", "labels": "site=A"},
        {"name": "a", "overlapping": "true"},
        {"name": "a", "overlapping": 1},
        {"name": "a", "unit": None},
        {"name": "a", "unit": 5},
        {"name": "a", "description": 5},
        {"name": "a", "foo": 1},
        {"name": "a", "series_id": 3},
    ],
    ids=lambda b: json.dumps(b)[:60],
)
def test_invalid_create_is_400(client, body):
    assert_problem(client.post("/series", json=body), 400)
    assert count(client) == 0


@pytest.mark.parametrize("name", ["\x1c", "\x1f", " \x1d\x1e "])
def test_name_blank_after_trimming_is_400(client, name):
    # str.strip() removes these separators, so the stored name would be empty
    assert_problem(client.post("/series", json={"name": name}), 400)
    assert count(client) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\u0000b"},
        {"name": "a", "labels": {"site": "A\u0000"}},
        {"name": "a", "labels": {"si\u0000te": "A"}},
        {"name": "a", "unit": "M\u0000W"},
        {"name": "a", "description": "d\u0000"},
    ],
    ids=["name", "label-value", "label-key", "unit", "description"],
)
def test_nul_characters_are_a_client_error(client, body):
    resp = client.post("/series", json=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert_problem(resp, resp.status_code)


# ------------------------------------------------------------- concurrency (live)


@pytest.mark.parametrize("attempt", range(3))
def test_parallel_creates_of_the_same_series_are_atomic(live, live_server, attempt):
    body = {
        "name": f"race{attempt}",
        "unit": "MW",
        "labels": {"site": "A", "n": str(attempt)},
        "overlapping": True,
        "retention": "short",
    }
    responses = posts(live_server, "/series", [body] * 24)
    assert all(r.status_code == 200 for r in responses), [(r.status_code, r.text) for r in responses]
    bodies = [r.json() for r in responses]
    assert len({b["series_id"] for b in bodies}) == 1
    assert sum(b["created"] for b in bodies) == 1
    assert live.get("/series/count").json() == {"count": 1}


def test_parallel_conflicting_creates_give_one_series_and_409s(live, live_server):
    bodies = [{"name": "race", "unit": "MW" if i % 2 else "KW"} for i in range(24)]
    responses = posts(live_server, "/series", bodies)
    assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
    ok = [r.json() for r in responses if r.status_code == 200]
    assert sum(b["created"] for b in ok) == 1
    assert len({b["series_id"] for b in ok}) == 1
    rows = live.get("/series").json()
    assert len(rows) == 1
    winner_unit = rows[0]["unit"]
    for body, resp in zip(bodies, responses, strict=True):
        assert resp.status_code == (200 if body["unit"] == winner_unit else 409), resp.text


def test_parallel_creates_of_different_series_all_succeed(live, live_server):
    bodies = [{"name": f"s{i:02d}", "labels": {"i": str(i)}} for i in range(24)]
    responses = posts(live_server, "/series", bodies)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert all(r.json()["created"] is True for r in responses)
    assert len({r.json()["series_id"] for r in responses}) == 24
    assert live.get("/series/count").json() == {"count": 24}


# ------------------------------------------------------------------ GET /series


def test_list_empty(client):
    assert listed(client) == []


def test_list_shape_and_order(client):
    specs = [
        ("b", "MW", {"k": "1"}),
        ("a", "KW", {"k": "2"}),
        ("a", "MW", {"k": "3"}),
        ("a", "MW", {"k": "4"}),
        ("c", "A", {}),
        ("a", "GW", {"k": "5"}),
    ]
    ids = {labels.get("k", "none"): make_series(client, name=n, unit=u, labels=labels) for n, u, labels in specs}
    rows = listed(client)
    assert [(r["name"], r["unit"], r["series_id"]) for r in rows] == sorted(
        (r["name"], r["unit"], r["series_id"]) for r in rows
    )
    assert [r["series_id"] for r in rows] == [ids["5"], ids["2"], ids["3"], ids["4"], ids["1"], ids["none"]]
    assert all(r["description"] is None for r in rows)


CATALOGUE = {
    # key: (name, unit, labels)
    "w1": ("wind", "MW", {"site": "A", "model": "m1"}),
    "w2": ("wind", "MW", {"site": "B", "model": "m1"}),
    "w3": ("wind", "KW", {"site": "A"}),
    "s1": ("solar", "MW", {"site": "C", "model": "m2"}),
    "s2": ("solar", "MW", {}),
}

FILTER_CASES = [
    ({}, ["s1", "s2", "w1", "w2", "w3"]),
    ({"name": "wind"}, ["w1", "w2", "w3"]),
    ({"name": "Wind"}, []),
    ({"name": " wind"}, []),
    ({"name": "nope"}, []),
    ({"unit": "MW"}, ["s1", "s2", "w1", "w2"]),
    ({"unit": "mw"}, []),
    ({"labels": {"site": "A"}}, ["w1", "w3"]),
    ({"labels": {"model": "m1"}}, ["w1", "w2"]),
    ({"labels": {"site": "A", "model": "m1"}}, ["w1"]),
    ({"labels": {"site": "A", "model": "m2"}}, []),
    ({"labels": {}}, ["s1", "s2", "w1", "w2", "w3"]),
    ({"labels": {"site": 1}}, []),
    ({"labels": {"site": None}}, []),
    ({"labels": {"site": ["A"]}}, []),
    ({"labels": {"site": {"A": "B"}}}, []),
    ({"name": "wind", "unit": "MW"}, ["w1", "w2"]),
    ({"name": "wind", "unit": "MW", "labels": {"site": "A"}}, ["w1"]),
    ({"name": "solar", "labels": {"site": "A"}}, []),
    ({"unit": "KW", "labels": {"site": "A"}}, ["w3"]),
    ({"series_id": "w2"}, ["w2"]),
    ({"series_id": "w2", "name": "wind"}, ["w2"]),
    ({"series_id": "w2", "name": "solar"}, []),
    ({"series_id": "w2", "unit": "KW"}, []),
    ({"series_id": "w3", "labels": {"site": "A"}}, ["w3"]),
    ({"series_id": "w3", "labels": {"site": "B"}}, []),
    ({"series_id": 999999}, []),
]


@pytest.fixture
def catalogue(client) -> dict[str, int]:
    return {key: make_series(client, name=n, unit=u, labels=labels) for key, (n, u, labels) in CATALOGUE.items()}


def _params(flt: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    params = dict(flt)
    if "labels" in params:
        params["labels"] = json.dumps(params["labels"])
    if isinstance(params.get("series_id"), str):
        params["series_id"] = ids[params["series_id"]]
    return params


def _order(keys: list[str], ids: dict[str, int]) -> list[int]:
    return [ids[k] for k in sorted(keys, key=lambda k: (CATALOGUE[k][0], CATALOGUE[k][1], ids[k]))]


@pytest.mark.grid
@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=lambda v: json.dumps(v))
def test_list_filters(client, catalogue, flt, expected):
    rows = listed(client, **_params(flt, catalogue))
    assert [r["series_id"] for r in rows] == _order(expected, catalogue)
    for r in rows:
        key = next(k for k, v in catalogue.items() if v == r["series_id"])
        assert (r["name"], r["unit"], r["labels"]) == CATALOGUE[key]


@pytest.mark.grid
@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=lambda v: json.dumps(v))
def test_count_honours_every_filter(client, catalogue, flt, expected):
    params = _params(flt, catalogue)
    assert count(client, **params) == len(listed(client, **params)) == len(expected)


@pytest.mark.grid
@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=lambda v: json.dumps(v))
def test_labels_honours_every_filter(client, catalogue, flt, expected):
    resp = client.get("/series/labels", params={"label_key": "site", **_params(flt, catalogue)})
    assert resp.status_code == 200, resp.text
    values = sorted({CATALOGUE[k][2]["site"] for k in expected if "site" in CATALOGUE[k][2]})
    assert resp.json() == {"label_key": "site", "values": values}


BAD_LABELS = ["x", "[1]", "[]", "null", "{", '{"site":"A"', "1", '"site"', "site=A", "true", ""]
ENDPOINTS = [("/series", {}), ("/series/count", {}), ("/series/labels", {"label_key": "site"})]


@pytest.mark.grid
@pytest.mark.parametrize("labels", BAD_LABELS)
@pytest.mark.parametrize(("path", "extra"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_bad_labels_parameter_is_400(client, path, extra, labels):
    make_series(client, name="a", labels={"site": "A"})
    body = assert_problem(client.get(path, params={**extra, "labels": labels}), 400)
    assert body["detail"] == LABELS_DETAIL


@pytest.mark.grid
@pytest.mark.parametrize("series_id", ["abc", "1.5", "1e3", "0", "-1", "9223372036854775808", ""])
@pytest.mark.parametrize(("path", "extra"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_bad_series_id_is_400(client, path, extra, series_id):
    assert_problem(client.get(path, params={**extra, "series_id": series_id}), 400)


# ----------------------------------------------------------------- pagination


@pytest.fixture
def paged(client) -> list[dict[str, Any]]:
    specs = [
        ("b", "MW"),
        ("a", "MW"),
        ("a", "MW"),
        ("c", "KW"),
        ("a", "KW"),
        ("b", "MW"),
        ("a", "MW"),
        ("d", "MW"),
        ("b", "GW"),
    ]
    for i, (name, unit) in enumerate(specs):
        make_series(client, name=name, unit=unit, labels={"i": str(i), "even": str(i % 2 == 0)})
    rows = listed(client)
    assert len(rows) == len(specs)
    return rows


def _walk(client: Any, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages = []
    resp = client.get("/series", params=params)
    while True:
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        link = next_link(resp)
        if link is None:
            return pages
        assert len(pages) <= 50, "pagination does not terminate"
        resp = client.get(link)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 8])
def test_pages_visit_every_series_once_in_order(client, paged, limit):
    pages = _walk(client, {"limit": limit})
    assert [r for page in pages for r in page] == paged
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit


def test_pages_preserve_filters(client, paged):
    flt = {"unit": "MW", "labels": json.dumps({"even": "True"})}
    expected = listed(client, **flt)
    assert 2 < len(expected) < len(paged)
    resp = client.get("/series", params={**flt, "limit": 1})
    link = next_link(resp)
    assert link is not None
    query = httpx.URL(link).params
    assert query["unit"] == "MW" and json.loads(query["labels"]) == {"even": "True"}
    assert query["limit"] == "1"
    pages = _walk(client, {**flt, "limit": 1})
    assert [r for page in pages for r in page] == expected
    assert len(pages) == len(expected)


@pytest.mark.parametrize("limit", [9, 10, 10000])
def test_no_link_when_everything_fits(client, paged, limit):
    resp = client.get("/series", params={"limit": limit})
    assert resp.status_code == 200
    assert resp.json() == paged
    assert "link" not in resp.headers


def test_no_link_on_the_exact_last_page(client, paged):
    resp = client.get("/series", params={"limit": 8})
    assert next_link(resp) is not None
    last = client.get(next_link(resp))
    assert last.json() == paged[8:]
    assert "link" not in last.headers


def test_no_link_without_limit(client, paged):
    resp = client.get("/series")
    assert "link" not in resp.headers
    assert len(resp.json()) == len(paged)


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.grid
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "",
        "é",
        _b64("not json"),
        _b64('["a","MW"]'),
        _b64('{"name":"a"}'),
        _b64('["a","MW","1"]'),
        _b64('["a","MW",true]'),
        _b64('["a","MW",1.5]'),
        _b64('[1,"MW",1]'),
        _b64('["a\\u0000","MW",1]'),
    ],
    ids=[
        "garbage",
        "bangs",
        "empty",
        "non-ascii",
        "not-json",
        "two-items",
        "object",
        "string-id",
        "bool-id",
        "float-id",
        "int-name",
        "nul-in-name",
    ],
)
def test_bad_cursor_is_400(client, paged, cursor):
    assert_problem(client.get("/series", params={"limit": 2, "cursor": cursor}), 400)


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "1.5"])
def test_bad_limit_is_400(client, limit):
    assert_problem(client.get("/series", params={"limit": limit}), 400)


# ----------------------------------------------------------- GET /series/labels


@pytest.mark.parametrize("params", [{}, {"label_key": ""}, {"name": "a"}])
def test_labels_requires_label_key(client, params):
    assert_problem(client.get("/series/labels", params=params), 400)


def test_labels_sorted_distinct_skipping_series_without_key(client):
    for i, labels in enumerate([{"site": "C"}, {"site": "A"}, {"site": "B", "m": "x"}, {"site": "A"}, {"m": "y"}, {}]):
        make_series(client, name=f"s{i}", labels=labels)
    resp = client.get("/series/labels", params={"label_key": "site"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"label_key": "site", "values": ["A", "B", "C"]}
    assert client.get("/series/labels", params={"label_key": "m"}).json()["values"] == ["x", "y"]


def test_labels_without_matches_is_empty(client):
    assert client.get("/series/labels", params={"label_key": "site"}).json() == {"label_key": "site", "values": []}
    make_series(client, name="a", labels={"site": "A"})
    assert client.get("/series/labels", params={"label_key": "zone"}).json() == {"label_key": "zone", "values": []}
    assert client.get("/series/labels", params={"label_key": "site", "name": "b"}).json() == {
        "label_key": "site",
        "values": [],
    }


# ------------------------------------------------------------ GET /series/count


def test_count_empty_and_growing(client):
    assert count(client) == 0
    make_series(client, name="a")
    make_series(client, name="a", labels={"x": "1"})
    assert count(client) == 2
    assert count(client, name="a", labels='{"x":"1"}') == 1


@pytest.mark.parametrize("overlapping", [True, False])
def test_forever_is_a_retention_tier(client, overlapping):
    """Issue 14: `forever` (no expiry) is accepted by POST /series and /series/bulk, stored and
    answered like the other tiers, and immutable like them."""
    sid = make_series(client, name="kept", retention="forever", overlapping=overlapping)
    assert client.get(f"/series/{sid}").json()["retention"] == "forever"
    bulk = client.post("/series/bulk", json={"series": [{"name": "kept-too", "unit": "MW", "retention": "forever"}]})
    assert bulk.status_code == 200, bulk.text
    assert client.get(f"/series/{bulk.json()['series'][0]['series_id']}").json()["retention"] == "forever"
    assert_problem(client.patch(f"/series/{sid}", json={"retention": "long"}), 409, "/problems/immutable-field")
    assert_problem(client.post("/series", json={"name": "x", "unit": "MW", "retention": "never"}), 400)
