"""POST /values: flat and overlapping inserts, identity, intervals, duplicates, conflicts, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import UNKNOWN_SERIES, UNKNOWN_SERIES_IDS, assert_problem, insert, make_series, read

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KT1 = "2025-01-01T00:00:00+00:00"
KT2 = "2025-01-01T06:00:00+00:00"


def iso(dt: datetime) -> str:
    return dt.isoformat()


def hours(n: int, start: datetime = T0) -> list[str]:
    return [iso(start + timedelta(hours=i)) for i in range(n)]


def post(client, body):
    return client.post("/values", json=body)


def audit(client, sid, **kw):
    return read(client, series_id=sid, include_updates=True, **kw)


def versions(client, sid, **kw):
    return read(client, series_id=sid, versions=True, **kw)


# --- responses and basic semantics ------------------------------------------------------------


def test_flat_insert_response(client):
    sid = make_series(client, name="meter")
    body = insert(client, sid, [(KT1, 1.0), (KT2, 2.0)])
    assert body == {"batch_id": None, "series_id": sid, "rows_inserted": 2}  # the reference's answer
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": 1.0}, {"valid_time": KT2, "value": 2.0}]


def test_overlapping_insert_creates_one_batch_with_request_known_time(client):
    sid = make_series(client, name="fc", overlapping=True)
    body = insert(client, sid, [(KT1, 1.0), (KT2, 2.0)], known_time="2024-12-31T12:00:00Z")
    assert body["series_id"] == sid and body["rows_inserted"] == 2
    assert isinstance(body["batch_id"], int) and body["batch_id"] >= 1
    rows = audit(client, sid)
    assert {r["batch_id"] for r in rows} == {body["batch_id"]}
    assert {r["known_time"] for r in rows} == {"2024-12-31T12:00:00+00:00"}


def test_overlapping_known_time_defaults_to_now(client):
    sid = make_series(client, name="fc", overlapping=True)
    before = datetime.now(UTC)
    insert(client, sid, [(KT1, 1.0), (KT2, 2.0)])
    after = datetime.now(UTC)
    rows = versions(client, sid)
    assert len({r["known_time"] for r in rows}) == 1  # one batch, one known_time
    kt = datetime.fromisoformat(rows[0]["known_time"])
    assert before - timedelta(seconds=60) <= kt <= after + timedelta(seconds=60)


def test_each_overlapping_post_is_a_new_batch(client):
    sid = make_series(client, name="fc", overlapping=True)
    b1 = insert(client, sid, [(KT1, 1.0)], known_time=KT1)["batch_id"]
    b2 = insert(client, sid, [(KT1, 2.0)], known_time=KT2)["batch_id"]
    assert b2 > b1
    assert [(r["known_time"], r["batch_id"], r["value"]) for r in audit(client, sid)] == [
        (KT1, b1, 1.0),
        (KT2, b2, 2.0),
    ]


def test_flat_repost_replaces_current_value_and_keeps_the_old_one(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(KT1, 1.0), (KT2, 2.0)])
    insert(client, sid, [(KT1, 10.0)])
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": 10.0}, {"valid_time": KT2, "value": 2.0}]
    trail = [r for r in audit(client, sid) if r["valid_time"] == KT1]
    assert [r["value"] for r in trail] == [1.0, 10.0]
    assert trail[0]["change_time"] < trail[1]["change_time"]


def test_flat_repost_with_older_known_time_still_replaces(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(KT1, 1.0)], known_time="2025-02-01T00:00:00Z")
    insert(client, sid, [(KT1, 2.0)], known_time="2025-01-15T00:00:00Z")
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": 2.0}]


def test_overlapping_latest_is_the_greatest_known_time_not_the_last_post(client):
    sid = make_series(client, name="fc", overlapping=True)
    insert(client, sid, [(KT1, 110.0)], known_time=KT2)
    insert(client, sid, [(KT1, 100.0)], known_time=KT1)  # an older forecast posted later
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": 110.0}]
    assert [r["value"] for r in versions(client, sid)] == [100.0, 110.0]


def test_overlapping_batches_may_share_a_known_time_on_different_valid_times(client):
    sid = make_series(client, name="fc", overlapping=True)
    insert(client, sid, [(KT1, 1.0)], known_time=KT1)
    insert(client, sid, [(KT2, 2.0)], known_time=KT1)
    assert [r["value"] for r in read(client, series_id=sid)] == [1.0, 2.0]


def test_workflow_id_and_batch_params_are_accepted(client):
    sid = make_series(client, name="fc", overlapping=True)
    resp = post(
        client,
        {
            "series_id": sid,
            "workflow_id": "wf",
            "batch_params": {"model": "x", "n": [1, 2]},
            "data": [{"valid_time": KT1, "value": 1.0}],
        },
    )
    assert resp.status_code == 200, resp.text


def test_flat_ignores_workflow_id_and_batch_params(client):
    sid = make_series(client, name="meter")
    resp = post(
        client,
        {"series_id": sid, "workflow_id": "wf", "batch_params": {"a": 1}, "data": [{"valid_time": KT1, "value": 1.0}]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["batch_id"] is None


# --- series identity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"valid_time": KT1, "value": 1.0}]},
        {"labels": {"site": "a"}, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": None, "name": None, "data": [{"valid_time": KT1, "value": 1.0}]},
    ],
    ids=["nothing", "labels-only", "nulls"],
)
def test_missing_identity_is_400(client, body):
    make_series(client, name="meter")
    assert_problem(post(client, body), 400)


@pytest.mark.parametrize("data", [[], None], ids=["empty", "absent"])
def test_empty_or_absent_data_is_400(client, data):
    sid = make_series(client, name="meter")
    body = {"series_id": sid} if data is None else {"series_id": sid, "data": data}
    assert_problem(post(client, body), 400)


def test_series_id_wins_over_name(client):
    a = make_series(client, name="a")
    make_series(client, name="b")
    resp = post(client, {"series_id": a, "name": "b", "data": [{"valid_time": KT1, "value": 1.0}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["series_id"] == a
    assert read(client, name="a") == [{"valid_time": KT1, "value": 1.0}]
    assert read(client, name="b") == []


def test_series_id_wins_over_a_name_that_does_not_exist(client):
    a = make_series(client, name="a")
    resp = post(client, {"series_id": a, "name": "nope", "data": [{"valid_time": KT1, "value": 1.0}]})
    assert resp.status_code == 200, resp.text


def test_name_and_labels_resolve_by_containment(client):
    make_series(client, name="t", labels={"site": "A", "model": "m1"})
    b = make_series(client, name="t", labels={"site": "B"})
    resp = post(client, {"name": "t", "labels": {"site": "B"}, "data": [{"valid_time": KT1, "value": 1.0}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["series_id"] == b


@pytest.mark.parametrize("ident", UNKNOWN_SERIES, ids=UNKNOWN_SERIES_IDS)
def test_unknown_series_is_404(client, ident):
    make_series(client, name="meter")
    body = assert_problem(post(client, {**ident, "data": [{"valid_time": KT1, "value": 1.0}]}), 404)
    assert body["detail"]


def test_ambiguous_name_is_4xx_listing_the_matches(client):
    a = make_series(client, name="temp", labels={"site": "A"})
    b = make_series(client, name="temp", labels={"site": "B"})
    resp = post(client, {"name": "temp", "data": [{"valid_time": KT1, "value": 1.0}]})
    assert 400 <= resp.status_code < 500
    body = assert_problem(resp, resp.status_code)
    assert f"series_id={a}" in body["detail"] and f"series_id={b}" in body["detail"]
    assert "site=A" in body["detail"] and "site=B" in body["detail"]
    assert [m["series_id"] for m in body["matches"]] == [a, b]
    assert read(client, series_id=a) == [] and read(client, series_id=b) == []


# --- intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_interval_insert_is_stored_and_returned(client, overlapping):
    sid = make_series(client, name="energy", overlapping=overlapping)
    resp = post(
        client,
        {
            "series_id": sid,
            "known_time": KT1,
            "data": [{"valid_time": "2025-01-01T00:00:00Z", "valid_time_end": "2025-01-01T01:00:00Z", "value": 12.0}],
        },
    )
    assert resp.status_code == 200, resp.text
    expected = {"valid_time": KT1, "valid_time_end": "2025-01-01T01:00:00+00:00", "value": 12.0}
    assert read(client, series_id=sid) == [expected]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_points_and_intervals_mix_in_one_request(client, overlapping):
    sid = make_series(client, name="energy", overlapping=overlapping)
    resp = post(
        client,
        {
            "series_id": sid,
            "data": [
                {"valid_time": "2025-01-01T00:00:00Z", "value": 1.0},
                {"valid_time": "2025-01-01T01:00:00Z", "valid_time_end": "2025-01-01T03:00:00+01:00", "value": 2.0},
                {"valid_time": "2025-01-01T02:00:00Z", "valid_time_end": None, "value": 3.0},
            ],
        },
    )
    assert resp.status_code == 200, resp.text
    assert read(client, series_id=sid) == [
        {"valid_time": "2025-01-01T00:00:00+00:00", "value": 1.0},
        {"valid_time": "2025-01-01T01:00:00+00:00", "valid_time_end": "2025-01-01T02:00:00+00:00", "value": 2.0},
        {"valid_time": "2025-01-01T02:00:00+00:00", "value": 3.0},
    ]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize(
    "end",
    ["2025-01-01T00:00:00Z", "2025-01-01T01:00:00+01:00", "2024-12-31T23:00:00Z"],
    ids=["equal", "equal-offset", "before"],
)
def test_interval_end_not_after_start_is_422(client, overlapping, end):
    sid = make_series(client, name="energy", overlapping=overlapping)
    resp = post(
        client,
        {
            "series_id": sid,
            "data": [
                {"valid_time": "2025-01-01T05:00:00Z", "value": 1.0},
                {"valid_time": "2025-01-01T00:00:00Z", "valid_time_end": end, "value": 1.0},
            ],
        },
    )
    assert_problem(resp, 422)
    assert read(client, series_id=sid) == []


# --- duplicates within one request ---------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize("size", [2, 49, 50, 5000])
def test_duplicate_valid_time_in_one_request_is_422(client, overlapping, size):
    sid = make_series(client, name="s", overlapping=overlapping)
    times = hours(size - 1)
    data = [{"valid_time": t, "value": float(i)} for i, t in enumerate(times)]
    data.insert(size // 2, {"valid_time": times[0], "value": -1.0})  # repeat the first instant
    resp = post(client, {"series_id": sid, "data": data})
    body = assert_problem(resp, 422)
    assert "2025-01-01T00:00:00" in body["detail"]
    assert read(client, series_id=sid, include_updates=True) == []


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize("size", [2, 49, 50, 5000])
def test_same_instant_with_different_offsets_is_a_duplicate(client, overlapping, size):
    sid = make_series(client, name="s", overlapping=overlapping)
    data = [{"valid_time": t, "value": 1.0} for t in hours(size - 2, T0 + timedelta(days=1))]
    data += [
        {"valid_time": "2025-01-01T00:00:00Z", "value": 1.0},
        {"valid_time": "2025-01-01T02:00:00+02:00", "value": 2.0},
    ]
    resp = post(client, {"series_id": sid, "data": data})
    assert_problem(resp, 422)
    assert read(client, series_id=sid, include_updates=True) == []


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_duplicate_valid_time_in_one_request_does_not_touch_existing_data(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(KT1, 1.0)], known_time=KT1)
    before = audit(client, sid)
    resp = post(
        client, {"series_id": sid, "data": [{"valid_time": KT2, "value": 5.0}, {"valid_time": KT2, "value": 6.0}]}
    )
    assert_problem(resp, 422)
    assert audit(client, sid) == before


def test_duplicate_in_overlapping_request_leaves_no_batch(client):
    sid = make_series(client, name="fc", overlapping=True)
    first = insert(client, sid, [(KT1, 1.0)], known_time=KT1)["batch_id"]
    resp = post(
        client,
        {
            "series_id": sid,
            "known_time": KT2,
            "data": [{"valid_time": KT2, "value": 5.0}, {"valid_time": KT2, "value": 6.0}],
        },
    )
    assert_problem(resp, 422)
    orphan = client.put(
        "/values", json={"updates": [{"series_id": sid, "batch_id": first + 1, "valid_time": KT2, "value": 7.0}]}
    )
    assert_problem(orphan, 404)
    assert versions(client, sid) == [{"known_time": KT1, "valid_time": KT1, "value": 1.0}]


# --- overlapping version conflicts ----------------------------------------------------------------


def test_existing_overlapping_version_is_409_and_nothing_is_stored(client):
    sid = make_series(client, name="fc", overlapping=True)
    first = insert(client, sid, [(KT1, 1.0), (KT2, 2.0)], known_time="2025-01-01T00:00:00Z")["batch_id"]
    before_versions = versions(client, sid)
    before_audit = audit(client, sid)
    # one clashing point among new ones; same known_time written with another offset
    resp = post(
        client,
        {
            "series_id": sid,
            "known_time": "2025-01-01T01:00:00+01:00",
            "data": [
                {"valid_time": "2025-01-02T00:00:00Z", "value": 7.0},
                {"valid_time": KT2, "value": 8.0},
                {"valid_time": "2025-01-03T00:00:00Z", "value": 9.0},
            ],
        },
    )
    assert_problem(resp, 409)
    assert versions(client, sid) == before_versions
    assert audit(client, sid) == before_audit
    assert {r["batch_id"] for r in audit(client, sid)} == {first}
    # the failed request left no batch behind: its id cannot be used to add points
    orphan = client.put(
        "/values",
        json={
            "updates": [{"series_id": sid, "batch_id": first + 1, "valid_time": "2025-01-02T00:00:00Z", "value": 7.0}]
        },
    )
    assert_problem(orphan, 404)
    nxt = insert(client, sid, [("2025-01-02T00:00:00Z", 7.0)], known_time=KT1)
    assert {r["batch_id"] for r in audit(client, sid)} == {first, nxt["batch_id"]}


@pytest.mark.parametrize("size", [1, 60])
def test_reposting_a_whole_batch_with_its_known_time_is_409(client, size):
    sid = make_series(client, name="fc", overlapping=True)
    points = [(t, 1.0) for t in hours(size)]
    insert(client, sid, points, known_time=KT1)
    resp = post(
        client, {"series_id": sid, "known_time": KT1, "data": [{"valid_time": t, "value": 2.0} for t, _ in points]}
    )
    assert_problem(resp, 409)
    assert {r["value"] for r in audit(client, sid)} == {1.0}


def test_conflict_with_a_point_created_by_a_correction_is_409(client):
    sid = make_series(client, name="fc", overlapping=True)
    batch = insert(client, sid, [(KT1, 1.0)], known_time=KT1)["batch_id"]
    resp = client.put(
        "/values", json={"updates": [{"series_id": sid, "batch_id": batch, "valid_time": KT2, "value": 2.0}]}
    )
    assert resp.status_code == 200, resp.text
    assert_problem(
        post(client, {"series_id": sid, "known_time": KT1, "data": [{"valid_time": KT2, "value": 3.0}]}), 409
    )
    assert [r["value"] for r in versions(client, sid)] == [1.0, 2.0]


def test_flat_repost_with_same_known_time_is_not_a_conflict(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(KT1, 1.0)], known_time=KT1)
    insert(client, sid, [(KT1, 2.0)], known_time=KT1)
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": 2.0}]


# --- values -----------------------------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_values_are_422(client, overlapping, literal):
    sid = make_series(client, name="s", overlapping=overlapping)
    raw = f'{{"series_id": {sid}, "data": [{{"valid_time": "2025-01-01T00:00:00Z", "value": {literal}}}]}}'
    resp = client.post("/values", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(resp, 422)
    assert read(client, series_id=sid, include_updates=True) == []


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_null_and_omitted_values_are_stored_as_null(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    resp = post(client, {"series_id": sid, "data": [{"valid_time": KT1, "value": None}, {"valid_time": KT2}]})
    assert resp.status_code == 200, resp.text
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": None}, {"valid_time": KT2, "value": None}]
    assert [r["value"] for r in audit(client, sid)] == [None, None]


@pytest.mark.parametrize("value", [0, -0.0, 7, 1e308, -1e308, 5e-324, 123456789.123456789])
def test_finite_extremes_round_trip(client, value):
    sid = make_series(client, name="s")
    insert(client, sid, [(KT1, value)])
    assert read(client, series_id=sid) == [{"valid_time": KT1, "value": value}]


@pytest.mark.parametrize("value", ["7.5", True, [1], {"v": 1}])
def test_non_numeric_value_is_rejected(client, value):
    sid = make_series(client, name="s")
    resp = post(client, {"series_id": sid, "data": [{"valid_time": KT1, "value": value}]})
    assert_problem(resp, resp.status_code)
    assert resp.status_code in (400, 422)


def test_unknown_field_in_a_point_is_rejected(client):
    sid = make_series(client, name="s")
    resp = post(client, {"series_id": sid, "data": [{"valid_time": KT1, "value": 1.0, "known_time": KT1}]})
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code)


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2025-01-01T00:00:00", "2025-01-01T00:00:00+00:00"),  # naive = UTC
        ("2025-01-01", "2025-01-01T00:00:00+00:00"),  # date only = midnight UTC
        ("2025-01-01t00:00:00z", "2025-01-01T00:00:00+00:00"),  # lower-case t and z
        ("2025-01-01T02:00:00+02:00", "2025-01-01T00:00:00+00:00"),  # offsets normalised
        ("2024-12-31T19:30:00-04:30", "2025-01-01T00:00:00+00:00"),
        ("2025-01-01T00:00:00.000Z", "2025-01-01T00:00:00+00:00"),  # no zero microseconds
        ("2025-01-01T00:00:00.5Z", "2025-01-01T00:00:00.500000+00:00"),
        ("2025-01-01T00:00:00.123456+00:00", "2025-01-01T00:00:00.123456+00:00"),
        ("2025-01-01 00:00:00Z", "2025-01-01T00:00:00+00:00"),
        ("2025-01-01T00:00Z", "2025-01-01T00:00:00+00:00"),
    ],
)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_valid_time_forms_are_normalised(client, overlapping, given, stored):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(given, 1.0)], known_time=given)
    assert read(client, series_id=sid) == [{"valid_time": stored, "value": 1.0}]
    assert versions(client, sid) == [{"known_time": stored, "valid_time": stored, "value": 1.0}]


@pytest.mark.parametrize(
    "bad", ["2025-02-30T00:00:00Z", "2025-13-01", "yesterday", "2025-01-01T25:00:00Z", "1735689600", ""]
)
def test_invalid_valid_time_is_rejected(client, bad):
    sid = make_series(client, name="s")
    resp = post(client, {"series_id": sid, "data": [{"valid_time": bad, "value": 1.0}]})
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code)
    assert read(client, series_id=sid, include_updates=True) == []


def test_invalid_known_time_is_rejected(client):
    sid = make_series(client, name="s", overlapping=True)
    resp = post(client, {"series_id": sid, "known_time": "2025-02-30", "data": [{"valid_time": KT1, "value": 1.0}]})
    assert_problem(resp, 422)
    assert read(client, series_id=sid, include_updates=True) == []


# --- nothing makes the server fail ----------------------------------------------------------------


NASTY_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59+01:00",
    "2025-02-30T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2025-01-01T00:00:00.123456789Z",
    "2025-01-01T00:00:00+23:59",
    "2025-01-01T00:00:00-23:59",
]


@pytest.mark.grid
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize("when", NASTY_TIMES)
@pytest.mark.parametrize("field", ["valid_time", "valid_time_end", "known_time"])
def test_extreme_timestamps_never_500(client, overlapping, when, field):
    sid = make_series(client, name="s", overlapping=overlapping)
    point = {"valid_time": when, "value": 1.0}
    body = {"series_id": sid, "data": [point]}
    if field == "valid_time_end":
        point.update(
            valid_time="0001-01-01T12:00:00Z" if when.startswith("0001") else "2000-01-01T00:00:00Z",
            valid_time_end=when,
        )
    elif field == "known_time":
        point["valid_time"] = KT1
        body["known_time"] = when
    resp = post(client, body)
    assert resp.status_code in (200, 422), resp.text
    if resp.status_code == 422:
        assert_problem(resp, 422)
    for mode in ({}, {"versions": True}, {"include_updates": True}):
        got = client.get("/values", params={"series_id": sid, **{k: "true" for k in mode}})
        assert got.status_code == 200, got.text
        if resp.status_code == 200:
            assert got.json()["count"] == 1


@pytest.mark.grid
@pytest.mark.parametrize(
    "body",
    [
        {"series_id": 9223372036854775807, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 9223372036854775808, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 0, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": -1, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": "1", "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 1.5, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"name": "x\u0000y", "data": [{"valid_time": KT1, "value": 1.0}]},
        {"name": "s", "labels": {"k": "\u0000"}, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 1, "workflow_id": "w\u0000", "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 1, "batch_params": {"k": "\u0000"}, "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 1, "batch_params": [1], "data": [{"valid_time": KT1, "value": 1.0}]},
        {"series_id": 1, "data": [{"valid_time": None, "value": 1.0}]},
        {"series_id": 1, "data": [None]},
        {"series_id": 1, "data": {"valid_time": KT1}},
        [],
        "x",
    ],
    ids=lambda b: repr(b)[:40],
)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_nasty_bodies_get_a_problem_not_a_500(client, overlapping, body):
    make_series(client, name="s", overlapping=overlapping)
    resp = post(client, body)
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:  # a flat series ignores workflow_id and batch_params
        assert_problem(resp, resp.status_code)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"\xff\xfe", b"null", b'{"series_id": 1, "data": [{"valid_time": "' + b"9" * 10000 + b'"}]}'],
    ids=["empty", "truncated", "not-utf8", "null", "long"],
)
def test_malformed_json_is_a_problem(client, raw):
    make_series(client, name="s")
    resp = client.post("/values", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    assert_problem(resp, resp.status_code)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_a_problem(client, content_type):
    sid = make_series(client, name="s")
    resp = client.post(
        "/values",
        content=b'{"series_id": %d, "data": [{"valid_time": "2025-01-01"}]}' % sid,
        headers={"Content-Type": content_type},
    )
    assert resp.status_code in (400, 415)
    assert_problem(resp, resp.status_code)
    assert read(client, series_id=sid) == []


# --- Prefer: return=representation: the known_time used -----------------------------------------

REPRESENTATION = {"Prefer": "return=representation"}


def test_prefer_representation_answers_the_write_time_as_known_time(client):
    sid = make_series(client, name="meter")
    before = datetime.now(UTC)
    resp = client.post(
        "/values", json={"series_id": sid, "data": [{"valid_time": KT1, "value": 1.0}]}, headers=REPRESENTATION
    )
    after = datetime.now(UTC)
    assert resp.status_code == 200 and resp.headers["preference-applied"] == "return=representation"
    body = resp.json()
    assert list(body) == ["batch_id", "series_id", "rows_inserted", "known_time"]
    assert before <= datetime.fromisoformat(body["known_time"]) <= after and body["known_time"].endswith("+00:00")
    [row] = read(client, series_id=sid, versions=True)
    assert row["known_time"] == body["known_time"]  # what a versions read shows


@pytest.mark.parametrize(
    "prefer", ["return=representation", "respond-async, return=representation", "RETURN = representation; x=1"]
)
def test_prefer_representation_answers_the_batch_known_time(client, prefer):
    sid = make_series(client, name="fc", overlapping=True)
    given = client.post(
        "/values",
        json={"series_id": sid, "known_time": "2024-12-31T13:00:00+01:00", "data": [{"valid_time": KT1, "value": 1.0}]},
        headers={"Prefer": prefer},
    )
    assert given.json()["known_time"] == "2024-12-31T12:00:00+00:00"
    default = client.post(
        "/values", json={"series_id": sid, "data": [{"valid_time": KT1, "value": 2.0}]}, headers={"Prefer": prefer}
    ).json()
    assert {r["known_time"] for r in read(client, series_id=sid, versions=True)} == {
        "2024-12-31T12:00:00+00:00",
        default["known_time"],
    }


@pytest.mark.parametrize("prefer", [None, "return=minimal", "handling=strict"])
def test_without_prefer_representation_the_answer_keeps_the_reference_shape(client, prefer):
    sid = make_series(client, name="meter")
    resp = client.post(
        "/values",
        json={"series_id": sid, "data": [{"valid_time": KT1, "value": 1.0}]},
        headers={"Prefer": prefer} if prefer else {},
    )
    assert list(resp.json()) == ["batch_id", "series_id", "rows_inserted"]
    assert "preference-applied" not in resp.headers
