"""PUT /values: corrections that never destroy data, lookup rules, tri-state, audit fields, atomicity."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from tests.helpers import UNKNOWN_SERIES, UNKNOWN_SERIES_IDS, assert_problem, insert, make_series, read

KT1 = "2025-01-01T00:00:00+00:00"
KT2 = "2025-01-01T06:00:00+00:00"
VT0 = "2025-01-01T00:00:00+00:00"
VT1 = "2025-01-01T01:00:00+00:00"


def put(client, *items):
    return client.put("/values", json={"updates": list(items)})


def ok(client, *items) -> list[dict]:
    resp = put(client, *items)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["updated"] and len(body["updated"]) == len(items)
    return body["updated"]


def audit(client, sid, **kw):
    return read(client, series_id=sid, include_updates=True, **kw)


def last(client, sid, vt=VT0):
    """The newest stored row of one valid_time."""
    return [r for r in audit(client, sid) if r["valid_time"] == vt][-1]


def values(rows):
    return [r["value"] for r in rows]


def forecast(client, **overrides):
    """Versions at KT1 (100, 101) and KT2 (110, 111) for VT0, VT1."""
    sid = make_series(client, name="fc", overlapping=True, **overrides)
    b1 = insert(client, sid, [(VT0, 100.0), (VT1, 101.0)], known_time=KT1)["batch_id"]
    b2 = insert(client, sid, [(VT0, 110.0), (VT1, 111.0)], known_time=KT2)["batch_id"]
    return sid, b1, b2


def meter(client, **overrides):
    sid = make_series(client, name="meter", **overrides)
    insert(client, sid, [(VT0, 1.0), (VT1, 2.0)], known_time=KT1)
    return sid


# --- the user guide -------------------------------------------------------------------------------


def test_user_guide_example(client):
    sid = make_series(client, name="fc", overlapping=True)
    valid_time = datetime(2025, 1, 1, 12, tzinfo=UTC)
    batch_id = insert(client, sid, [(valid_time.isoformat(), 100.0)])["batch_id"]
    response = client.put(
        "/values",
        json={
            "updates": [
                {
                    "valid_time": valid_time.isoformat(),
                    "series_id": sid,
                    "batch_id": batch_id,
                    "value": 150.0,
                    "annotation": "Corrected reading",
                    "tags": ["reviewed"],
                    "changed_by": "user@example.com",
                }
            ]
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["updated"]) == 1
    assert read(client, series_id=sid) == [{"valid_time": "2025-01-01T12:00:00+00:00", "value": 150.0}]
    row = last(client, sid, "2025-01-01T12:00:00+00:00")
    assert (row["value"], row["annotation"], row["tags"], row["changed_by"], row["batch_id"]) == (
        150.0,
        "Corrected reading",
        ["reviewed"],
        "user@example.com",
        batch_id,
    )


# --- response shape -----------------------------------------------------------------------------------


def test_overlapping_result_item(client):
    sid, b1, _ = forecast(client)
    before = datetime.now(UTC) - timedelta(seconds=60)
    [item] = ok(client, {"series_id": sid, "batch_id": b1, "valid_time": "2025-01-01T02:00:00+02:00", "value": 1.0})
    assert list(item) == ["overlapping_id", "batch_id", "valid_time", "series_id", "change_time"]
    assert item["batch_id"] == b1 and item["series_id"] == sid
    assert isinstance(item["overlapping_id"], int)
    assert item["valid_time"] == "2025-01-01T02:00:00+02:00"  # the request's offset
    assert before <= datetime.fromisoformat(item["change_time"]) <= datetime.now(UTC) + timedelta(seconds=60)
    [stored] = [r for r in audit(client, sid) if r["value"] == 1.0]
    assert (item["change_time"], stored["valid_time"], stored["known_time"]) == (stored["change_time"], VT0, KT1)


def test_flat_result_item(client):
    sid = meter(client)
    [item] = ok(client, {"series_id": sid, "valid_time": "2025-01-01T00:00:00", "value": 5.0})
    assert list(item) == ["flat_id", "series_id", "valid_time", "change_time"]
    assert item["series_id"] == sid and isinstance(item["flat_id"], int)
    assert item["valid_time"] == "2025-01-01T00:00:00+00:00"  # naive -> +00:00
    assert item["change_time"] in {r["change_time"] for r in audit(client, sid)}


def test_results_follow_request_order(client):
    sid, b1, b2 = forecast(client)
    items = [
        {"series_id": sid, "batch_id": b, "valid_time": vt, "value": v}
        for b, vt, v in ((b2, VT1, 1.0), (b1, VT0, 2.0), (b2, VT0, 3.0), (b1, VT1, 4.0))
    ]
    result = ok(client, *items)
    assert [(r["batch_id"], r["valid_time"]) for r in result] == [(b2, VT1), (b1, VT0), (b2, VT0), (b1, VT1)]
    assert len({r["overlapping_id"] for r in result}) == 4


# --- flat corrections ----------------------------------------------------------------------------------


def test_flat_correction_keeps_the_replaced_value(client):
    sid = meter(client)
    ok(
        client,
        {"series_id": sid, "valid_time": VT0, "value": 1.5, "annotation": "fix", "tags": ["a"], "changed_by": "me"},
    )
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 1.5}, {"valid_time": VT1, "value": 2.0}]
    trail = [r for r in audit(client, sid) if r["valid_time"] == VT0]
    assert values(trail) == [1.0, 1.5]
    assert (trail[1]["annotation"], trail[1]["tags"], trail[1]["changed_by"]) == ("fix", ["a"], "me")
    assert trail[0]["change_time"] < trail[1]["change_time"]
    assert trail[1]["known_time"] == trail[0]["known_time"] == KT1  # a correction keeps known_time
    assert trail[1]["batch_id"] is None


def test_flat_correction_of_a_missing_valid_time_is_404(client):
    sid = meter(client)
    assert_problem(put(client, {"series_id": sid, "valid_time": "2025-01-01T05:00:00Z", "value": 1.0}), 404)
    assert len(audit(client, sid)) == 2


def test_flat_correction_refuses_a_batch_id(client):
    sid = meter(client)
    other = forecast(client)[1]  # a batch that exists, of another series
    for batch_id in (77, other):
        resp = put(
            client,
            {"series_id": sid, "valid_time": VT1, "value": 5.0},
            {"series_id": sid, "valid_time": VT0, "batch_id": batch_id, "value": 9.0},
        )
        problem = assert_problem(resp, 422, "/problems/unprocessable")
        assert "updates[1].batch_id" in problem["detail"] and "flat" in problem["detail"]
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 1.0}, {"valid_time": VT1, "value": 2.0}]
    assert len(audit(client, sid)) == 2  # the whole request changed nothing


def test_flat_correction_known_time_names_the_current_value(client):
    sid = meter(client)
    resp = put(client, {"series_id": sid, "valid_time": VT0, "known_time": KT2, "value": 9.0})
    problem = assert_problem(resp, 404, "/problems/point-not-found")
    assert KT1 in problem["detail"] and KT2 in problem["detail"]
    assert read(client, series_id=sid)[0] == {"valid_time": VT0, "value": 1.0}
    ok(client, {"series_id": sid, "valid_time": VT0, "known_time": KT1, "value": 9.0})
    assert read(client, series_id=sid)[0] == {"valid_time": VT0, "value": 9.0}


def test_flat_correction_of_latest_write_after_repost(client):
    sid = meter(client)
    insert(client, sid, [(VT0, 10.0)], known_time=KT2)
    ok(client, {"series_id": sid, "valid_time": VT0, "annotation": "checked"})
    assert read(client, series_id=sid)[0] == {"valid_time": VT0, "value": 10.0}
    trail = [r for r in audit(client, sid) if r["valid_time"] == VT0]
    assert [(r["known_time"], r["value"], r["annotation"]) for r in trail] == [
        (KT1, 1.0, None),
        (KT2, 10.0, None),
        (KT2, 10.0, "checked"),
    ]
    assert read(client, series_id=sid, versions=True, start_known=KT2) == [
        {"known_time": KT2, "valid_time": VT0, "value": 10.0}
    ]


# --- overlapping corrections ---------------------------------------------------------------------------


def test_correcting_an_old_batch_never_outranks_a_newer_forecast(client):
    sid, b1, _ = forecast(client)
    ok(client, {"series_id": sid, "batch_id": b1, "valid_time": VT0, "value": 999.0})
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 110.0}, {"valid_time": VT1, "value": 111.0}]
    assert read(client, series_id=sid, versions=True) == [
        {"known_time": KT1, "valid_time": VT0, "value": 999.0},
        {"known_time": KT1, "valid_time": VT1, "value": 101.0},
        {"known_time": KT2, "valid_time": VT0, "value": 110.0},
        {"known_time": KT2, "valid_time": VT1, "value": 111.0},
    ]


def test_annotating_an_old_batch_does_not_change_the_latest_value(client):
    sid, b1, _ = forecast(client)
    ok(client, {"series_id": sid, "batch_id": b1, "valid_time": VT1, "annotation": "looked at"})
    assert read(client, series_id=sid)[1] == {"valid_time": VT1, "value": 111.0}


def test_correcting_the_latest_version_becomes_the_latest_value(client):
    sid, _, b2 = forecast(client)
    [item] = ok(client, {"series_id": sid, "valid_time": VT0, "value": 115.0})
    assert item["batch_id"] == b2
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 115.0}, {"valid_time": VT1, "value": 111.0}]
    assert [
        (r["known_time"], r["value"]) for r in read(client, series_id=sid, versions=True) if r["valid_time"] == VT0
    ] == [(KT1, 100.0), (KT2, 115.0)]


def test_correction_keeps_known_time_even_for_future_forecasts(client):
    sid = make_series(client, name="fc", overlapping=True)
    insert(client, sid, [(VT0, 1.0)], known_time="2099-01-01T00:00:00Z")
    ok(client, {"series_id": sid, "valid_time": VT0, "value": 2.0})
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 2.0}]
    assert [r["known_time"] for r in audit(client, sid)] == ["2099-01-01T00:00:00+00:00"] * 2


def test_newest_change_time_wins_within_one_known_time(client):
    sid, _, b2 = forecast(client)
    for v in (1.0, 2.0, 3.0):
        ok(client, {"series_id": sid, "batch_id": b2, "valid_time": VT0, "value": v})
    assert read(client, series_id=sid)[0] == {"valid_time": VT0, "value": 3.0}
    assert read(client, series_id=sid, versions=True, start_known=KT2)[0] == {
        "known_time": KT2,
        "valid_time": VT0,
        "value": 3.0,
    }
    trail = [r for r in audit(client, sid) if r["valid_time"] == VT0 and r["known_time"] == KT2]
    assert values(trail) == [110.0, 1.0, 2.0, 3.0]
    times = [r["change_time"] for r in trail]
    assert times == sorted(times) and len(set(times)) == 4


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_every_corrected_value_remains_retrievable(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 0.0)], known_time=KT1)
    chain = [1.0, None, 3.0, 3.0, -4.5]
    for i, v in enumerate(chain):
        ok(client, {"series_id": sid, "valid_time": VT0, "value": v, "changed_by": f"u{i}"})
    trail = audit(client, sid)
    assert values(trail) == [0.0, *chain]
    assert [r["changed_by"] for r in trail] == [None] + [f"u{i}" for i in range(len(chain))]
    assert all(r["known_time"] == KT1 for r in trail)
    # and each state can be read back as it was, through changed_before
    for before, after in pairwise(trail):
        assert read(client, series_id=sid, changed_before=after["change_time"]) == [
            {"valid_time": VT0, "value": before["value"]}
        ]
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": -4.5}]


# --- as-of reads with corrections (end_known, changed_before) ---------------------------------------------


def test_end_known_ignores_later_forecasts_and_their_corrections(client):
    sid, b1, b2 = forecast(client)
    T = KT2  # forecast b2 has known_time == T: excluded (end exclusive)
    assert read(client, series_id=sid, end_known=T) == [
        {"valid_time": VT0, "value": 100.0},
        {"valid_time": VT1, "value": 101.0},
    ]
    # a correction made now of a forecast with known_time >= T must not show up
    ok(client, {"series_id": sid, "batch_id": b2, "valid_time": VT0, "value": 500.0})
    assert read(client, series_id=sid, end_known=T) == [
        {"valid_time": VT0, "value": 100.0},
        {"valid_time": VT1, "value": 101.0},
    ]
    assert [r["value"] for r in read(client, series_id=sid, end_known=T, versions=True)] == [100.0, 101.0]
    assert [r["value"] for r in audit(client, sid, end_known=T)] == [100.0, 101.0]
    assert read(client, series_id=sid)[0] == {"valid_time": VT0, "value": 500.0}
    # a correction of a forecast with known_time < T does show up ...
    [fix] = ok(client, {"series_id": sid, "batch_id": b1, "valid_time": VT0, "value": 105.0})
    assert read(client, series_id=sid, end_known=T) == [
        {"valid_time": VT0, "value": 105.0},
        {"valid_time": VT1, "value": 101.0},
    ]
    assert [r["value"] for r in read(client, series_id=sid, end_known=T, versions=True)] == [105.0, 101.0]
    # ... unless changed_before excludes it
    assert read(client, series_id=sid, end_known=T, changed_before=fix["change_time"]) == [
        {"valid_time": VT0, "value": 100.0},
        {"valid_time": VT1, "value": 101.0},
    ]
    assert [
        r["value"] for r in read(client, series_id=sid, end_known=T, versions=True, changed_before=fix["change_time"])
    ] == [100.0, 101.0]
    # still the newest forecast overall
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 500.0}, {"valid_time": VT1, "value": 111.0}]


def test_end_known_on_flat_series_ignores_later_writes_and_their_corrections(client):
    sid = make_series(client, name="meter")
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    insert(client, sid, [(VT0, 2.0)], known_time=KT2)
    ok(client, {"series_id": sid, "valid_time": VT0, "value": 3.0})  # corrects the KT2 write
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 3.0}]
    assert read(client, series_id=sid, end_known=KT2) == [{"valid_time": VT0, "value": 1.0}]


def test_changed_before_shows_the_state_before_a_correction(client):
    sid, _, b2 = forecast(client)
    [fix] = ok(client, {"series_id": sid, "batch_id": b2, "valid_time": VT1, "value": 0.0, "tags": ["x"]})
    assert read(client, series_id=sid, changed_before=fix["change_time"]) == [
        {"valid_time": VT0, "value": 110.0},
        {"valid_time": VT1, "value": 111.0},
    ]
    assert read(client, series_id=sid)[1] == {"valid_time": VT1, "value": 0.0}
    after = (datetime.fromisoformat(fix["change_time"]) + timedelta(microseconds=1)).isoformat()
    assert read(client, series_id=sid, changed_before=after)[1] == {"valid_time": VT1, "value": 0.0}
    assert len(audit(client, sid, changed_before=fix["change_time"])) == 4
    assert len(audit(client, sid)) == 5


# --- overlapping lookup: batch_id, then known_time, then latest ------------------------------------------


def test_lookup_by_batch_id(client):
    sid, b1, _ = forecast(client)
    [item] = ok(client, {"series_id": sid, "batch_id": b1, "valid_time": VT1, "value": 1.0})
    assert item["batch_id"] == b1
    fixed = [r for r in audit(client, sid) if r["value"] == 1.0]
    assert [(r["known_time"], r["batch_id"], r["valid_time"]) for r in fixed] == [(KT1, b1, VT1)]
    assert [
        (r["known_time"], r["value"]) for r in read(client, series_id=sid, versions=True) if r["valid_time"] == VT1
    ] == [(KT1, 1.0), (KT2, 111.0)]


def test_lookup_by_exact_known_time(client):
    sid, b1, _ = forecast(client)
    kt = read(client, series_id=sid, versions=True)[0]["known_time"]  # the string versions returns
    [item] = ok(client, {"series_id": sid, "known_time": kt, "valid_time": VT0, "value": 1.0})
    assert item["batch_id"] == b1
    assert read(client, series_id=sid, versions=True)[0] == {"known_time": KT1, "valid_time": VT0, "value": 1.0}


def test_lookup_by_known_time_with_another_offset(client):
    sid, b1, _ = forecast(client)
    [item] = ok(client, {"series_id": sid, "known_time": "2025-01-01T01:00:00+01:00", "valid_time": VT0, "value": 1.0})
    assert item["batch_id"] == b1


def test_known_time_that_matches_no_version_is_404(client):
    sid, _, _ = forecast(client)
    resp = put(client, {"series_id": sid, "known_time": "2025-01-01T00:00:00.000001Z", "valid_time": VT0, "value": 1.0})
    assert_problem(resp, 404)
    assert len(audit(client, sid)) == 4


def test_batch_id_wins_over_known_time(client):
    sid, b1, _ = forecast(client)
    [item] = ok(client, {"series_id": sid, "batch_id": b1, "known_time": KT2, "valid_time": VT0, "value": 1.0})
    assert item["batch_id"] == b1
    assert [
        (r["known_time"], r["value"]) for r in read(client, series_id=sid, versions=True) if r["valid_time"] == VT0
    ] == [(KT1, 1.0), (KT2, 110.0)]


def test_without_selector_the_latest_version_is_corrected(client):
    sid, _, b2 = forecast(client)
    [item] = ok(client, {"series_id": sid, "valid_time": VT1, "value": 1.0})
    assert item["batch_id"] == b2


def test_without_selector_the_latest_version_per_valid_time(client):
    sid = make_series(client, name="fc", overlapping=True)
    b1 = insert(client, sid, [(VT0, 1.0), (VT1, 2.0)], known_time=KT1)["batch_id"]
    b2 = insert(client, sid, [(VT1, 20.0)], known_time=KT2)["batch_id"]
    result = ok(
        client,
        {"series_id": sid, "valid_time": VT0, "value": 3.0},
        {"series_id": sid, "valid_time": VT1, "value": 30.0},
    )
    assert [r["batch_id"] for r in result] == [b1, b2]
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 3.0}, {"valid_time": VT1, "value": 30.0}]


def test_overlapping_point_without_version_and_batch_is_404(client):
    sid, _, _ = forecast(client)
    for item in ({"value": 1.0}, {"annotation": "x"}, {"value": 1.0, "known_time": KT1}):
        resp = put(client, {"series_id": sid, "valid_time": "2025-01-01T05:00:00Z", **item})
        assert_problem(resp, 404)
    assert len(audit(client, sid)) == 4


def test_batch_id_and_value_create_a_missing_point_in_that_batch(client):
    sid, b1, _ = forecast(client)
    new_vt = "2025-01-01T05:00:00+00:00"
    [item] = ok(
        client,
        {
            "series_id": sid,
            "batch_id": b1,
            "valid_time": new_vt,
            "value": 7.0,
            "annotation": "added",
            "changed_by": "me",
        },
    )
    assert item["batch_id"] == b1
    row = next(r for r in audit(client, sid) if r["valid_time"] == new_vt)
    assert (row["known_time"], row["batch_id"], row["value"], row["annotation"], row["changed_by"]) == (
        KT1,
        b1,
        7.0,
        "added",
        "me",
    )
    assert read(client, series_id=sid)[-1] == {"valid_time": new_vt, "value": 7.0}
    assert read(client, series_id=sid, versions=True, end_known=KT2)[-1] == {
        "known_time": KT1,
        "valid_time": new_vt,
        "value": 7.0,
    }


def test_batch_id_without_value_for_a_missing_point_is_404(client):
    sid, b1, _ = forecast(client)
    resp = put(client, {"series_id": sid, "batch_id": b1, "valid_time": "2025-01-01T05:00:00Z", "annotation": "x"})
    assert_problem(resp, 404)
    assert len(audit(client, sid)) == 4


@pytest.mark.parametrize("batch_id", [999, 2**63 - 1])
@pytest.mark.parametrize("vt", [VT0, "2025-01-01T05:00:00Z"], ids=["existing-point", "missing-point"])
def test_batch_id_that_does_not_exist_is_404(client, batch_id, vt):
    sid, _, _ = forecast(client)
    for extra in ({"value": 1.0}, {"annotation": "x"}):
        assert_problem(put(client, {"series_id": sid, "batch_id": batch_id, "valid_time": vt, **extra}), 404)
    assert len(audit(client, sid)) == 4


def test_batch_id_of_another_series_is_404(client):
    sid, _, _ = forecast(client)
    other = make_series(client, name="other", overlapping=True)
    b_other = insert(client, other, [(VT0, 1.0)], known_time=KT1)["batch_id"]
    for vt in (VT0, "2025-01-01T05:00:00Z"):
        assert_problem(put(client, {"series_id": sid, "batch_id": b_other, "valid_time": vt, "value": 1.0}), 404)
    assert len(audit(client, sid)) == 4
    assert values(audit(client, other)) == [1.0]


def test_batch_id_above_bigint_is_rejected(client):
    sid, _, _ = forecast(client)
    resp = put(client, {"series_id": sid, "batch_id": 2**63, "valid_time": VT0, "value": 1.0})
    assert 400 <= resp.status_code < 500
    assert_problem(resp, resp.status_code)


# --- tri-state and canonicalisation -----------------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_omitted_keys_keep_current_and_null_clears(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    ok(client, {"series_id": sid, "valid_time": VT0, "value": 2.0, "annotation": "a", "tags": ["t"], "changed_by": "u"})
    ok(client, {"series_id": sid, "valid_time": VT0, "annotation": "b"})
    row = last(client, sid)
    assert (row["value"], row["annotation"], row["tags"], row["changed_by"]) == (2.0, "b", ["t"], "u")
    ok(client, {"series_id": sid, "valid_time": VT0, "tags": None, "changed_by": None})
    row = last(client, sid)
    assert (row["value"], row["annotation"], row["tags"], row["changed_by"]) == (2.0, "b", None, None)
    ok(client, {"series_id": sid, "valid_time": VT0, "value": None, "annotation": None})
    row = last(client, sid)
    assert (row["value"], row["annotation"], row["tags"], row["changed_by"]) == (None, None, None, None)
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": None}]
    assert values(audit(client, sid)) == [1.0, 2.0, 2.0, 2.0, None]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_item_without_any_tri_state_field_is_400(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    assert_problem(put(client, {"series_id": sid, "valid_time": VT0, "known_time": KT1}), 400)
    assert_problem(
        put(client, {"series_id": sid, "valid_time": VT0, "value": 5.0}, {"series_id": sid, "valid_time": VT0}), 400
    )
    assert values(audit(client, sid)) == [1.0]


@pytest.mark.parametrize(
    ("annotation", "stored"),
    [("  fixed  ", "fixed"), ("fixed", "fixed"), ("   ", None), ("", None), ("\t\n", None), (" a  b ", "a  b")],
)
def test_annotation_is_trimmed_and_blank_is_null(client, annotation, stored):
    sid = meter(client)
    ok(client, {"series_id": sid, "valid_time": VT0, "annotation": annotation})
    assert last(client, sid)["annotation"] == stored


@pytest.mark.grid
@pytest.mark.parametrize(
    ("tags", "stored"),
    [
        (["  B ", "a", "A", ""], ["a", "b"]),
        (["z", "y", "z"], ["y", "z"]),
        (["Reviewed"], ["reviewed"]),
        ([], None),
        (["", "  "], None),
        (None, None),
    ],
)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_tags_are_canonical(client, overlapping, tags, stored):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    ok(client, {"series_id": sid, "valid_time": VT0, "tags": ["old"]})
    ok(client, {"series_id": sid, "valid_time": VT0, "tags": tags})
    assert last(client, sid)["tags"] == stored


@pytest.mark.parametrize("who", ["  user@example.com ", "User", "", "ü ☃"])
def test_changed_by_is_stored_verbatim(client, who):
    sid = meter(client)
    ok(client, {"series_id": sid, "valid_time": VT0, "changed_by": who})
    assert last(client, sid)["changed_by"] == who


def test_null_item_in_tags_is_rejected(client):
    sid = meter(client)
    resp = put(client, {"series_id": sid, "valid_time": VT0, "tags": ["a", None]})
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code)


@pytest.mark.grid
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_non_finite_correction_is_422(client, overlapping, literal):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    raw = f'{{"updates": [{{"series_id": {sid}, "valid_time": "{VT0}", "value": {literal}}}]}}'
    resp = client.put("/values", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(resp, 422)
    assert values(audit(client, sid)) == [1.0]


def test_correction_keeps_valid_time_end(client):
    sid = make_series(client, name="energy", overlapping=True)
    client.post(
        "/values",
        json={"series_id": sid, "known_time": KT1, "data": [{"valid_time": VT0, "valid_time_end": VT1, "value": 1.0}]},
    )
    ok(client, {"series_id": sid, "valid_time": VT0, "value": 2.0})
    assert read(client, series_id=sid) == [{"valid_time": VT0, "valid_time_end": VT1, "value": 2.0}]


# --- series identity per item ---------------------------------------------------------------------------


def test_each_item_is_applied_to_the_series_it_names(client):
    a = meter(client)
    b, _, b2 = forecast(client)
    result = ok(
        client,
        {"series_id": a, "valid_time": VT0, "value": 5.0},
        {"series_id": b, "valid_time": VT0, "value": 500.0},
        {"name": "meter", "valid_time": VT1, "value": 6.0},
    )
    assert [r["series_id"] for r in result] == [a, b, a]
    assert "flat_id" in result[0] and "overlapping_id" in result[1] and "flat_id" in result[2]
    assert result[1]["batch_id"] == b2
    assert read(client, series_id=a) == [{"valid_time": VT0, "value": 5.0}, {"valid_time": VT1, "value": 6.0}]
    assert read(client, series_id=b)[0] == {"valid_time": VT0, "value": 500.0}


def test_items_without_identity_use_the_first_items_series(client):
    a = meter(client)
    b, _, _ = forecast(client)
    result = ok(client, {"series_id": b, "valid_time": VT0, "value": 1.0}, {"valid_time": VT1, "value": 2.0})
    assert [r["series_id"] for r in result] == [b, b]
    assert read(client, series_id=b) == [{"valid_time": VT0, "value": 1.0}, {"valid_time": VT1, "value": 2.0}]
    assert values(audit(client, a)) == [1.0, 2.0]


def test_items_without_identity_use_the_first_item_not_the_previous_one(client):
    a = meter(client)
    b, _, _ = forecast(client)
    result = ok(
        client,
        {"series_id": a, "valid_time": VT0, "value": 5.0},
        {"series_id": b, "valid_time": VT0, "value": 500.0},
        {"valid_time": VT1, "value": 6.0},
    )
    assert [r["series_id"] for r in result] == [a, b, a]
    assert values(read(client, series_id=a)) == [5.0, 6.0]
    assert values(read(client, series_id=b)) == [500.0, 111.0]


def test_items_without_identity_use_the_first_items_name(client):
    make_series(client, name="x", labels={"site": "A"})
    b = make_series(client, name="x", labels={"site": "B"})
    insert(client, b, [(VT0, 1.0), (VT1, 2.0)])
    result = ok(
        client,
        {"name": "x", "labels": {"site": "B"}, "valid_time": VT0, "value": 3.0},
        {"valid_time": VT1, "value": 4.0},
    )
    assert [r["series_id"] for r in result] == [b, b]
    assert values(read(client, series_id=b)) == [3.0, 4.0]


def test_first_item_without_identity_is_400(client):
    sid = meter(client)
    assert_problem(
        put(client, {"valid_time": VT0, "value": 3.0}, {"series_id": sid, "valid_time": VT1, "value": 4.0}), 400
    )
    assert len(audit(client, sid)) == 2


def test_series_id_and_name_are_anded_in_an_item_as_in_get(client):
    a = meter(client)
    make_series(client, name="other")
    for contradicting in ({"name": "other"}, {"labels": {"site": "x"}}):
        item = {"series_id": a, **contradicting, "valid_time": VT0, "value": 3.0}
        assert_problem(put(client, item), 404, "/problems/series-not-found")
        get = client.get(
            "/values",
            params={
                "series_id": a,
                **{k: v if isinstance(v, str) else json.dumps(v) for k, v in contradicting.items()},
            },
        )
        assert_problem(get, 404, "/problems/series-not-found")
    assert read(client, series_id=a)[0]["value"] == 1.0
    [item] = ok(client, {"series_id": a, "name": "meter", "valid_time": VT0, "value": 3.0})
    assert item["series_id"] == a


@pytest.mark.parametrize("ident", UNKNOWN_SERIES, ids=UNKNOWN_SERIES_IDS)
@pytest.mark.parametrize("position", [0, 1])
def test_unknown_series_is_404(client, ident, position):
    sid = meter(client)
    items = [{"series_id": sid, "valid_time": VT0, "value": 9.0}]
    items.insert(position, {**ident, "valid_time": VT0, "value": 3.0})
    assert_problem(put(client, *items), 404)
    assert values(audit(client, sid)) == [1.0, 2.0]


def test_ambiguous_name_lists_the_matches(client):
    a = make_series(client, name="x", labels={"site": "A"})
    b = make_series(client, name="x", labels={"site": "B"})
    resp = put(client, {"name": "x", "valid_time": VT0, "value": 3.0})
    assert 400 <= resp.status_code < 500
    body = assert_problem(resp, resp.status_code)
    assert f"series_id={a}" in body["detail"] and f"series_id={b}" in body["detail"]


@pytest.mark.grid
@pytest.mark.parametrize(
    "body",
    [
        {"updates": []},
        {},
        {"updates": None},
        {"updates": [None]},
        {"updates": [{"series_id": 1, "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "value": 1.0, "extra": 1}]},
        {"updates": [{"series_id": 1, "valid_time": "2025-02-30", "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "known_time": "2025-02-30", "value": 1.0}]},
        {"updates": [{"series_id": 0, "valid_time": VT0, "value": 1.0}]},
        {"updates": [{"series_id": 2**63, "valid_time": VT0, "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "annotation": "a\u0000b"}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "tags": ["a\u0000"]}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "changed_by": "\u0000"}]},
        {"updates": [{"name": "\u0000", "valid_time": VT0, "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": "0001-01-01T00:00:00+01:00", "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": "9999-12-31T23:59:59-01:00", "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "batch_id": 2**63 - 1, "value": 1.0}]},
        {"updates": [{"series_id": 1, "valid_time": VT0, "value": "1"}]},
    ],
    ids=lambda b: repr(b)[:50],
)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_bad_requests_are_problems_not_500(client, overlapping, body):
    sid = make_series(client, name="s", overlapping=overlapping)
    assert sid == 1
    insert(client, sid, [(VT0, 1.0)], known_time=KT1)
    resp = client.put("/values", json=body)
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:  # a flat item ignores batch_id
        assert_problem(resp, resp.status_code)
    else:
        assert not overlapping


# --- several items for one point, atomicity -------------------------------------------------------------


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_two_items_for_one_point_apply_in_order(client, overlapping):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0), (VT1, 10.0)], known_time=KT1)
    result = ok(
        client,
        {"series_id": sid, "valid_time": VT0, "value": 2.0, "annotation": "first", "tags": ["a"]},
        {"series_id": sid, "valid_time": VT1, "value": 11.0},
        {"series_id": sid, "valid_time": "2025-01-01T01:00:00+01:00", "annotation": None, "changed_by": "second"},
    )
    assert len(result) == 3
    assert result[2]["valid_time"] == "2025-01-01T01:00:00+01:00"
    trail = [r for r in audit(client, sid) if r["valid_time"] == VT0]
    assert [(r["value"], r["annotation"], r["tags"], r["changed_by"]) for r in trail] == [
        (1.0, None, None, None),
        (2.0, "first", ["a"], None),
        (2.0, None, ["a"], "second"),
    ]
    assert trail[1]["change_time"] < trail[2]["change_time"]
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 2.0}, {"valid_time": VT1, "value": 11.0}]


def test_two_items_for_a_point_created_in_the_same_request(client):
    sid, b1, _ = forecast(client)
    new_vt = "2025-01-01T05:00:00+00:00"
    ok(
        client,
        {"series_id": sid, "batch_id": b1, "valid_time": new_vt, "value": 1.0},
        {"series_id": sid, "batch_id": b1, "valid_time": new_vt, "annotation": "then annotated"},
    )
    trail = [r for r in audit(client, sid) if r["valid_time"] == new_vt]
    assert [(r["value"], r["annotation"]) for r in trail] == [(1.0, None), (1.0, "then annotated")]


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize(
    "bad",
    [
        {"valid_time": "2025-01-01T05:00:00Z", "value": 1.0},  # no such point
        {"series_id": 999, "valid_time": VT0, "value": 1.0},  # no such series
        {"valid_time": VT0, "batch_id": 999, "value": 1.0},  # no such batch (overlapping)
    ],
    ids=["point", "series", "batch"],
)
def test_an_error_in_item_three_leaves_items_one_and_two_unapplied(client, overlapping, bad):
    sid = make_series(client, name="s", overlapping=overlapping)
    insert(client, sid, [(VT0, 1.0), (VT1, 2.0)], known_time=KT1)
    before = audit(client, sid)
    resp = put(
        client,
        {"series_id": sid, "valid_time": VT0, "value": 10.0},
        {"valid_time": VT1, "value": 20.0},
        {"series_id": sid, **bad},
    )
    assert_problem(resp, 422 if not overlapping and "batch_id" in bad else 404)  # flat: no batches
    assert audit(client, sid) == before
    assert read(client, series_id=sid) == [{"valid_time": VT0, "value": 1.0}, {"valid_time": VT1, "value": 2.0}]


@pytest.mark.parametrize("bad", [{"batch_id": 999}, {"known_time": "2024-06-01T00:00:00Z"}], ids=["batch", "known"])
def test_an_error_in_a_later_round_rolls_back_rows_already_written(client, bad):
    sid, _, _ = forecast(client)
    flat = meter(client)
    before, before_flat = audit(client, sid), audit(client, flat)
    # items 1-3 are written before item 4 (a repeat of VT0, so applied after them) fails
    resp = put(
        client,
        {"series_id": sid, "valid_time": VT0, "value": 1.0},
        {"series_id": flat, "valid_time": VT0, "value": 2.0},
        {"series_id": sid, "valid_time": VT1, "value": 3.0},
        {"series_id": sid, "valid_time": VT0, "value": 4.0, **bad},
    )
    assert_problem(resp, 404)
    assert audit(client, sid) == before
    assert audit(client, flat) == before_flat


# --- one version per (valid_time, known_time) ---------------------------------------------------------


def test_creating_a_point_in_a_batch_where_another_batch_holds_that_version_is_409(client):
    """Two batches may share a known_time; creating a point in one must not fork the other's version."""
    sid = make_series(client, name="fc", overlapping=True)
    a = insert(client, sid, [(VT0, 1.0)], known_time=KT1)["batch_id"]
    b = insert(client, sid, [(VT1, 2.0)], known_time=KT1)["batch_id"]
    before = audit(client, sid)
    resp = put(client, {"series_id": sid, "batch_id": a, "valid_time": VT1, "value": 9.0})
    assert_problem(resp, 409)
    assert audit(client, sid) == before
    # the version at (VT1, KT1) is still one version: correcting it through its batch works
    ok(client, {"series_id": sid, "batch_id": b, "valid_time": VT1, "value": 3.0})
    assert read(client, series_id=sid, versions=True) == [
        {"known_time": KT1, "valid_time": VT0, "value": 1.0},
        {"known_time": KT1, "valid_time": VT1, "value": 3.0},
    ]
