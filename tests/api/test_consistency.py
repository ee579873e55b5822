"""The `consistency` parameter of every read, on a server without a read replica: accepted,
checked, and changing nothing (the replica itself: tests/api/test_read_replica.py)."""

from __future__ import annotations

import pytest

from tests.helpers import assert_problem, insert, make_series

# every read operation: (method, path, query, body)
READS = [
    ("GET", "/values", {"series_id": "1"}, None),
    ("POST", "/values/query", {}, {"series": [{"series_id": 1}]}),
    ("GET", "/series", {}, None),
    ("GET", "/series/1", {}, None),
    ("GET", "/series/labels", {"label_key": "site"}, None),
    ("GET", "/series/count", {}, None),
]
IDS = [f"{method} {path}" for method, path, _, _ in READS]


@pytest.fixture
def stored(client):
    sid = make_series(client, name="meter", labels={"site": "Gotland"})
    insert(client, sid, [("2025-01-01T00:00:00Z", 1.0), ("2025-01-01T01:00:00Z", 2.0)])
    return client


@pytest.mark.parametrize(("method", "path", "query", "body"), READS, ids=IDS)
def test_both_consistencies_read_the_primary_alike(stored, method, path, query, body):
    answers = [
        stored.request(method, path, params={**query, **extra}, json=body)
        for extra in ({}, {"consistency": "eventual"}, {"consistency": "strong"})
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()


@pytest.mark.parametrize(("method", "path", "query", "body"), READS, ids=IDS)
@pytest.mark.parametrize("bad", ["STRONG", "linearizable", ""])
def test_another_consistency_is_a_400_naming_it(stored, method, path, query, body, bad):
    resp = stored.request(method, path, params={**query, "consistency": bad}, json=body)
    problem = assert_problem(resp, 400, "/problems/schema-violation")
    assert [(e["in"], e["name"]) for e in problem["errors"]] == [("query", "consistency")]


def test_readyz_without_a_replica_is_unchanged(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready"}


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_bad_series_id_in_the_path_is_named_once(client, method):
    """Connexion 3.3 appends path-level parameters to an operation's own list once per
    middleware: the spec lists series_id in each operation, so a problem names it once."""
    problem = assert_problem(client.request(method, "/series/0", json={}), 400, "/problems/schema-violation")
    assert [(e["in"], e["name"]) for e in problem["errors"]] == [("path", "series_id")]


def test_no_path_of_the_spec_has_parameters_of_its_own():
    import yaml

    from timedb.app import spec_path

    spec = yaml.safe_load(spec_path().read_text(encoding="utf-8"))
    assert [path for path, item in spec["paths"].items() if "parameters" in item] == []
