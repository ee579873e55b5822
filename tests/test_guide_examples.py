"""The requests of the users' API setup guide still work, with the response shapes it relies on.

The guide (docs/api_setup of the reference implementation) shows `uvicorn timedb.api:app`, the
doc pages, an endpoint overview, and a PUT /values example sent with curl and with Python
`requests`, whose result is read as `result['updated']`. Each test replays one of those against
a real uvicorn server on a clean database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import make_partitions

pytestmark = pytest.mark.processes

# The curl example of "Updating Records via API", verbatim.
GUIDE_PUT_BODY = {
    "updates": [
        {
            "valid_time": "2025-01-01T12:00:00Z",
            "series_id": 1,
            "batch_id": 42,
            "value": 150.0,
            "annotation": "Corrected reading",
            "tags": ["reviewed"],
            "changed_by": "user@example.com",
        }
    ]
}

# "API Endpoints Overview" of the guide
OVERVIEW = [
    ("GET", "/"),
    ("POST", "/values"),
    ("GET", "/values"),
    ("PUT", "/values"),
    ("POST", "/series"),
    ("GET", "/series"),
    ("GET", "/series/labels"),
    ("GET", "/series/count"),
]


def make_overlapping_series_with_batch_42(live, dsn: str) -> None:
    """Series 1 (overlapping) whose batch 42 holds 2025-01-01T12:00Z, as the guide's example assumes
    (its month's partitions made first: a write that makes one spends an identity value)."""
    make_partitions(dsn, "2025-01")
    resp = live.post(
        "/series", json={"name": "wind_power", "unit": "MW", "labels": {"site": "Gotland"}, "overlapping": True}
    )
    assert resp.json()["series_id"] == 1
    start = datetime(2024, 12, 1, tzinfo=UTC)
    for n in range(1, 43):  # batch ids come from a sequence: the 42nd insert is batch 42, the newest forecast
        known_time = (start + timedelta(hours=n)).isoformat()
        resp = live.post(
            "/values",
            json={
                "series_id": 1,
                "known_time": known_time,
                "data": [{"valid_time": "2025-01-01T12:00:00Z", "value": float(n)}],
            },
        )
        assert resp.status_code == 200, resp.text
    assert resp.json()["batch_id"] == 42


def test_root_lists_the_endpoints_of_the_overview(live):
    resp = live.get("/")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["name", "version", "description", "endpoints", "admin_note"]
    assert set(body["endpoints"]) == {
        "insert_values",
        "read_values",
        "update_records",
        "create_series",
        "list_series",
        "series_labels",
        "series_count",
    }
    listed = {v.split(" - ")[0] for v in body["endpoints"].values()}
    assert listed == {f"{m} {p}" for m, p in OVERVIEW if p != "/"}


@pytest.mark.parametrize(("method", "path"), OVERVIEW)
def test_every_overview_endpoint_exists(live, method, path):
    resp = live.request(method, path, params={"label_key": "site"} if path == "/series/labels" else None)
    unrouted = resp.status_code == 405 or (resp.status_code == 404 and resp.json()["type"] == "/problems/not-found")
    assert not unrouted, (method, path, resp.status_code, resp.text)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_doc_pages(live, path):
    resp = live.get(path, follow_redirects=True)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")


def test_put_values_curl_example(live, clean_db):
    make_overlapping_series_with_batch_42(live, clean_db)
    resp = live.put("/values", json=GUIDE_PUT_BODY, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert len(result["updated"]) == 1
    updated = result["updated"][0]
    # the reference's keys, in its order, then change_time
    assert list(updated) == ["overlapping_id", "batch_id", "valid_time", "series_id", "change_time"]
    assert (updated["batch_id"], updated["series_id"]) == (42, 1)
    assert datetime.fromisoformat(updated["valid_time"]) == datetime(2025, 1, 1, 12, tzinfo=UTC)

    audit = live.get(
        "/values", params={"series_id": 1, "include_updates": "true", "start_valid": "2025-01-01T12:00:00Z"}
    ).json()["data"]
    [correction] = [r for r in audit if r["changed_by"] == "user@example.com"]
    assert (correction["value"], correction["annotation"], correction["tags"], correction["batch_id"]) == (
        150.0,
        "Corrected reading",
        ["reviewed"],
        42,
    )


@pytest.mark.parametrize(
    "valid_time",
    [
        datetime(2025, 1, 1, 12),  # naive, as `valid_time.isoformat()` gives for a naive datetime
        datetime(2025, 1, 1, 12, tzinfo=UTC),
    ],
)
def test_put_values_python_example(live, clean_db, valid_time):
    make_overlapping_series_with_batch_42(live, clean_db)
    series_id, batch_id = 1, 42
    # the `requests.put(...)` of the guide, same JSON
    response = live.put(
        "/values",
        json={
            "updates": [
                {
                    "valid_time": valid_time.isoformat(),
                    "series_id": series_id,
                    "batch_id": batch_id,
                    "value": 150.0,
                    "annotation": "Corrected",
                    "tags": ["reviewed"],
                    "changed_by": "user@example.com",
                }
            ]
        },
    )
    result = response.json()
    assert f"Updated: {len(result['updated'])}" == "Updated: 1"
    latest = live.get("/values", params={"series_id": 1}).json()
    assert latest == {"count": 1, "data": [{"valid_time": "2025-01-01T12:00:00+00:00", "value": 150.0}]}


def test_put_values_example_on_a_flat_series(live):
    """The same body shape corrects a measured (flat) series; batch_id plays no part there."""
    sid = live.post("/series", json={"name": "meter", "unit": "MW"}).json()["series_id"]
    live.post("/values", json={"series_id": sid, "data": [{"valid_time": "2025-01-01T12:00:00Z", "value": 1.0}]})
    body = {"updates": [{**GUIDE_PUT_BODY["updates"][0], "series_id": sid, "batch_id": None}]}
    result = live.put("/values", json=body).json()
    assert len(result["updated"]) == 1
    assert list(result["updated"][0]) == ["flat_id", "series_id", "valid_time", "change_time"]


def test_overview_response_shapes(live):
    """Every overview endpoint answers with the fields the reference documented."""
    created = live.post(
        "/series",
        json={
            "name": "fc",
            "unit": "MW",
            "labels": {"site": "A", "model": "m1"},
            "overlapping": True,
            "retention": "short",
            "description": "Forecast",
        },
    )
    assert created.status_code == 200
    assert {"series_id", "message"} <= created.json().keys()
    sid = created.json()["series_id"]

    inserted = live.post(
        "/values",
        json={
            "name": "fc",
            "labels": {"site": "A"},
            "known_time": "2025-01-01T00:00:00Z",
            "data": [
                {"valid_time": "2025-01-01T00:00:00Z", "value": 100.0},
                {"valid_time": "2025-01-01T01:00:00Z", "value": 101.0},
            ],
        },
    )
    assert inserted.status_code == 200
    assert list(inserted.json()) == ["batch_id", "series_id", "rows_inserted"]
    assert inserted.json()["rows_inserted"] == 2

    listed = live.get("/series", params={"labels": '{"site":"A"}'}).json()
    assert listed == [
        {
            "series_id": sid,
            "name": "fc",
            "description": "Forecast",
            "unit": "MW",
            "labels": {"site": "A", "model": "m1"},
            "overlapping": True,
            "retention": "short",
        }
    ]
    assert live.get("/series/labels", params={"label_key": "site"}).json() == {"label_key": "site", "values": ["A"]}
    assert live.get("/series/count").json() == {"count": 1}

    latest = live.get("/values", params={"name": "fc"}).json()
    assert latest == {
        "count": 2,
        "data": [
            {"valid_time": "2025-01-01T00:00:00+00:00", "value": 100.0},
            {"valid_time": "2025-01-01T01:00:00+00:00", "value": 101.0},
        ],
    }
    versions = live.get("/values", params={"name": "fc", "versions": "true"}).json()
    assert [list(r) for r in versions["data"]] == [["known_time", "valid_time", "value"]] * 2
