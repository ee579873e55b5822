from tests.helpers import assert_problem, make_series


def test_root_lists_endpoints(client):
    resp = client.get("/")
    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "TimeDB API"
    assert list(body) == ["name", "version", "description", "endpoints", "admin_note"]
    assert body["endpoints"]["read_values"] == "GET /values - Read time series values"


def test_create_and_count(client):
    make_series(client, name="a")
    assert client.get("/series/count").json() == {"count": 1}
    assert_problem(client.get("/series", params={"labels": "x"}), 400, "/problems/invalid-input")
