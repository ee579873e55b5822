"""POST /series/bulk, GET /series/{series_id} and PATCH /series/{series_id}.

Expectations are computed here, independently of the server: a small model of POST /series
semantics (an identity is (trimmed name, labels); the first item of an identity creates it,
later ones get its id) and a reference RFC 7396 merge patch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.helpers import assert_problem, make_series, parallel
from timedb.db.schema import TABLES

KEYS = {"series_id", "name", "description", "unit", "labels", "overlapping", "retention"}
DEFAULTS = {"unit": "dimensionless", "labels": {}, "overlapping": False, "retention": "medium", "description": None}
MERGE_PATCH = "application/merge-patch+json"


def stored(client: Any) -> list[dict[str, Any]]:
    """Every series, by id (the whole catalogue: what 'the database unchanged' compares)."""
    resp = client.get("/series", params={"limit": 10000})
    assert resp.status_code == 200, resp.text
    return sorted(resp.json(), key=lambda r: r["series_id"])


def bulk(client: Any, items: list[dict[str, Any]]) -> Any:
    return client.post("/series/bulk", json={"series": items})


def bulk_ok(client: Any, items: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    resp = bulk(client, items)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    results = resp.json()["series"]
    assert len(results) == len(items)
    for r in results:
        assert set(r) == {"series_id", "created"}, r
    return [(r["series_id"], r["created"]) for r in results]


def identity(item: dict[str, Any]) -> tuple[str, frozenset[tuple[str, str]]]:
    return item["name"].strip(), frozenset(item.get("labels", {}).items())


def expected_row(item: dict[str, Any], series_id: int) -> dict[str, Any]:
    """The series POST /series stores for an item: trimmed, defaults filled in."""
    full = {**DEFAULTS, **item}
    return {
        "series_id": series_id,
        "name": full["name"].strip(),
        "unit": full["unit"].strip(),
        "labels": full["labels"],
        "overlapping": full["overlapping"],
        "retention": full["retention"],
        "description": (full["description"] or "").strip() or None,
    }


def expected_flags(existing: set[Any], items: list[dict[str, Any]]) -> tuple[list[bool], list[int]]:
    """created per item, and per item the index of the item whose identity it shares first."""
    seen: dict[Any, int] = {}
    created, group = [], []
    for i, item in enumerate(items):
        key = identity(item)
        created.append(key not in existing and key not in seen)
        group.append(seen.setdefault(key, i))
    return created, group


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(t for t in TABLES if t != 'timedb_settings')} RESTART IDENTITY")


# ------------------------------------------------------------ POST /series/bulk: semantics

PRE = [
    {
        "name": "wind",
        "unit": "MW",
        "labels": {"site": "A"},
        "overlapping": True,
        "retention": "short",
        "description": "stored first",
    },
    {"name": "solar", "unit": "kW", "labels": {}},
]
ITEMS = [
    # 0: exists (PRE[0]); a different description does not matter
    {
        "name": "wind",
        "unit": "MW",
        "labels": {"site": "A"},
        "overlapping": True,
        "retention": "short",
        "description": "ignored",
    },
    # 1: new
    {"name": "wind", "unit": "MW", "labels": {"site": "B"}, "overlapping": True, "description": "  B farm "},
    # 2: item 1 again, untrimmed, with another description
    {"name": " wind\t", "unit": " MW ", "labels": {"site": "B"}, "overlapping": True, "description": "other"},
    # 3: exists (PRE[1]), labels by default
    {"name": "solar", "unit": "kW"},
    # 4: new: labels are part of the identity
    {"name": "solar", "unit": "kW", "labels": {"site": "A"}},
    # 5: new, every default
    {"name": "temp", "labels": {"b": "2", "a": "1"}},
    # 6: item 5 again: defaults spelt out, labels in another order
    {
        "name": "temp",
        "labels": {"a": "1", "b": "2"},
        "unit": "dimensionless",
        "overlapping": False,
        "retention": "medium",
    },
    # 7: exists (PRE[0]) again
    {"name": "wind", "unit": "MW", "labels": {"site": "A"}, "overlapping": True, "retention": "short"},
]


def test_bulk_gets_and_creates_in_input_order(client):
    pre_ids = [make_series(client, **p) for p in PRE]
    results = bulk_ok(client, ITEMS)
    created, group = expected_flags({identity(p) for p in PRE}, ITEMS)
    assert [c for _, c in results] == created == [False, True, False, False, True, True, False, False]
    ids = [sid for sid, _ in results]
    assert ids[0] == ids[7] == pre_ids[0] and ids[3] == pre_ids[1]
    for i, g in enumerate(group):
        assert ids[i] == ids[g]
    assert len(set(ids)) == len(set(group))
    # new series get new ids, in input order
    new = [ids[i] for i, c in enumerate(created) if c]
    assert new == sorted(new) and min(new) > max(pre_ids)
    rows = {r["series_id"]: r for r in stored(client)}
    assert len(rows) == len(set(ids))
    for i, item in enumerate(ITEMS):
        if created[i]:
            assert rows[ids[i]] == expected_row(item, ids[i])
    assert rows[pre_ids[0]] == expected_row(PRE[0], pre_ids[0])  # nothing of an existing series changes


def test_bulk_equals_post_series_one_by_one(client, clean_db):
    """The same items, once in one bulk request and once as POST /series calls in order, on the
    same starting catalogue: the same created flags, the same stored series."""
    rng = random.Random(10)
    # attributes follow from the identity, so no item conflicts
    pool = [
        {
            "name": rng.choice(["wind", " wind", "solar ", "load"]),
            "labels": labels,
            "unit": rng.choice(["MW", "kW", " MW"]),
            "overlapping": rng.random() < 0.5,
            "retention": rng.choice(["short", "medium", "long"]),
        }
        for labels in ({}, {"site": "A"}, {"site": "B"}, {"site": "A", "model": "m"})
        for _ in range(3)
    ]
    by_identity = {identity(p): p for p in pool}
    items = []
    for n in range(150):
        item = dict(rng.choice(list(by_identity.values())))
        item["description"] = rng.choice([None, "", f"d{n}", f"  d{n} "])
        items.append({k: v for k, v in item.items() if v is not None or rng.random() < 0.5})
    pre = list(by_identity.values())[::3]

    for p in pre:
        make_series(client, **p)
    results = bulk_ok(client, items)
    after_bulk = stored(client)

    truncate(clean_db)
    for p in pre:
        make_series(client, **p)
    one_by_one = []
    for item in items:
        resp = client.post("/series", json=item)
        assert resp.status_code == 200, resp.text
        one_by_one.append((resp.json()["series_id"], resp.json()["created"]))
    assert [c for _, c in results] == [c for _, c in one_by_one]
    # POST /series draws an id even for a series that exists, so the ids themselves differ:
    # they must correspond one to one, and name the same stored series
    rename = dict(zip((sid for sid, _ in results), (sid for sid, _ in one_by_one), strict=True))
    assert len(set(rename.values())) == len(rename)
    assert sorted(
        ({**r, "series_id": rename.get(r["series_id"], r["series_id"])} for r in after_bulk),
        key=lambda r: r["series_id"],
    ) == stored(client)
    created, _ = expected_flags({identity(p) for p in pre}, items)
    assert [c for _, c in results] == created


def test_bulk_again_returns_the_same_ids_not_created(client):
    first = bulk_ok(client, ITEMS)
    before = stored(client)
    again = bulk_ok(client, ITEMS)
    assert [sid for sid, _ in again] == [sid for sid, _ in first]
    assert not any(c for _, c in again)
    assert stored(client) == before


def test_bulk_repeated_item_keeps_the_first_description(client):
    results = bulk_ok(
        client, [{"name": "s", "description": "first"}, {"name": "s", "description": "second"}, {"name": "s"}]
    )
    assert results == [(1, True), (1, False), (1, False)]
    assert stored(client) == [expected_row({"name": "s", "description": "first"}, 1)]


def test_bulk_single_item_matches_post_series(client):
    assert bulk_ok(client, [{"name": "x", "unit": "MW"}]) == [(1, True)]
    resp = client.post("/series", json={"name": "x", "unit": "MW"})
    assert (resp.json()["series_id"], resp.json()["created"]) == (1, False)


# ---------------------------------------------------------- POST /series/bulk: conflicts


def test_conflicts_with_stored_series_list_every_item_and_change_nothing(client):
    wind = make_series(client, name="wind", unit="MW", labels={"site": "A"}, overlapping=True, retention="short")
    solar = make_series(client, name="solar", unit="kW")
    before = stored(client)
    items = [
        {"name": "new1"},  # 0 fine
        {"name": "wind", "unit": "KW", "labels": {"site": "A"}, "overlapping": True, "retention": "short"},  # 1 unit
        {"name": "solar", "unit": "kW"},  # 2 fine
        {"name": "solar", "unit": "kW", "overlapping": True},  # 3 overlapping
        {"name": "wind", "unit": "MW", "labels": {"site": "A"}, "overlapping": True},  # 4 retention
        {"name": "new2", "labels": {"site": "A"}},  # 5 fine
        {"name": "solar", "unit": "kW", "retention": "long", "overlapping": True},  # 6 both
    ]
    body = assert_problem(bulk(client, items), 409, "/problems/series-conflict")
    errors = body["errors"]
    assert [e["index"] for e in errors] == [1, 3, 4, 6]
    assert [e["series_id"] for e in errors] == [wind, solar, wind, solar]
    for e, field in zip(errors, ["unit", "overlapping", "retention", "overlapping"], strict=True):
        assert f"series[{e['index']}]" in e["message"] and field in e["message"], e
    assert "retention" in errors[3]["message"]
    assert "4 of 7" in body["detail"]
    assert stored(client) == before


def test_conflicts_between_items_of_one_request(client):
    before = stored(client)
    items = [
        {"name": "a", "unit": "MW"},  # 0 creates a
        {"name": "b"},  # 1
        {"name": " a", "unit": "kW"},  # 2 conflicts with 0
        {"name": "a", "unit": "MW", "description": "x"},  # 3 same as 0: fine
        {"name": "a", "unit": "MW", "overlapping": True},  # 4 conflicts with 0
        {"name": "b", "retention": "short"},  # 5 conflicts with 1
        {"name": "a", "unit": "kW", "labels": {"k": "v"}},  # 6 another identity: fine
    ]
    body = assert_problem(bulk(client, items), 409, "/problems/series-conflict")
    assert [(e["index"], e.get("series_id")) for e in body["errors"]] == [(2, None), (4, None), (5, None)]
    messages = [e["message"] for e in body["errors"]]
    assert "series[0]" in messages[0] and "unit" in messages[0]
    assert "series[0]" in messages[1] and "overlapping" in messages[1]
    assert "series[1]" in messages[2] and "retention" in messages[2]
    assert stored(client) == before == []


def test_a_stored_series_decides_over_the_first_item(client):
    """Item by item, POST /series compares each item with the stored series: an item that agrees
    with it is fine even after an earlier item that does not."""
    sid = make_series(client, name="a", unit="MW")
    body = assert_problem(
        bulk(client, [{"name": "a", "unit": "kW"}, {"name": "a", "unit": "MW"}, {"name": "a", "unit": "GW"}]),
        409,
        "/problems/series-conflict",
    )
    assert [(e["index"], e["series_id"]) for e in body["errors"]] == [(0, sid), (2, sid)]


def test_a_valid_request_after_a_refused_one_succeeds(client):
    assert_problem(bulk(client, [{"name": "a"}, {"name": "a", "unit": "MW"}]), 409)
    assert bulk_ok(client, [{"name": "a"}, {"name": "b"}]) == [(1, True), (2, True)]


# ------------------------------------------------------- POST /series/bulk: invalid input


def test_nul_characters_are_400s_listing_every_place_and_change_nothing(client):
    make_series(client, name="kept")
    before = stored(client)
    items = [
        {"name": "ok"},
        {"name": "a\u0000"},
        {"name": "b", "unit": "M\u0000W"},
        {"name": "c"},
        {"name": "d", "labels": {"k\u0000": "v"}},
        {"name": "e", "labels": {"k": "v\u0000"}},
        {"name": "f", "description": "\u0000"},
    ]
    body = assert_problem(bulk(client, items), 400, "/problems/invalid-input")
    assert [(e["in"], e["pointer"]) for e in body["errors"]] == [
        ("body", "/series/1/name"),
        ("body", "/series/2/unit"),
        ("body", "/series/4/labels/k\u0000"),
        ("body", "/series/5/labels/k"),
        ("body", "/series/6/description"),
    ]
    assert all("NUL" in e["message"] for e in body["errors"])
    assert body["detail"].endswith("(at /series/1/name)")
    assert stored(client) == before


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "\u00a0\u3000", "\x1c\x1f"])
def test_blank_name_is_400_naming_the_item(client, name):
    items = [{"name": "a"}, {"name": "b"}, {"name": name}, {"name": "c"}]
    body = assert_problem(bulk(client, items), 400)
    assert "/series/2/name" in body["detail"]
    assert stored(client) == []


@pytest.mark.grid
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"series": []},
        {"series": None},
        {"series": {"name": "a"}},
        {"series": [{"name": "a"}], "extra": 1},
        {"series": [{"name": "a"}, {}]},
        {"series": [{"name": "a"}, {"name": "b", "foo": 1}]},
        {"series": [{"name": "a"}, {"name": "b", "series_id": 3}]},
        {"series": [{"name": "a"}, {"name": "b", "labels": {"k": 1}}]},
        {"series": [{"name": "a"}, {"name": "b", "retention": "never"}]},
        {"series": [{"name": "a"}, {"name": "b", "overlapping": "yes"}]},
        {"series": [{"name": "a"}, {"name": "x" * 1001}]},
        {"series": [{"name": "a"}, "b"]},
        [{"name": "a"}],
    ],
    ids=lambda b: json.dumps(b)[:60],
)
def test_invalid_bodies_are_400_and_create_nothing(client, body):
    assert_problem(client.post("/series/bulk", json=body), 400)
    assert stored(client) == []


def test_not_json_is_400(client):
    resp = client.post("/series/bulk", content=b'{"series": [', headers={"Content-Type": "application/json"})
    assert_problem(resp, 400)


def incompressible(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))


HUGE_LABELS = {f"k{i}": incompressible(1000, i) for i in range(3)}


def test_identity_too_large_for_the_index_is_422(client):
    """(name, labels) beyond what the series_identity index holds: a client error, not a 503."""
    make_series(client, name="kept")
    before = stored(client)
    body = assert_problem(bulk(client, [{"name": "ok"}, {"name": "big", "labels": HUGE_LABELS}]), 422)
    assert "too long" in body["detail"]
    assert stored(client) == before


# ---------------------------------------------------------------- POST /series/bulk: limits


def test_ten_thousand_items_are_accepted_and_10001_refused(client):
    """The limit is the schema's maxItems: 10,001 items are a 400 (not a 413), nothing created."""
    items = [{"name": "farm", "unit": "MW", "labels": {"n": str(i)}, "overlapping": True} for i in range(10_000)]
    results = bulk_ok(client, items)
    assert results == [(i + 1, True) for i in range(10_000)]
    assert bulk_ok(client, items) == [(i + 1, False) for i in range(10_000)]
    body = assert_problem(bulk(client, [*items, {"name": "one too many"}]), 400)
    assert body["detail"].endswith("(at /series)")
    assert client.get("/series/count").json() == {"count": 10_000}
    assert client.get("/series/count", params={"name": "one too many"}).json() == {"count": 0}


# --------------------------------------------------------- POST /series/bulk: concurrency


def poster(body: dict[str, Any]) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.post("/series/bulk", json=body)


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_overlapping_bulk_calls_create_each_series_once(live, live_server, attempt):
    shared = [
        {"name": f"shared{attempt}", "unit": "MW", "labels": {"i": str(i)}, "overlapping": True} for i in range(400)
    ]
    bodies = []
    for t in range(4):
        items = shared[t * 100 :] + shared[: t * 100]  # each thread starts elsewhere ...
        if t % 2:
            items.reverse()  # ... and half of them go the other way (lock order must not matter)
        items += [{"name": f"own{t}", "labels": {"i": str(i)}} for i in range(50)]
        bodies.append({"series": items})
    responses = parallel(live_server, [poster(b) for b in bodies])
    assert [r.status_code for r in responses] == [200] * 4, [r.text[:300] for r in responses]

    ids: dict[Any, set[int]] = {}
    created: dict[Any, int] = {}
    for body, resp in zip(bodies, responses, strict=True):
        for item, result in zip(body["series"], resp.json()["series"], strict=True):
            ids.setdefault(identity(item), set()).add(result["series_id"])
            created[identity(item)] = created.get(identity(item), 0) + result["created"]
    assert all(len(s) == 1 for s in ids.values())
    assert set(created.values()) == {1}  # exactly one call created each series
    rows = stored(live)
    assert len(rows) == 400 + 4 * 50
    assert {identity(r): {r["series_id"]} for r in rows} == ids


def test_concurrent_conflicting_bulk_calls_one_wins_whole(live, live_server, clean_db):
    a = {"series": [{"name": "x", "unit": "MW"}, {"name": "y", "unit": "MW"}, {"name": "only_a"}]}
    b = {"series": [{"name": "y", "unit": "kW"}, {"name": "x", "unit": "kW"}, {"name": "only_b"}]}
    for _ in range(5):
        truncate(clean_db)
        responses = parallel(live_server, [poster(a), poster(b)])
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 409], [r.text for r in responses]
        winner = a if responses[0].status_code == 200 else b
        loser = responses[1] if winner is a else responses[0]
        assert [e["index"] for e in loser.json()["errors"]] == [0, 1]
        assert sorted(r["name"] for r in stored(live)) == sorted(i["name"] for i in winner["series"])
        assert {r["unit"] for r in stored(live) if r["name"] in "xy"} == {winner["series"][0]["unit"]}


# ------------------------------------------------------------------ GET /series/{series_id}


def test_get_one_series(client):
    sid = make_series(
        client, name=" wind ", unit="MW", labels={"site": "A"}, overlapping=True, retention="long", description="d"
    )
    make_series(client, name="other")
    resp = client.get(f"/series/{sid}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "series_id": sid,
        "name": "wind",
        "unit": "MW",
        "labels": {"site": "A"},
        "overlapping": True,
        "retention": "long",
        "description": "d",
    }
    assert resp.json() == client.get("/series", params={"series_id": sid}).json()[0]


def test_get_unknown_series_is_404(client):
    make_series(client, name="a")
    body = assert_problem(client.get("/series/2"), 404, "/problems/series-not-found")
    assert "2" in body["detail"]


@pytest.mark.parametrize("series_id", ["0", "-1", "9223372036854775808"])
def test_get_bad_series_id_is_400(client, series_id):
    assert_problem(client.get(f"/series/{series_id}"), 400)


@pytest.mark.parametrize("series_id", ["abc", "1.5", "1e3"])
def test_get_non_integer_series_id_is_404(client, series_id):
    # not an integer: no route matches (like any unknown path)
    assert_problem(client.get(f"/series/{series_id}"), 404)


def test_other_series_paths_keep_their_meaning(client):
    make_series(client, name="a", labels={"site": "A"})
    assert client.get("/series/count").json() == {"count": 1}
    assert client.get("/series/labels", params={"label_key": "site"}).json()["values"] == ["A"]
    assert client.get("/series/bulk").status_code == 405


# ---------------------------------------------------------------- PATCH /series/{series_id}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396, section 2, as written there."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patched(series: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What the series should be after the patch: the merge, then labels and description as stored."""
    doc = merge_patch(series, patch)
    doc["labels"] = doc.get("labels", {})
    doc["description"] = (doc.get("description") or "").strip() or None
    for field in ("name", "unit"):
        doc[field] = doc[field].strip()
    return doc


ORIGINAL = {
    "name": "wind",
    "unit": "MW",
    "labels": {"site": "A", "model": "m1", "run": "r1"},
    "overlapping": True,
    "retention": "short",
    "description": "orig",
}

PATCHES = [
    {},
    {"description": "new text"},
    {"description": "  padded \n"},
    {"description": ""},
    {"description": "   "},
    {"description": None},
    {"labels": {"model": "m2"}},
    {"labels": {"run": None}},
    {"labels": {"zone": "z"}},
    {"labels": {"run": None, "model": "m2", "zone": "z", "absent": None}},
    {"labels": {"absent": None}},
    {"labels": {}},
    {"labels": None},
    {"labels": {"site": None, "model": None, "run": None}},
    {"labels": None, "description": None},
    {"labels": {"site": ""}},
    {"name": "wind", "unit": "MW", "overlapping": True, "retention": "short", "labels": {"x": "1"}},
    {"name": "  wind ", "unit": " MW\t"},
]


@pytest.mark.grid
@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: json.dumps(p))
@pytest.mark.parametrize("content_type", [MERGE_PATCH, "application/json"])
def test_patch_merges(client, patch, content_type):
    sid = make_series(client, **ORIGINAL)
    other = make_series(client, name="wind", labels={"site": "B"})
    before = client.get(f"/series/{sid}").json()
    expected = patched(before, patch)
    resp = client.patch(f"/series/{sid}", content=json.dumps(patch), headers={"Content-Type": content_type})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == expected
    assert set(expected) == KEYS
    assert client.get(f"/series/{sid}").json() == expected
    assert client.get(f"/series/{other}").json()["labels"] == {"site": "B"}


def test_patch_with_own_series_id_is_accepted(client):
    sid = make_series(client, name="a")
    resp = client.patch(f"/series/{sid}", json={"series_id": sid, "description": "d"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["description"] == "d"


def test_patch_the_answer_of_get_back(client):
    """A client may send back what GET answered, with its changes: only those apply."""
    sid = make_series(client, **ORIGINAL)
    doc = client.get(f"/series/{sid}").json()
    doc["labels"] = {**doc["labels"], "run": None, "zone": "z"}
    resp = client.patch(f"/series/{sid}", json=doc)
    assert resp.status_code == 200, resp.text
    assert resp.json()["labels"] == {"site": "A", "model": "m1", "zone": "z"}


def test_patches_apply_one_after_another(client):
    sid = make_series(client, **ORIGINAL)
    doc = client.get(f"/series/{sid}").json()
    for patch in PATCHES:
        doc = patched(doc, patch)
        resp = client.patch(f"/series/{sid}", json=patch)
        assert resp.status_code == 200, resp.text
        assert resp.json() == doc


@pytest.mark.grid
@pytest.mark.parametrize(
    ("patch", "fields"),
    [
        ({"name": "solar"}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"unit": "kW"}, ["unit"]),
        ({"unit": "mw"}, ["unit"]),
        ({"overlapping": False}, ["overlapping"]),
        ({"retention": "long"}, ["retention"]),
        ({"series_id": 999}, ["series_id"]),
        ({"unit": "kW", "labels": {"x": "1"}, "description": "changed"}, ["unit"]),
        ({"name": "wind", "unit": "kW", "retention": "medium"}, ["unit", "retention"]),
    ],
    ids=lambda v: json.dumps(v),
)
def test_immutable_fields_are_409_naming_them(client, patch, fields):
    sid = make_series(client, **ORIGINAL)
    before = stored(client)
    body = assert_problem(client.patch(f"/series/{sid}", json=patch), 409, "/problems/immutable-field")
    head = body["detail"].split(" cannot")[0]
    named = [f for f in ("series_id", "name", "unit", "overlapping", "retention") if f in head]
    assert named == fields, body["detail"]
    assert stored(client) == before


def test_patch_to_another_series_identity_is_409(client):
    a = make_series(client, name="wind", labels={"site": "A"})
    b = make_series(client, name="wind", labels={"site": "B", "model": "m"})
    make_series(client, name="solar", labels={"site": "C"})
    before = stored(client)
    body = assert_problem(
        client.patch(f"/series/{b}", json={"labels": {"site": "A", "model": None}}), 409, "/problems/series-conflict"
    )
    assert f"series_id={a}" in body["detail"]
    assert body["series_id"] == a
    assert stored(client) == before
    # the same labels under another name are no clash
    resp = client.patch(f"/series/{b}", json={"labels": {"site": "C", "model": None}})
    assert resp.status_code == 200, resp.text
    # ... nor is the series' own identity
    assert client.patch(f"/series/{b}", json={"labels": {"site": "C"}}).status_code == 200


def test_patched_identity_is_what_post_series_finds(client):
    sid = make_series(client, name="wind", unit="MW", labels={"site": "A"})
    client.patch(f"/series/{sid}", json={"labels": {"site": "B"}})
    found = client.post("/series", json={"name": "wind", "unit": "MW", "labels": {"site": "B"}}).json()
    assert (found["series_id"], found["created"]) == (sid, False)
    fresh = client.post("/series", json={"name": "wind", "unit": "MW", "labels": {"site": "A"}}).json()
    assert fresh["created"] is True and fresh["series_id"] != sid
    assert bulk_ok(client, [{"name": "wind", "unit": "MW", "labels": {"site": "B"}}]) == [(sid, False)]


def test_patch_unknown_series_is_404(client):
    assert_problem(client.patch("/series/5", json={"description": "x"}), 404, "/problems/series-not-found")


@pytest.mark.grid
@pytest.mark.parametrize(
    "patch",
    [
        {"foo": 1},
        {"labels": {"k": 1}},
        {"labels": {"k": True}},
        {"labels": {"k": {"nested": "x"}}},
        {"labels": ["k"]},
        {"labels": "k=v"},
        {"labels": {"k": "x" * 1001}},
        {"description": 5},
        {"description": "x" * 10001},
        {"name": None},
        {"unit": None},
        {"overlapping": None},
        {"overlapping": "true"},
        {"retention": None},
        {"retention": "never"},
        {"series_id": 0},
        {"series_id": None},
        [],
        "description",
        None,
    ],
    ids=lambda p: json.dumps(p)[:60],
)
def test_invalid_patch_is_400(client, patch):
    sid = make_series(client, **ORIGINAL)
    before = stored(client)
    resp = client.patch(f"/series/{sid}", content=json.dumps(patch), headers={"Content-Type": MERGE_PATCH})
    assert_problem(resp, 400)
    assert stored(client) == before


def test_patch_without_body_or_with_other_media_type(client):
    sid = make_series(client, name="a")
    assert_problem(client.patch(f"/series/{sid}", headers={"Content-Type": MERGE_PATCH}), 400)
    assert_problem(
        client.patch(f"/series/{sid}", content=b"description=x", headers={"Content-Type": "text/plain"}), 415
    )


@pytest.mark.parametrize(
    "patch",
    [{"description": "a\u0000"}, {"labels": {"k": "\u0000"}}, {"labels": {"\u0000": "v"}}],
    ids=["description", "label-value", "label-key"],
)
def test_nul_in_patch_is_400_naming_the_place(client, patch):
    sid = make_series(client, name="a")
    before = stored(client)
    problem = assert_problem(client.patch(f"/series/{sid}", json=patch), 400, "/problems/invalid-input")
    [(field, place)] = [(k, v) for k, v in patch.items()]
    pointer = f"/{field}" + ("" if isinstance(place, str) else f"/{next(iter(place))}")
    assert problem["errors"] == [{"in": "body", "pointer": pointer, "message": problem["errors"][0]["message"]}]
    assert "NUL" in problem["detail"]
    assert stored(client) == before


def test_patch_to_an_identity_too_large_for_the_index_is_422(client):
    sid = make_series(client, name="a", labels={"site": "A"})
    before = stored(client)
    body = assert_problem(client.patch(f"/series/{sid}", json={"labels": HUGE_LABELS}), 422)
    assert "too long" in body["detail"]
    assert stored(client) == before


# ------------------------------------------------------------ PATCH: concurrency (live)


def patcher(series_id: int, patch: dict[str, Any]) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.patch(f"/series/{series_id}", json=patch, headers={"Content-Type": MERGE_PATCH})


def test_concurrent_patches_to_one_identity_let_one_through(live, live_server):
    for round_ in range(3):
        ids = [make_series(live, name=f"race{round_}", labels={"n": str(i)}) for i in range(8)]
        responses = parallel(live_server, [patcher(sid, {"labels": {"n": None, "to": "same"}}) for sid in ids])
        assert sorted(r.status_code for r in responses) == [200] + [409] * 7, [r.text for r in responses]
        [winner] = [sid for sid, r in zip(ids, responses, strict=True) if r.status_code == 200]
        for sid, r in zip(ids, responses, strict=True):
            expected = {"to": "same"} if sid == winner else {"n": str(ids.index(sid))}
            assert live.get(f"/series/{sid}").json()["labels"] == expected
            if sid != winner:
                assert r.json()["type"] == "/problems/series-conflict"


def test_concurrent_patch_and_create_of_one_identity(live, live_server):
    for round_ in range(6):
        sid = make_series(live, name="race", unit="MW", labels={"from": str(round_)})
        target = {"name": "race", "unit": "MW", "labels": {"to": str(round_)}}
        calls = [
            patcher(sid, {"labels": {"from": None, "to": str(round_)}}),
            lambda c, body=target: c.post("/series", json=body),
            lambda c, body=target: c.post("/series/bulk", json={"series": [body]}),
        ]
        patch, single, many = parallel(live_server, calls)
        assert single.status_code == many.status_code == 200, (single.text, many.text)
        created = single.json()["created"] + many.json()["series"][0]["created"]
        ids = {single.json()["series_id"], many.json()["series"][0]["series_id"]}
        if patch.status_code == 200:
            assert ids == {sid} and created == 0
        else:
            assert_problem(patch, 409, "/problems/series-conflict")
            assert len(ids) == 1 and ids != {sid} and created == 1
        assert live.get("/series/count", params={"name": "race", "labels": json.dumps({"to": str(round_)})}).json() == {
            "count": 1
        }


# ------------------------------------------------------------------------ Idempotency-Key


def test_bulk_retry_with_idempotency_key_replays_the_created_flags(client):
    items = [{"name": "a"}, {"name": "b"}, {"name": "a"}]
    headers = {"Idempotency-Key": "bulk-1"}
    first = client.post("/series/bulk", json={"series": items}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "series": [
            {"series_id": 1, "created": True},
            {"series_id": 2, "created": True},
            {"series_id": 1, "created": False},
        ]
    }
    assert "idempotent-replayed" not in first.headers
    retry = client.post("/series/bulk", json={"series": items}, headers=headers)
    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    # without the key the same request is answered anew: nothing is created this time
    assert bulk_ok(client, items) == [(1, False), (2, False), (1, False)]
    assert_problem(
        client.post("/series/bulk", json={"series": items[:1]}, headers=headers),
        422,
        "/problems/idempotency-key-reused",
    )
    assert len(stored(client)) == 2


def test_refused_bulk_stores_no_idempotency_key(client):
    headers = {"Idempotency-Key": "bulk-2"}
    body = {"series": [{"name": "a"}, {"name": "a", "unit": "MW"}]}
    assert_problem(client.post("/series/bulk", json=body, headers=headers), 409)
    make_series(client, name="a", unit="MW")
    # the conflict is gone: the retry runs again
    resp = client.post("/series/bulk", json={"series": [{"name": "a", "unit": "MW"}]}, headers=headers)
    assert resp.status_code == 200 and resp.json()["series"] == [{"series_id": 1, "created": False}]


def test_patch_retry_with_idempotency_key_replays_the_first_answer(client):
    sid = make_series(client, name="a", labels={"site": "A"})
    headers = {"Idempotency-Key": "patch-1", "Content-Type": MERGE_PATCH}
    patch = json.dumps({"labels": {"model": "m1"}})
    first = client.patch(f"/series/{sid}", content=patch, headers=headers)
    assert first.status_code == 200, first.text
    client.patch(f"/series/{sid}", json={"labels": {"model": None}})  # someone else changes it meanwhile
    retry = client.patch(f"/series/{sid}", content=patch, headers=headers)
    assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
    assert client.get(f"/series/{sid}").json()["labels"] == {"site": "A"}  # the retry applied nothing
