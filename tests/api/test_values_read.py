"""GET /values: record shapes, latest/versions/audit reads, time windows, identity, streaming."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import AUDIT_KEYS, assert_problem, insert, make_series, read

KT1 = "2025-01-01T00:00:00+00:00"
KT2 = "2025-01-01T06:00:00+00:00"
VT0 = "2025-01-01T00:00:00+00:00"
VT1 = "2025-01-01T01:00:00+00:00"


def forecast(client, **overrides):
    """The reference example: versions at KT1 (100, 101) and KT2 (110, 111)."""
    sid = make_series(client, name="fc", overlapping=True, **overrides)
    b1 = insert(client, sid, [(VT0, 100.0), (VT1, 101.0)], known_time=KT1)["batch_id"]
    b2 = insert(client, sid, [(VT0, 110.0), (VT1, 111.0)], known_time=KT2)["batch_id"]
    return sid, b1, b2


def hours(n: int, start: str = VT0) -> list[str]:
    t0 = datetime.fromisoformat(start)
    return [(t0 + timedelta(hours=i)).isoformat() for i in range(n)]


# --- shapes ------------------------------------------------------------------------------------


def test_latest_read_has_the_reference_shape(client):
    sid, _, _ = forecast(client)
    resp = client.get("/values", params={"series_id": sid})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {
        "count": 2,
        "data": [{"valid_time": VT0, "value": 110.0}, {"valid_time": VT1, "value": 111.0}],
    }
    assert all(list(r) == ["valid_time", "value"] for r in resp.json()["data"])
    assert list(resp.json()) == ["count", "data"]


def test_versions_read_matches_the_reference_example(client):
    forecast(client)
    data = read(client, name="fc", versions=True)
    assert data == [
        {"known_time": KT1, "valid_time": VT0, "value": 100.0},
        {"known_time": KT1, "valid_time": VT1, "value": 101.0},
        {"known_time": KT2, "valid_time": VT0, "value": 110.0},
        {"known_time": KT2, "valid_time": VT1, "value": 111.0},
    ]
    assert all(list(r) == ["known_time", "valid_time", "value"] for r in data)


def test_include_updates_returns_every_row_with_audit_fields(client):
    sid, b1, b2 = forecast(client)
    data = read(client, series_id=sid, include_updates=True)
    assert all(list(r) == AUDIT_KEYS for r in data)
    assert [(r["known_time"], r["valid_time"], r["value"], r["batch_id"]) for r in data] == [
        (KT1, VT0, 100.0, b1),
        (KT1, VT1, 101.0, b1),
        (KT2, VT0, 110.0, b2),
        (KT2, VT1, 111.0, b2),
    ]
    assert all(r["changed_by"] is None and r["annotation"] is None and r["tags"] is None for r in data)
    for r in data:
        datetime.fromisoformat(r["change_time"])
        assert r["change_time"].endswith("+00:00")


def test_flat_include_updates_has_null_batch_id(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    insert(client, sid, [(VT0, 2.0)], known_time=KT2)
    data = read(client, series_id=sid, include_updates=True)
    assert all(list(r) == AUDIT_KEYS for r in data)
    assert [(r["known_time"], r["value"], r["batch_id"]) for r in data] == [(KT1, 1.0, None), (KT2, 2.0, None)]


def test_versions_and_include_updates_together_are_a_400(client):
    """Two read modes at once: a 400 naming both (it used to pick include_updates silently)."""
    sid, _, _ = forecast(client)
    resp = client.get("/values", params={"series_id": sid, "versions": "true", "include_updates": "true"})
    problem = assert_problem(resp, 400)
    assert "versions" in problem["detail"] and "include_updates" in problem["detail"]
    # either one alone, or one of them false, still reads
    assert len(read(client, series_id=sid, versions=True, include_updates=False)) == 4
    assert len(read(client, series_id=sid, versions=False, include_updates=True)) == 4


def test_empty_series_reads_count_zero(client):
    sid = make_series(client, name="fc", overlapping=True)
    for mode in ({}, {"versions": "true"}, {"include_updates": "true"}):
        resp = client.get("/values", params={"series_id": sid, **mode})
        assert resp.status_code == 200
        assert resp.json() == {"count": 0, "data": []}


@pytest.mark.parametrize(("value", "versions"), [("true", True), ("True", True), ("false", False), ("FALSE", False)])
def test_boolean_spellings(client, value, versions):
    sid, _, _ = forecast(client)
    resp = client.get("/values", params={"series_id": sid, "versions": value})
    assert resp.status_code == 200, resp.text
    assert resp.json()["count"] == (4 if versions else 2)


@pytest.mark.parametrize("flag", ["versions", "include_updates"])
def test_bad_boolean_is_a_problem(client, flag):
    sid, _, _ = forecast(client)
    resp = client.get("/values", params={"series_id": sid, flag: "maybe"})
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code)


# --- intervals in reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_valid_time_end_appears_only_when_set(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    resp = client.post(
        "/values",
        json={
            "series_id": sid,
            "known_time": KT1,
            "data": [
                {"valid_time": VT0, "value": 1.0},
                {"valid_time": VT1, "valid_time_end": "2025-01-01T02:00:00Z", "value": 2.0},
            ],
        },
    )
    assert resp.status_code == 200, resp.text
    end = "2025-01-01T02:00:00+00:00"
    assert read(client, series_id=sid) == [
        {"valid_time": VT0, "value": 1.0},
        {"valid_time": VT1, "valid_time_end": end, "value": 2.0},
    ]
    assert read(client, series_id=sid, versions=True) == [
        {"known_time": KT1, "valid_time": VT0, "value": 1.0},
        {"known_time": KT1, "valid_time": VT1, "valid_time_end": end, "value": 2.0},
    ]
    audit = read(client, series_id=sid, include_updates=True)
    assert "valid_time_end" not in audit[0]
    assert audit[1]["valid_time_end"] == end


# --- valid range ---------------------------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"start_valid": "2025-01-01T01:00:00Z"}, [1, 2, 3]),  # inclusive start
        ({"end_valid": "2025-01-01T02:00:00Z"}, [0, 1]),  # exclusive end
        ({"start_valid": "2025-01-01T01:00:00Z", "end_valid": "2025-01-01T03:00:00Z"}, [1, 2]),
        ({"start_valid": "2025-01-01T03:00:00+01:00", "end_valid": "2025-01-01T02:00:00-01:00"}, [2]),  # offsets
        ({"start_valid": "2025-01-01T00:59:59.999999Z"}, [1, 2, 3]),
        ({"start_valid": "2025-01-01T01:00:00.000001Z"}, [2, 3]),
        ({"start_valid": "2025-01-01T03:00:00Z", "end_valid": "2025-01-01T01:00:00Z"}, []),  # start > end
        ({"start_valid": "2025-01-01T01:00:00Z", "end_valid": "2025-01-01T01:00:00Z"}, []),  # empty range
        ({"start_valid": "2025-01-01"}, [0, 1, 2, 3]),  # date only
        ({"end_valid": "2025-01-01T02:00:00"}, [0, 1]),  # naive = UTC
        ({"end_valid": "2025-01-01t02:00:00z"}, [0, 1]),  # lower case
    ],
)
def test_valid_range(client, overlapping, params, expected):
    sid = make_series(client, name="s", overlapping=overlapping)
    times = hours(4)
    insert(client, sid, [(t, float(i)) for i, t in enumerate(times)], known_time=KT1)
    for mode in ({}, {"versions": True}, {"include_updates": True}):
        data = read(client, series_id=sid, **params, **mode)
        assert [r["value"] for r in data] == [float(i) for i in expected], mode


def test_latest_read_is_ordered_by_valid_time(client):
    sid = make_series(client, name="s")
    times = hours(6)
    insert(client, sid, [(t, float(i)) for i, t in reversed(list(enumerate(times)))])
    assert [r["valid_time"] for r in read(client, series_id=sid)] == [
        datetime.fromisoformat(t).astimezone(UTC).isoformat() for t in times
    ]


# --- known range and as-of reads -------------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize(
    ("params", "latest", "versions"),
    [
        ({}, [110.0, 111.0], [100.0, 101.0, 110.0, 111.0]),
        ({"end_known": KT2}, [100.0, 101.0], [100.0, 101.0]),  # exclusive
        ({"end_known": "2025-01-01T06:00:01Z"}, [110.0, 111.0], [100.0, 101.0, 110.0, 111.0]),
        ({"end_known": "2025-01-01T06:00:00.000001Z"}, [110.0, 111.0], [100.0, 101.0, 110.0, 111.0]),
        ({"end_known": KT1}, [], []),
        ({"start_known": KT2}, [110.0, 111.0], [110.0, 111.0]),  # inclusive
        ({"start_known": "2025-01-01T00:00:00.000001Z"}, [110.0, 111.0], [110.0, 111.0]),
        ({"start_known": KT1, "end_known": KT2}, [100.0, 101.0], [100.0, 101.0]),
        ({"start_known": KT2, "end_known": KT1}, [], []),
        ({"end_known": "2025-01-01T07:00:00+02:00"}, [100.0, 101.0], [100.0, 101.0]),  # 05:00Z
    ],
)
def test_known_window_on_overlapping(client, params, latest, versions):
    sid, _, _ = forecast(client)
    assert [r["value"] for r in read(client, series_id=sid, **params)] == latest
    assert [r["value"] for r in read(client, series_id=sid, versions=True, **params)] == versions
    assert [r["value"] for r in read(client, series_id=sid, include_updates=True, **params)] == versions


def test_as_of_read_falls_back_per_valid_time(client):
    sid = make_series(client, name="fc", overlapping=True)
    insert(client, sid, [(VT0, 1.0), (VT1, 2.0)], known_time=KT1)
    insert(client, sid, [(VT1, 20.0)], known_time=KT2)  # only VT1 revised
    assert read(client, series_id=sid, end_known="2025-01-01T12:00:00Z") == [
        {"valid_time": VT0, "value": 1.0},
        {"valid_time": VT1, "value": 20.0},
    ]
    assert read(client, series_id=sid, end_known=KT2) == [
        {"valid_time": VT0, "value": 1.0},
        {"valid_time": VT1, "value": 2.0},
    ]
    assert read(client, series_id=sid, start_known=KT2) == [{"valid_time": VT1, "value": 20.0}]


def test_flat_reads_honour_request_known_time(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(VT0, 1.0), (VT1, 2.0)], known_time=KT1)
    insert(client, sid, [(VT0, 10.0)], known_time=KT2)
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 10.0}, {"valid_time": VT1, "value": 2.0}]
    assert read(client, series_id=sid, end_known=KT2) == [
        {"valid_time": VT0, "value": 1.0},
        {"valid_time": VT1, "value": 2.0},
    ]
    assert read(client, series_id=sid, start_known=KT2) == [{"valid_time": VT0, "value": 10.0}]
    assert read(client, series_id=sid, start_known="2100-01-01") == []
    assert read(client, series_id=sid, end_known=KT1) == []
    assert read(client, series_id=sid, versions=True) == [
        {"known_time": KT1, "valid_time": VT0, "value": 1.0},
        {"known_time": KT1, "valid_time": VT1, "value": 2.0},
        {"known_time": KT2, "valid_time": VT0, "value": 10.0},
    ]
    assert read(client, series_id=sid, versions=True, start_known=KT2) == [
        {"known_time": KT2, "valid_time": VT0, "value": 10.0}
    ]


def test_flat_known_time_defaults_to_the_time_written(client):
    sid = make_series(client, name="meter")
    before = datetime.now(UTC) - timedelta(seconds=60)
    insert(client, sid, [(VT0, 1.0)])
    insert(client, sid, [(VT0, 2.0)])
    after = datetime.now(UTC) + timedelta(seconds=60)
    rows = read(client, series_id=sid, versions=True)
    assert [r["value"] for r in rows] == [1.0, 2.0]
    assert all(before <= datetime.fromisoformat(r["known_time"]) <= after for r in rows)
    second = rows[1]["known_time"]
    assert rows[0]["known_time"] < second
    assert read(client, series_id=sid, end_known=second) == [{"valid_time": VT0, "value": 1.0}]
    assert read(client, series_id=sid, start_known=second) == [{"valid_time": VT0, "value": 2.0}]


def test_flat_versions_with_same_known_time_show_the_newest_write(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    insert(client, sid, [(VT0, 2.0)], known_time=KT1)
    assert read(client, series_id=sid, versions=True) == [{"known_time": KT1, "valid_time": VT0, "value": 2.0}]
    assert [r["value"] for r in read(client, series_id=sid, include_updates=True)] == [1.0, 2.0]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_changed_before_gives_the_state_at_that_moment(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    first = read(client, series_id=sid, include_updates=True)[0]["change_time"]
    insert(client, sid, [(VT0, 2.0)], known_time=KT2)
    second = read(client, series_id=sid, include_updates=True)[-1]["change_time"]
    assert first < second
    assert read(client, series_id=sid, changed_before=first) == []  # exclusive
    assert read(client, series_id=sid, changed_before=second) == [{"valid_time": VT0, "value": 1.0}]
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 2.0}]
    assert [r["value"] for r in read(client, series_id=sid, versions=True, changed_before=second)] == [1.0]
    assert [r["value"] for r in read(client, series_id=sid, include_updates=True, changed_before=second)] == [1.0]
    later = (datetime.fromisoformat(second) + timedelta(microseconds=1)).isoformat()
    assert read(client, series_id=sid, changed_before=later) == [{"valid_time": VT0, "value": 2.0}]


# --- series identity -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"series_id": 999},
        {"series_id": 9223372036854775807},
        {"name": "nope"},
        {"name": "fc", "labels": '{"site": "nowhere"}'},
    ],
    ids=["id", "max-id", "name", "labels"],
)
def test_unknown_series_is_404(client, params):
    forecast(client)
    assert_problem(client.get("/values", params=params), 404)


def test_ambiguous_name_lists_the_matches(client):
    a = make_series(client, name="temp", labels={"site": "A"})
    b = make_series(client, name="temp", labels={"site": "B"})
    resp = client.get("/values", params={"name": "temp"})
    assert 400 <= resp.status_code < 500
    body = assert_problem(resp, resp.status_code)
    assert f"series_id={a}" in body["detail"] and f"series_id={b}" in body["detail"]
    assert [m["series_id"] for m in body["matches"]] == [a, b]


def test_ambiguous_read_lists_at_most_five_and_counts_the_rest(client):
    for i in range(7):
        make_series(client, name="temp", labels={"i": str(i)})
    body = assert_problem(client.get("/values", params={"name": "temp"}), 400)
    assert len(body["matches"]) == 5
    assert "2 more" in body["detail"]


def test_labels_narrow_an_ambiguous_name(client):
    make_series(client, name="temp", labels={"site": "A"})
    b = make_series(client, name="temp", labels={"site": "B", "model": "x"})
    insert(client, b, [(VT0, 1.0)])
    assert read(client, name="temp", labels='{"site": "B"}') == [{"valid_time": VT0, "value": 1.0}]


def test_no_filters_with_one_series_reads_it(client):
    sid = make_series(client, name="only")
    insert(client, sid, [(VT0, 1.0)])
    assert read(client) == [{"valid_time": VT0, "value": 1.0}]


def test_no_filters_with_two_series_is_ambiguous(client):
    make_series(client, name="a")
    make_series(client, name="b")
    resp = client.get("/values")
    assert 400 <= resp.status_code < 500
    assert_problem(resp, resp.status_code)


@pytest.mark.parametrize("labels", ["x", "[1]", "null", "{", "1", '"s"'])
def test_malformed_labels_is_400(client, labels):
    make_series(client, name="a")
    assert_problem(client.get("/values", params={"name": "a", "labels": labels}), 400)


# --- bad query values never give a 500 ---------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize("param", ["start_valid", "end_valid", "start_known", "end_known", "changed_before"])
@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-02-30",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "garbage",
        "",
        "2025-01-01T00:00:00.123456789Z",
    ],
)
def test_extreme_query_timestamps_never_500(client, param, when):
    sid, _, _ = forecast(client)
    for mode in ("versions", "include_updates", "none"):
        resp = client.get(
            "/values",
            params={"series_id": sid, param: when, mode: "true"} if mode != "none" else {"series_id": sid, param: when},
        )
        assert resp.status_code in (200, 400, 422), resp.text
        if resp.status_code != 200:
            assert_problem(resp, resp.status_code)


@pytest.mark.parametrize("series_id", ["9223372036854775808", "0", "-1", "abc", "1.5"])
def test_bad_series_id_query_is_a_problem(client, series_id):
    forecast(client)
    resp = client.get("/values", params={"series_id": series_id})
    assert 400 <= resp.status_code < 500, resp.text
    assert_problem(resp, resp.status_code)


@pytest.mark.parametrize(
    "query",
    [
        "name=%00",
        'labels={"a":"\\u0000"}',
        "labels=" + "[" * 5000,
        "name=" + "x" * 1001,
        "unknown=1",
        "start_valid=2025-01-01T00:00:00%2B01:00x",
        "series_id=1&start_valid=x&end_valid=y",
        "labels=" + "%7B%22a%22:" * 3000,
    ],
)
def test_nasty_query_strings_are_problems(client, query):
    forecast(client)
    resp = client.get("/values?" + query)
    assert 400 <= resp.status_code < 500, resp.text
    assert_problem(resp, resp.status_code)


def test_unencoded_plus_offset_in_query_is_understood(client):
    sid = make_series(client, name="s")
    insert(client, sid, [(t, float(i)) for i, t in enumerate(hours(3))])
    # a client that forgets to encode '+': the server sees a space
    resp = client.get(f"/values?series_id={sid}&start_valid=2025-01-01T02:00:00%2001:00")
    assert resp.status_code == 200, resp.text
    assert [r["value"] for r in resp.json()["data"]] == [1.0, 2.0]


# --- large, streamed reads (real server) -------------------------------------------------------------


BIG = 20_000


def _big(n: int = BIG) -> list[dict]:
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    return [{"valid_time": (t0 + timedelta(minutes=15 * i)).isoformat(), "value": float(i)} for i in range(n)]


def _get_streamed(live, **params) -> dict:
    resp = live.get("/values", params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
    assert resp.status_code == 200, resp.text[:500]
    assert "content-length" not in resp.headers
    assert resp.headers["content-type"].startswith("application/json")
    body = json.loads(resp.content)
    assert body["count"] == len(body["data"])
    return body


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_large_insert_reads_back_streamed(live, overlapping):
    sid = make_series(live, name="big", overlapping=overlapping)
    data = _big()
    resp = live.post("/values", json={"series_id": sid, "known_time": KT1, "data": data})
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows_inserted"] == BIG
    body = _get_streamed(live, series_id=sid)
    assert body["count"] == BIG
    assert body["data"][0] == {"valid_time": "2020-01-01T00:00:00+00:00", "value": 0.0}
    assert [r["value"] for r in body["data"]] == [p["value"] for p in data]
    times = [r["valid_time"] for r in body["data"]]
    assert times == sorted(times)


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_large_versions_and_audit_reads_are_streamed(live, overlapping):
    sid = make_series(live, name="big", overlapping=overlapping)
    data = _big(6000)
    for kt, shift in ((KT1, 0.0), (KT2, 0.5)):
        resp = live.post(
            "/values",
            json={"series_id": sid, "known_time": kt, "data": [{**p, "value": p["value"] + shift} for p in data]},
        )
        assert resp.status_code == 200, resp.text
    body = _get_streamed(live, series_id=sid, versions=True)
    assert body["count"] == 12_000
    assert all(list(r) == ["known_time", "valid_time", "value"] for r in body["data"])
    keys = [(r["known_time"], r["valid_time"]) for r in body["data"]]
    assert keys == sorted(keys)
    audit = _get_streamed(live, series_id=sid, include_updates=True)
    assert audit["count"] == 12_000
    assert all(list(r) == AUDIT_KEYS for r in audit["data"])
    latest = _get_streamed(live, series_id=sid)
    assert [r["value"] for r in latest["data"]] == [p["value"] + 0.5 for p in data]
    assert read(live, series_id=sid, end_valid="2020-01-01T01:00:00Z") == [
        {"valid_time": p["valid_time"], "value": p["value"] + 0.5} for p in data[:4]
    ]


def test_streamed_read_of_an_unknown_series_is_a_404_problem(live):
    assert_problem(live.get("/values", params={"series_id": 12345}), 404)


def test_read_of_exactly_one_chunk_and_one_more(live):
    sid = make_series(live, name="edge")
    data = _big(5001)
    assert live.post("/values", json={"series_id": sid, "data": data}).status_code == 200
    small = live.get("/values", params={"series_id": sid, "end_valid": data[5000]["valid_time"]})
    assert small.status_code == 200 and small.json()["count"] == 5000
    body = _get_streamed(live, series_id=sid)
    assert body["count"] == 5001
    assert body["data"][-1]["value"] == 5000.0
