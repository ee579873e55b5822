"""Backtesting reads (issue 9): as_of, min/max_horizon, day-ahead cutoffs, tz output, resampling,
and POST /values/query.

Every expectation is computed here, in plain Python (zoneinfo for local times), from what the test
inserted; answers are compared whole. Versions are modelled as `V(known_time, valid_time, value,
valid_time_end)`, written in ascending known_time so that "the newest write" (flat series) and
"the greatest known_time" (overlapping series) name the same version unless a test says otherwise.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.helpers import assert_problem, make_series, read

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
US = timedelta(microseconds=1)
KIND = pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
# the DST days of 2025: (zone, local date, hours in that local day)
DST_DAYS = [
    (BERLIN, date(2025, 3, 30), 23),
    (BERLIN, date(2025, 10, 26), 25),
    (NEW_YORK, date(2025, 3, 9), 23),
    (NEW_YORK, date(2025, 11, 2), 25),
]
DST_IDS = [f"{z.split('/')[1]}-{d}" for z, d, _ in DST_DAYS]


# --- time helpers ---------------------------------------------------------------------------------


def utc(text: str) -> datetime:
    """An instant from ISO text (naive = UTC)."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def midnight(tz: str | None, day: date) -> datetime:
    """The instant of local midnight starting `day` in tz."""
    return datetime.combine(day, time(), tzinfo=ZoneInfo(tz or "UTC")).astimezone(UTC)


def iso(t: datetime, tz: str | None = None) -> str:
    """How the API prints an instant: with tz's offset, else +00:00 (computed with zoneinfo)."""
    return t.astimezone(ZoneInfo(tz) if tz else UTC).isoformat()


def steps(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Instants start, start + step, ... before end."""
    out = []
    while start < end:
        out.append(start)
        start += step
    return out


# --- versions and their expected reads -------------------------------------------------------------


@dataclass(frozen=True)
class V:
    """One stored version (for a flat series: one write) of one valid_time."""

    kt: datetime
    vt: datetime
    value: float | None
    end: datetime | None = None


Point = tuple[datetime, float | None] | tuple[datetime, float | None, datetime]


def write(client: Any, sid: int, kt: datetime, points: Iterable[Point]) -> list[V]:
    """POST /values of points [(valid_time, value[, valid_time_end])] known at kt; returns them as versions."""
    versions = [V(kt, *p) for p in points]
    data = [
        {"valid_time": iso(v.vt), "value": v.value, **({"valid_time_end": iso(v.end)} if v.end else {})}
        for v in versions
    ]
    resp = client.post("/values", json={"series_id": sid, "known_time": iso(kt), "data": data})
    assert resp.status_code == 200, resp.text
    return versions


def correct(client: Any, sid: int, vt: datetime, value: float, known_time: datetime | None = None) -> datetime:
    """PUT /values: one correction (of the version known at known_time, else the latest); its change_time."""
    item: dict[str, Any] = {"series_id": sid, "valid_time": iso(vt), "value": value}
    if known_time is not None:
        item["known_time"] = iso(known_time)
    resp = client.put("/values", json={"updates": [item]})
    assert resp.status_code == 200, resp.text
    return utc(resp.json()["updated"][0]["change_time"])


Keep = Callable[[V], bool]


def latest(versions: list[V], keep: Keep = lambda v: True) -> list[V]:
    """Per valid_time, the kept version with the greatest known_time (the newest write on ties)."""
    best: dict[datetime, V] = {}
    for v in versions:
        if keep(v) and (v.vt not in best or v.kt >= best[v.vt].kt):
            best[v.vt] = v
    return [best[vt] for vt in sorted(best)]


def every_version(versions: list[V], keep: Keep = lambda v: True) -> list[V]:
    """One kept version per (known_time, valid_time) (the newest write), by known_time then valid_time."""
    chosen = {(v.kt, v.vt): v for v in versions if keep(v)}
    return [chosen[k] for k in sorted(chosen)]


def records(versions: list[V], tz: str | None = None, with_known: bool = False) -> list[dict[str, Any]]:
    """The records the API returns for these versions."""
    out = []
    for v in versions:
        rec: dict[str, Any] = {"known_time": iso(v.kt, tz)} if with_known else {}
        rec["valid_time"] = iso(v.vt, tz)
        if v.end is not None:
            rec["valid_time_end"] = iso(v.end, tz)
        rec["value"] = v.value
        out.append(rec)
    return out


def horizon(lo: timedelta | None, hi: timedelta | None) -> Keep:
    return lambda v: (lo is None or v.vt - v.kt >= lo) and (hi is None or v.vt - v.kt <= hi)


def cutoff(vt: datetime, days_ahead: int, issue_time: str = "00:00", tz: str | None = None) -> datetime:
    """(D - days_ahead days) at issue_time in tz, D = vt's local date (zoneinfo)."""
    zone = ZoneInfo(tz or "UTC")
    day = vt.astimezone(zone).date() - timedelta(days=days_ahead)
    return datetime.combine(day, time.fromisoformat(issue_time), tzinfo=zone).astimezone(UTC)


def day_ahead(days_ahead: int, issue_time: str = "00:00", tz: str | None = None) -> Keep:
    return lambda v: v.kt <= cutoff(v.vt, days_ahead, issue_time, tz)


# --- resampling, computed independently ------------------------------------------------------------

STEP_SECONDS = {"PT15M": 900, "PT45M": 2700, "PT1H": 3600, "PT6H": 6 * 3600, "PT12H": 12 * 3600}


def bucket_starts(step: str, tz: str | None, lo: datetime, hi: datetime) -> list[datetime]:
    """Every bucket start around [lo, hi]: local midnights in tz (P1D), Mondays' (P1W), months'
    firsts (P1M); for shorter steps, each local midnight and every step of elapsed time after it
    until the next local midnight (on a DST day the day's last bucket is shorter or longer)."""
    zone = ZoneInfo(tz or "UTC")
    margin = timedelta(days=40 if step.startswith("P1") else 2)
    day, last = (lo - margin).astimezone(zone).date(), (hi + margin).astimezone(zone).date()
    starts: list[datetime] = []
    while day <= last:
        midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        if step in STEP_SECONDS:
            following = datetime.combine(day + DAY, time(), tzinfo=zone).astimezone(UTC)
            t = midnight
            while t < following:
                starts.append(t)
                t += timedelta(seconds=STEP_SECONDS[step])
        elif step == "P1D" or (step == "P1W" and day.weekday() == 0) or (step == "P1M" and day.day == 1):
            starts.append(midnight)
        day += DAY
    return starts


def aggregate(agg: str, values: list[float | None]) -> float | int | None:
    """SQL-style aggregation of values in valid_time order, nulls ignored."""
    nn = [v for v in values if v is not None]
    if agg == "count":
        return len(nn)
    if not nn:
        return None
    return {"mean": sum(nn) / len(nn), "sum": sum(nn), "min": min(nn), "max": max(nn), "first": nn[0], "last": nn[-1]}[
        agg
    ]


def resampled(
    selected: list[V], step: str, agg: str, tz: str | None = None, with_known: bool = False
) -> list[dict[str, Any]]:
    """The records of selected versions resampled: one per (known_time,) bucket holding data."""
    if not selected:
        return []
    starts = bucket_starts(step, tz, min(v.vt for v in selected), max(v.vt for v in selected))
    groups: dict[tuple[datetime | None, datetime], list[V]] = {}
    for v in selected:
        i = bisect_right(starts, v.vt) - 1
        groups.setdefault((v.kt if with_known else None, starts[i]), []).append(v)
    out = []
    for (kt, start), vs in sorted(groups.items(), key=lambda g: (g[0][0] or g[0][1], g[0][1])):
        end = starts[starts.index(start) + 1]
        rec: dict[str, Any] = {"known_time": iso(kt, tz)} if with_known and kt else {}
        rec.update(
            valid_time=iso(start, tz),
            valid_time_end=iso(end, tz),
            value=aggregate(agg, [v.value for v in sorted(vs, key=lambda v: v.vt)]),
        )
        out.append(rec)
    return out


def assert_buckets_hold_their_points(counts: list[dict[str, Any]], vs: list[V]) -> None:
    """Whatever the bucket starts: each bucket of a count answer is a non-empty interval
    [valid_time, valid_time_end), the intervals do not overlap, and each counts exactly the
    non-null points inside it."""
    spans = [(utc(r["valid_time"]), utc(r["valid_time_end"])) for r in counts]
    empty = [r for r, (s, e) in zip(counts, spans, strict=True) if not s < e]
    assert not empty, f"buckets that end where they start: {empty}"
    overlaps = [(a, b) for a, b, (_, e), (s, _) in zip(counts, counts[1:], spans, spans[1:], strict=False) if s < e]
    assert not overlaps, f"overlapping buckets: {overlaps}"
    inside = [sum(1 for v in vs if v.value is not None and s <= v.vt < e) for s, e in spans]
    wrong = [(r, n) for r, n in zip(counts, inside, strict=True) if r["value"] != n]
    assert not wrong, f"buckets counting points outside them (answer, points inside): {wrong}"
    assert sum(inside) == sum(v.value is not None for v in vs)


def sample_value(i: int) -> float | None:
    """Whole numbers (exact sums) with a null every fifth point."""
    return None if i % 5 == 3 else float((i * 7) % 31 - 9)


# --- reading ------------------------------------------------------------------------------------------


def get(client: Any, sid: int, **params: Any) -> list[dict[str, Any]]:
    """GET /values of one series; asserts 200 and a consistent count; returns data."""
    return read(client, series_id=sid, **{k: v for k, v in params.items() if v is not None})


def query(client: Any, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """POST /values/query; asserts the status (and, for 200, count == len(data))."""
    resp = client.post("/values/query", json=body)
    assert resp.status_code == status, resp.text
    doc = resp.json()
    if status == 200:
        assert doc["count"] == len(doc["data"])
    return doc


def problem(resp: Any, status: int, *names: str) -> None:
    """resp is a problem with this status whose detail names every one of names."""
    body = assert_problem(resp, status)
    text = f"{body.get('detail', '')} {body['title']}"
    for name in names:
        assert name in text, (name, body)


# ===================================================================================================
# as_of
# ===================================================================================================

K0, K6 = utc("2025-01-01T00:00:00Z"), utc("2025-01-01T06:00:00Z")
VT0, VT1 = utc("2025-01-02T00:00:00Z"), utc("2025-01-02T01:00:00Z")


def two_issues(client: Any, overlapping: bool) -> tuple[int, list[V]]:
    """The worked example: issues (writes, for a flat series) at 00:00 and 06:00 for VT0 and VT1."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    versions = write(client, sid, K0, [(VT0, 100.0), (VT1, 101.0)])
    versions += write(client, sid, K6, [(VT0, 160.0), (VT1, 161.0)])
    return sid, versions


@KIND
def test_as_of_is_inclusive_and_end_known_exclusive(client, overlapping):
    """The issue's worked example: as_of=06:00 includes the 06:00 issue, end_known=06:00 does not."""
    sid, vs = two_issues(client, overlapping)
    at_six = [v for v in vs if v.kt == K6]
    at_zero = [v for v in vs if v.kt == K0]
    assert get(client, sid, as_of=iso(K6)) == records(at_six)
    assert get(client, sid, as_of="2025-01-01T07:00:00+01:00") == records(at_six)  # the same instant
    assert get(client, sid, end_known=iso(K6)) == records(at_zero)
    assert get(client, sid, as_of=iso(K6 - US)) == records(at_zero)
    assert get(client, sid, as_of=iso(K0)) == records(at_zero)
    assert get(client, sid, as_of=iso(K0 - US)) == []
    assert get(client, sid, as_of=iso(K6), versions=True) == records(every_version(vs), with_known=True)
    assert get(client, sid, end_known=iso(K6), versions=True) == records(at_zero, with_known=True)


@KIND
def test_as_of_falls_back_per_valid_time(client, overlapping):
    """A later issue that revises only VT1: as_of before it gives the older VT1, after it the newer."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vs = write(client, sid, K0, [(VT0, 1.0), (VT1, 2.0)]) + write(client, sid, K6, [(VT1, 20.0)])
    assert get(client, sid, as_of=iso(K6)) == records(latest(vs))
    assert get(client, sid, as_of=iso(K6)) == records([vs[0], vs[2]])
    assert get(client, sid, as_of=iso(K6 - US)) == records(vs[:2])


@KIND
def test_as_of_ignores_corrections_made_after_it(client, overlapping):
    """Corrections count from their change_time (taken from the PUT answer): as_of just before a
    correction gives the value it replaced, as_of at its change_time the corrected value; an old
    as_of gives the original values (their rows count from known_time though stored later)."""
    sid, vs = two_issues(client, overlapping)
    c1 = correct(client, sid, VT0, 170.0)  # the 06:00 version of VT0 (flat: the current value)
    c2 = correct(client, sid, VT0, 180.0)
    assert c1 < c2
    originals = latest(vs)
    fixed1 = [V(K6, VT0, 170.0), originals[1]]
    fixed2 = [V(K6, VT0, 180.0), originals[1]]
    assert get(client, sid, as_of=iso(K6)) == records(originals)
    assert get(client, sid, as_of=iso(c1 - US)) == records(originals)
    assert get(client, sid, as_of=iso(c1)) == records(fixed1)  # inclusive
    assert get(client, sid, as_of=iso(c2 - US)) == records(fixed1)
    assert get(client, sid, as_of=iso(c2)) == records(fixed2)
    assert get(client, sid) == records(fixed2)
    # versions: the 00:00 version is untouched, the 06:00 one as corrected by then
    old = [v for v in vs if v.kt == K0]
    assert get(client, sid, as_of=iso(c1 - US), versions=True) == records(old + originals, with_known=True)
    assert get(client, sid, as_of=iso(c1), versions=True) == records(old + fixed1, with_known=True)
    # with end_valid: only VT0
    assert get(client, sid, as_of=iso(c1), end_valid=iso(VT1)) == records(fixed1[:1])


def test_as_of_ignores_later_corrections_of_an_older_version(client):
    """A correction of the 00:00 forecast made after as_of is not seen in versions reads, nor in a
    latest read with as_of before 06:00; one made before as_of is."""
    sid, vs = two_issues(client, overlapping=True)
    c = correct(client, sid, VT1, 999.0, known_time=K0)
    old = [v for v in vs if v.kt == K0]
    new = [v for v in vs if v.kt == K6]
    assert get(client, sid, as_of=iso(c - US), versions=True) == records(old + new, with_known=True)
    assert get(client, sid, as_of=iso(c), versions=True) == records([old[0], V(K0, VT1, 999.0), *new], with_known=True)
    assert get(client, sid, as_of=iso(c)) == records(new)  # the 06:00 issue still wins
    assert get(client, sid, as_of=iso(c), end_known=iso(K6)) == records([old[0], V(K0, VT1, 999.0)])
    assert get(client, sid, as_of=iso(c - US), end_known=iso(K6)) == records(old)


@KIND
def test_as_of_in_the_audit_trail(client, overlapping):
    """include_updates with as_of: every original row known by then, and the corrections made by then."""
    sid, _ = two_issues(client, overlapping)
    c1 = correct(client, sid, VT0, 170.0)
    c2 = correct(client, sid, VT1, 171.0)
    trail = get(client, sid, include_updates=True)
    assert len(trail) == 6
    corrections = {iso(c1), iso(c2)}
    for as_of in (c1 - US, c1, c2 - US, c2):
        expected = [r for r in trail if r["change_time"] not in corrections or utc(r["change_time"]) <= as_of]
        assert get(client, sid, include_updates=True, as_of=iso(as_of)) == expected
    assert get(client, sid, include_updates=True, as_of=iso(K6 - US)) == [
        r for r in trail if r["known_time"] == iso(K0)
    ]


@KIND
def test_backfill_counts_from_its_known_time(client, overlapping):
    """A version stored later with an older known_time (a backfill) is in the state as of any
    instant from its known_time on, also as of an instant before it was stored."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    later = write(client, sid, K6, [(VT0, 60.0)])
    stored_first = utc(get(client, sid, include_updates=True)[0]["change_time"])
    k3 = utc("2025-01-01T03:00:00Z")
    backfill = write(client, sid, k3, [(VT1, 31.0)] if not overlapping else [(VT0, 30.0), (VT1, 31.0)])
    assert (
        utc(get(client, sid, include_updates=True, start_known=iso(k3), end_known=iso(K6))[0]["change_time"])
        > stored_first
    )
    assert get(client, sid, as_of=iso(k3 - US)) == []
    assert get(client, sid, as_of=iso(k3)) == records(backfill)
    assert get(client, sid, as_of="2025-01-01T05:00:00Z") == records(backfill)
    assert get(client, sid, as_of=iso(K6)) == records([later[0], backfill[-1]])
    # as of the instant the 06:00 version was stored, before the backfill was: the backfill counts
    assert get(client, sid, as_of=iso(stored_first)) == records([later[0], backfill[-1]])
    assert get(client, sid, as_of=iso(stored_first), versions=True) == records(
        every_version(later + backfill), with_known=True
    )


@KIND
def test_as_of_with_a_valid_window(client, overlapping):
    """as_of combines with start_valid (inclusive) and end_valid (exclusive)."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vts = steps(VT0, VT0 + 6 * HOUR, HOUR)
    vs = write(client, sid, K0, [(t, float(i)) for i, t in enumerate(vts)])
    vs += write(client, sid, K6, [(t, 10.0 + i) for i, t in enumerate(vts)])
    window = {"start_valid": iso(vts[1]), "end_valid": iso(vts[4])}

    def inside(v: V) -> bool:
        return vts[1] <= v.vt < vts[4]

    for as_of in (K0, K6 - US, K6):

        def keep(v: V, as_of: datetime = as_of) -> bool:
            return inside(v) and v.kt <= as_of

        assert get(client, sid, as_of=iso(as_of), **window) == records(latest(vs, keep))
        assert get(client, sid, as_of=iso(as_of), versions=True, **window) == records(
            every_version(vs, keep), with_known=True
        )


# ===================================================================================================
# min_horizon / max_horizon
# ===================================================================================================

T0 = utc("2025-01-01T00:00:00Z")


def six_hourly_issues(client: Any, overlapping: bool) -> tuple[int, list[V]]:
    """Issues every 6 hours (T0 .. T0+30h), each for the hourly valid_times T0 .. T0+47h
    (leads from -30h to +47h); value = 100 * issue + hour."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vts = steps(T0, T0 + 48 * HOUR, HOUR)
    vs: list[V] = []
    for j in range(6):
        vs += write(client, sid, T0 + 6 * j * HOUR, [(t, 100.0 * j + i) for i, t in enumerate(vts)])
    return sid, vs


def test_min_horizon_staircase_by_hand(client):
    """Issues at 00, 06, 12 for 06:00..18:00; min_horizon=PT6H takes, per valid_time, the newest
    issue at least 6 hours ahead: 00 for 06-11, 06 for 12-17, 12 for 18."""
    sid = make_series(client, name="fc", overlapping=True)
    vts = steps(T0 + 6 * HOUR, T0 + 19 * HOUR, HOUR)
    for issue in (0, 6, 12):
        write(client, sid, T0 + issue * HOUR, [(t, issue * 100.0 + t.hour) for t in vts])
    expected = [
        {"valid_time": iso(t), "value": (0 if t.hour < 12 else 600 if t.hour < 18 else 1200) + t.hour} for t in vts
    ]
    assert get(client, sid, min_horizon="PT6H") == expected


HORIZONS = [
    ("PT6H", None),
    (None, "PT12H"),
    ("PT6H", "PT12H"),
    ("PT7H", "PT7H"),
    ("P1D", None),
    ("PT0S", None),
    (None, "PT0S"),
    ("P1DT6H", None),
    ("PT2H30M", "P1D"),
    ("p1dt1h", None),
    ("P1W", None),
    ("PT0S", "P2DT12H"),
]


@pytest.mark.grid
@KIND
@pytest.mark.parametrize(("lo", "hi"), HORIZONS, ids=[f"{lo}-{hi}" for lo, hi in HORIZONS])
def test_horizon_window(client, overlapping, lo, hi):
    """Versions whose lead valid_time - known_time is in [min_horizon, max_horizon]; latest reads
    take the newest of them per valid_time (the staircase)."""
    sid, vs = six_hourly_issues(client, overlapping)
    spans = {
        "PT6H": 6 * HOUR,
        "PT12H": 12 * HOUR,
        "PT7H": 7 * HOUR,
        "P1D": DAY,
        "PT0S": timedelta(0),
        "P1DT6H": 30 * HOUR,
        "PT2H30M": timedelta(hours=2, minutes=30),
        "p1dt1h": 25 * HOUR,
        "P1W": 7 * DAY,
        "P2DT12H": 60 * HOUR,
    }
    keep = horizon(spans.get(lo), spans.get(hi))
    params = {"min_horizon": lo, "max_horizon": hi}
    assert get(client, sid, **params) == records(latest(vs, keep))
    assert get(client, sid, versions=True, **params) == records(every_version(vs, keep), with_known=True)


@KIND
def test_horizon_bounds_are_inclusive(client, overlapping):
    """A lead of exactly 6 hours is kept by min_horizon=PT6H and max_horizon=PT6H, and dropped one
    microsecond inside either bound."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    write(client, sid, T0, [(T0 + 6 * HOUR, 1.0)])
    exact = [{"valid_time": iso(T0 + 6 * HOUR), "value": 1.0}]
    assert get(client, sid, min_horizon="PT6H") == exact
    assert get(client, sid, max_horizon="PT6H") == exact
    assert get(client, sid, min_horizon="PT6H", max_horizon="PT6H") == exact
    assert get(client, sid, min_horizon="PT6H0.000001S") == []
    assert get(client, sid, max_horizon="PT5H59M59.999999S") == []


@KIND
def test_horizon_with_as_of_and_valid_window(client, overlapping):
    """min_horizon, as_of and a valid window together: each filter applies to the versions."""
    sid, vs = six_hourly_issues(client, overlapping)
    as_of, lo, hi = T0 + 18 * HOUR, T0 + 20 * HOUR, T0 + 40 * HOUR

    def keep(v: V) -> bool:
        return v.kt <= as_of and lo <= v.vt < hi and v.vt - v.kt >= 12 * HOUR

    assert get(client, sid, min_horizon="PT12H", as_of=iso(as_of), start_valid=iso(lo), end_valid=iso(hi)) == records(
        latest(vs, keep)
    )


@pytest.mark.grid
@pytest.mark.parametrize("via", ["GET", "POST"])
@pytest.mark.parametrize("param", ["min_horizon", "max_horizon"])
@pytest.mark.parametrize("bad", ["-PT6H", "PT-6H", "6H", "PT", "PT6X", "P1.5D", "P1M", "P1Y2D"])
def test_bad_horizon_is_400_naming_it(client, via, param, bad):
    """Negative, malformed and month/year durations are a 400 naming the parameter (the issue:
    "Negative or malformed durations: 400 naming the parameter"), in GET /values and in the body
    of POST /values/query."""
    sid = make_series(client, name="fc", overlapping=True)
    resp = (
        client.get("/values", params={"series_id": sid, param: bad})
        if via == "GET"
        else client.post("/values/query", json={"series": [{"series_id": sid}], param: bad})
    )
    problem(resp, 400, param)


def test_min_horizon_above_max_horizon_is_400(client):
    """min_horizon > max_horizon is a 400 naming them; equal bounds are fine."""
    sid = make_series(client, name="fc", overlapping=True)
    problem(
        client.get("/values", params={"series_id": sid, "min_horizon": "PT7H", "max_horizon": "PT6H"}),
        400,
        "min_horizon",
    )
    problem(
        client.post(
            "/values/query", json={"series": [{"series_id": sid}], "min_horizon": "P1D", "max_horizon": "PT23H"}
        ),
        400,
        "min_horizon",
    )
    assert get(client, sid, min_horizon="P1D", max_horizon="PT24H") == []


# ===================================================================================================
# days_ahead / issue_time / tz
# ===================================================================================================


def day_ahead_data(
    client: Any, overlapping: bool, tz: str | None, day: date, days_ahead: int, issue_time: str
) -> tuple[int, list[V], datetime, datetime]:
    """Half-hourly valid_times over the local days day-1 .. day+1 (in tz), and issues exactly at
    each of their three cutoffs and 30 minutes, 1 hour and 2 hours either side of it, plus an
    early issue; each issue covers every valid_time, value = 1000 * issue + point."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    start, end = midnight(tz, day - DAY), midnight(tz, day + 2 * DAY)
    vts = steps(start, end, 30 * MINUTE)
    cutoffs = sorted({cutoff(t, days_ahead, issue_time, tz) for t in vts})
    assert len(cutoffs) == 3
    issues = sorted({c + k * 30 * MINUTE for c in cutoffs for k in (-4, -2, -1, 0, 1, 2, 4)} | {cutoffs[0] - 3 * DAY})
    vs: list[V] = []
    for j, kt in enumerate(issues):
        vs += write(client, sid, kt, [(t, 1000.0 * j + i) for i, t in enumerate(vts)])
    return sid, vs, start, end


DAY_AHEAD = [
    (BERLIN, date(2025, 3, 30), 1, "06:00"),
    (BERLIN, date(2025, 10, 26), 1, "06:00"),
    (NEW_YORK, date(2025, 3, 9), 1, "06:00"),
    (NEW_YORK, date(2025, 11, 2), 1, "06:00"),
    (BERLIN, date(2025, 3, 31), 1, "06:00"),  # the cutoff falls on the 23-hour day
    (BERLIN, date(2025, 10, 26), 0, "00:00"),
    (NEW_YORK, date(2025, 3, 9), 0, "12:00"),
    (BERLIN, date(2025, 10, 27), 2, "12:00"),
    (NEW_YORK, date(2025, 11, 3), 2, "23:00"),
    (NEW_YORK, date(2025, 11, 2), 7, "09:30"),
    (None, date(2025, 3, 30), 1, "06:00"),
]


@pytest.mark.grid
@KIND
@pytest.mark.parametrize(
    ("tz", "day", "days_ahead", "issue_time"), DAY_AHEAD, ids=[f"{tz}-{day}-{n}d-{t}" for tz, day, n, t in DAY_AHEAD]
)
def test_day_ahead_cutoff(client, overlapping, tz, day, days_ahead, issue_time):
    """For each valid_time with local date D, the newest version known by (D - days_ahead) at
    issue_time local (inclusive), on and around DST days; timestamps carry tz's offset."""
    sid, vs, _, _ = day_ahead_data(client, overlapping, tz, day, days_ahead, issue_time)
    keep = day_ahead(days_ahead, issue_time, tz)
    params = {"days_ahead": days_ahead, "issue_time": issue_time, "tz": tz}
    assert get(client, sid, **params) == records(latest(vs, keep), tz)
    assert get(client, sid, versions=True, **params) == records(every_version(vs, keep), tz, with_known=True)


def test_day_ahead_issue_time_defaults_to_midnight(client):
    """days_ahead without issue_time: the cutoff is local midnight of D - days_ahead."""
    sid, vs, _, _ = day_ahead_data(client, True, NEW_YORK, date(2025, 11, 2), 1, "00:00")
    assert get(client, sid, days_ahead=1, tz=NEW_YORK) == records(latest(vs, day_ahead(1, "00:00", NEW_YORK)), NEW_YORK)


@KIND
def test_day_ahead_by_hand_in_berlin_on_the_23_hour_day(client, overlapping):
    """By hand: the valid_times 00:00 and 23:00 local on 30 March 2025 (both D = 30 March) use
    the version known by 29 March 06:00+01:00 (05:00Z); 31 March 00:00+02:00 uses 30 March
    06:00+02:00 (04:00Z)."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vts = [utc("2025-03-29T23:00:00Z"), utc("2025-03-30T21:00:00Z"), utc("2025-03-30T22:00:00Z")]
    for kt, base in (
        ("2025-03-29T04:59:59Z", 1.0),
        ("2025-03-29T05:00:00Z", 2.0),
        ("2025-03-29T05:00:01Z", 3.0),
        ("2025-03-30T04:00:00Z", 4.0),
        ("2025-03-30T04:30:00Z", 5.0),
    ):
        write(client, sid, utc(kt), [(t, base) for t in vts])
    assert get(client, sid, days_ahead=1, issue_time="06:00", tz=BERLIN) == [
        {"valid_time": "2025-03-30T00:00:00+01:00", "value": 2.0},
        {"valid_time": "2025-03-30T23:00:00+02:00", "value": 2.0},
        {"valid_time": "2025-03-31T00:00:00+02:00", "value": 4.0},
    ]


@KIND
@pytest.mark.parametrize(
    ("tz", "day"),
    [(BERLIN, date(2025, 10, 26)), (NEW_YORK, date(2025, 3, 9)), (NEW_YORK, date(2025, 11, 2))],
    ids=["Berlin", "NY-spring", "NY-fall"],
)
def test_day_ahead_intervals_crossing_midnight(client, overlapping, tz, day):
    """Intervals from 22:00 and 23:00 local to 01:00 the next day: D is the start's date; the
    interval ends print with the offset of their own instant."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    zone = ZoneInfo(tz)
    points: list[Point] = []
    for d in (day - DAY, day, day + DAY):
        end = datetime.combine(d + DAY, time(1), tzinfo=zone).astimezone(UTC)
        for h in (22, 23):
            points.append((datetime.combine(d, time(h), tzinfo=zone).astimezone(UTC), float(d.day * 100 + h), end))
    cut = sorted({cutoff(p[0], 1, "06:00", tz) for p in points})
    vs: list[V] = []
    for j, kt in enumerate(sorted({c + k * HOUR for c in cut for k in (-1, 0, 1)})):
        vs += write(client, sid, kt, [(p[0], (p[1] or 0) + 0.5 * j, p[2]) for p in points])
    data = get(client, sid, days_ahead=1, issue_time="06:00", tz=tz)
    assert data == records(latest(vs, day_ahead(1, "06:00", tz)), tz)
    assert len(data) == 6
    assert all(
        r["valid_time_end"][11:19] == "01:00:00" and r["valid_time_end"][:10] > r["valid_time"][:10] for r in data
    )


@KIND
def test_day_ahead_valid_times_next_to_local_midnight(client, overlapping):
    """23:59 and 00:00 local are on different dates D: their cutoffs are a day apart."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    zone = ZoneInfo(NEW_YORK)
    before = datetime(2025, 11, 1, 23, 59, tzinfo=zone).astimezone(UTC)
    after = datetime(2025, 11, 2, 0, 0, tzinfo=zone).astimezone(UTC)
    write(client, sid, datetime(2025, 10, 31, 6, 0, tzinfo=zone).astimezone(UTC), [(before, 1.0), (after, 1.0)])
    write(client, sid, datetime(2025, 11, 1, 6, 0, tzinfo=zone).astimezone(UTC), [(before, 2.0), (after, 2.0)])
    assert get(client, sid, days_ahead=1, issue_time="06:00", tz=NEW_YORK) == [
        {"valid_time": "2025-11-01T23:59:00-04:00", "value": 1.0},
        {"valid_time": "2025-11-02T00:00:00-04:00", "value": 2.0},
    ]
    # in UTC both valid_times are on 2 November (03:59Z, 04:00Z): the same cutoff, 1 Nov 06:00Z
    assert get(client, sid, days_ahead=1, issue_time="06:00") == [
        {"valid_time": "2025-11-02T03:59:00+00:00", "value": 1.0},
        {"valid_time": "2025-11-02T04:00:00+00:00", "value": 1.0},
    ]


@KIND
def test_day_ahead_with_as_of_and_corrections(client, overlapping):
    """days_ahead combines with as_of: a correction of the selected version after as_of is not seen."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vt = utc("2025-03-30T10:00:00Z")
    write(client, sid, utc("2025-03-29T04:00:00Z"), [(vt, 1.0)])
    write(client, sid, utc("2025-03-29T06:00:00Z"), [(vt, 2.0)])
    c = correct(client, sid, vt, 9.0, known_time=utc("2025-03-29T04:00:00Z") if overlapping else None)
    params = {"days_ahead": 1, "issue_time": "06:00", "tz": BERLIN}
    local_vt = "2025-03-30T12:00:00+02:00"
    if overlapping:  # the correction hits the 04:00Z version, the one the 05:00Z cutoff selects
        assert get(client, sid, as_of=iso(c - US), **params) == [{"valid_time": local_vt, "value": 1.0}]
        assert get(client, sid, as_of=iso(c), **params) == [{"valid_time": local_vt, "value": 9.0}]
    else:  # the correction hits the current value, the 06:00Z write, past the cutoff
        assert get(client, sid, as_of=iso(c), **params) == [{"valid_time": local_vt, "value": 1.0}]
        assert get(client, sid, as_of=iso(c - US)) == [{"valid_time": iso(vt), "value": 2.0}]
        assert get(client, sid, as_of=iso(c)) == [{"valid_time": iso(vt), "value": 9.0}]


@pytest.mark.grid
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"issue_time": "06:00"}, "issue_time"),
        ({"issue_time": "06:00", "tz": BERLIN}, "issue_time"),
        ({"days_ahead": 1, "tz": "Mars/Olympus"}, "tz"),
        ({"tz": "Europe/Berlinn"}, "tz"),
        ({"resample": "PT1H", "tz": "Nowhere"}, "tz"),
        ({"days_ahead": 1, "issue_time": "6:00"}, None),
        ({"days_ahead": 1, "issue_time": "24:00"}, None),
        ({"days_ahead": -1}, None),
        ({"days_ahead": 367}, None),
        ({"days_ahead": "x"}, None),
    ],
    ids=[
        "issue-without-days",
        "issue-tz-without-days",
        "unknown-tz",
        "typo-tz",
        "unknown-tz-resample",
        "bad-issue",
        "issue-24",
        "days-negative",
        "days-367",
        "days-text",
    ],
)
def test_bad_day_ahead_parameters_are_400(client, params, name):
    """issue_time without days_ahead and an unknown tz: 400 naming the parameter; values outside
    the schema (issue_time not HH:MM, days_ahead outside 0-366): 400 (GET and POST)."""
    sid = make_series(client, name="fc", overlapping=True)
    names = [name] if name else []
    problem(client.get("/values", params={"series_id": sid, **params}), 400, *names)
    problem(client.post("/values/query", json={"series": [{"series_id": sid}], **params}), 400, *names)


# --- output offsets -----------------------------------------------------------------------------------


def test_tz_output_strings_by_hand(client):
    """Exact strings on DST days: Berlin's 02:00 does not exist on 30 March, New York's 01:30 is
    repeated on 2 November; without tz everything stays +00:00."""
    sid = make_series(client, name="meter")
    times = ["2025-03-30T00:30:00Z", "2025-03-30T01:00:00Z", "2025-11-02T05:30:00Z", "2025-11-02T06:30:00Z"]
    write(client, sid, utc("2025-01-01T00:00:00Z"), [(utc(t), float(i)) for i, t in enumerate(times)])
    assert [r["valid_time"] for r in get(client, sid, tz=BERLIN)] == [
        "2025-03-30T01:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-11-02T06:30:00+01:00",
        "2025-11-02T07:30:00+01:00",
    ]
    assert [r["valid_time"] for r in get(client, sid, tz=NEW_YORK)] == [
        "2025-03-29T20:30:00-04:00",
        "2025-03-29T21:00:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-02T01:30:00-05:00",
    ]
    assert [r["valid_time"] for r in get(client, sid)] == [
        "2025-03-30T00:30:00+00:00",
        "2025-03-30T01:00:00+00:00",
        "2025-11-02T05:30:00+00:00",
        "2025-11-02T06:30:00+00:00",
    ]
    assert [r["valid_time"] for r in get(client, sid, tz="UTC")] == [
        "2025-03-30T00:30:00+00:00",
        "2025-03-30T01:00:00+00:00",
        "2025-11-02T05:30:00+00:00",
        "2025-11-02T06:30:00+00:00",
    ]


@KIND
@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK, "Asia/Kolkata", "UTC"])
def test_tz_changes_only_the_offsets(client, overlapping, tz):
    """With tz alone, every mode answers the same records as without, each timestamp (known_time,
    valid_time, valid_time_end, change_time) printed in tz (converted here with zoneinfo)."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    vts = steps(utc("2025-10-25T20:00:00Z"), utc("2025-10-26T04:00:00Z"), 30 * MINUTE)
    write(client, sid, utc("2025-10-25T00:00:00.123456Z"), [(t, 1.0, t + HOUR) for t in vts])
    write(client, sid, utc("2025-10-26T01:30:00Z"), [(t, 2.0) for t in vts[::2]])
    correct(client, sid, vts[0], 5.0)
    stamps = ("known_time", "valid_time", "valid_time_end", "change_time")
    for mode in ({}, {"versions": True}, {"include_updates": True}):
        plain = get(client, sid, **mode)
        expected = [{k: iso(utc(v), tz) if k in stamps else v for k, v in r.items()} for r in plain]
        assert get(client, sid, tz=tz, **mode) == expected, mode


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_tz_output_keeps_the_instant_of_historic_offsets(client, tz):
    """Before standard time the zones had offsets with seconds (Berlin +00:53:28, New York
    -04:56:02): a timestamp printed in tz must still denote the stored instant."""
    sid = make_series(client, name="meter")
    vt = utc("1850-01-01T12:00:00Z")
    write(client, sid, utc("2025-01-01T00:00:00Z"), [(vt, 1.0)])
    resp = client.get("/values", params={"series_id": sid, "tz": tz})
    assert resp.status_code == 200, resp.text
    [rec] = resp.json()["data"]
    assert datetime.fromisoformat(rec["valid_time"]) == vt, (rec["valid_time"], iso(vt, tz))


# ===================================================================================================
# resample
# ===================================================================================================

AGGS = ["mean", "sum", "min", "max", "first", "last", "count"]
STEPS = ["PT15M", "PT1H", "PT6H", "P1D", "P1W", "P1M"]
ZONES = [(None, d) for d in (date(2025, 3, 30), date(2025, 11, 2))] + [(z, d) for z, d, _ in DST_DAYS]
ZONE_IDS = ["UTC-2025-03-30", "UTC-2025-11-02", *DST_IDS]


def quarter_hours(client: Any, sid: int, tz: str | None, day: date, kt: datetime = T0) -> list[V]:
    """15-minute values (a null every fifth) over the local days day-2 .. day+2 in tz."""
    vts = steps(midnight(tz, day - 2 * DAY), midnight(tz, day + 3 * DAY), 15 * MINUTE)
    return write(client, sid, kt, [(t, sample_value(i)) for i, t in enumerate(vts)])


@pytest.mark.grid
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("tz", "day"), ZONES, ids=ZONE_IDS)
def test_resample_every_agg(client, tz, day, step):
    """Buckets aligned in tz (UTC without it), for every agg, nulls ignored; valid_time = bucket
    start, valid_time_end = bucket end; printed with tz's offset."""
    sid = make_series(client, name="meter")
    vs = quarter_hours(client, sid, tz, day)
    for agg in AGGS:
        assert get(client, sid, resample=step, agg=agg, tz=tz) == resampled(vs, step, agg, tz), agg
    assert get(client, sid, resample=step, tz=tz) == resampled(vs, step, "mean", tz)  # agg defaults to mean


ODD_ZONES = [
    ("Asia/Kolkata", date(2025, 3, 30)),  # +05:30, no DST
    ("Australia/Lord_Howe", date(2025, 4, 6)),  # 02:00+11:00 -> 01:30+10:30
    ("Australia/Lord_Howe", date(2025, 10, 5)),  # 02:00+10:30 -> 02:30+11:00
    ("Antarctica/Troll", date(2025, 3, 30)),  # 01:00+00:00 -> 03:00+02:00
    ("Antarctica/Troll", date(2025, 10, 26)),
]  # 03:00+02:00 -> 01:00+00:00


@pytest.mark.grid
@pytest.mark.parametrize("step", ["PT15M", "PT45M", "PT1H", "PT6H", "PT12H", "P1D"])
@pytest.mark.parametrize(("tz", "day"), ODD_ZONES, ids=[f"{z.split('/')[1]}-{d}" for z, d in ODD_ZONES])
def test_resample_in_zones_with_odd_offsets(client, tz, day, step):
    """Buckets at local wall-clock multiples of their length from midnight also where the offset
    has half hours, DST moves the clock by 30 minutes or by 2 hours: each bucket ends where the
    next one starts (a repeated wall time starts a bucket twice)."""
    sid = make_series(client, name="meter")
    vs = quarter_hours(client, sid, tz, day)
    counts = get(client, sid, resample=step, agg="count", tz=tz)
    assert_buckets_hold_their_points(counts, vs)
    assert counts == resampled(vs, step, "count", tz)
    assert get(client, sid, resample=step, agg="sum", tz=tz) == resampled(vs, step, "sum", tz)


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS, ids=DST_IDS)
def test_resample_on_dst_days_by_hand(client, tz, day, hours):
    """On a DST day the day bucket spans 23 or 25 hours and there are 23 or 25 hourly buckets,
    each an hour long; the counts of 15-minute points say so."""
    sid = make_series(client, name="meter")
    start, end = midnight(tz, day), midnight(tz, day + DAY)
    assert end - start == hours * HOUR
    write(client, sid, T0, [(t, 1.0) for t in steps(start, end, 15 * MINUTE)])
    assert get(client, sid, resample="P1D", agg="count", tz=tz) == [
        {"valid_time": iso(start, tz), "valid_time_end": iso(end, tz), "value": 4 * hours}
    ]
    hourly = get(client, sid, resample="PT1H", agg="count", tz=tz)
    assert len(hourly) == hours
    assert [r["value"] for r in hourly] == [4] * hours
    assert [r["valid_time"] for r in hourly] == [iso(t, tz) for t in steps(start, end, HOUR)]
    assert [r["valid_time_end"] for r in hourly] == [iso(t + HOUR, tz) for t in steps(start, end, HOUR)]


def test_resample_day_bucket_strings_by_hand(client):
    """Berlin, 26 October 2025: the day is 00:00+02:00 .. 27 Oct 00:00+01:00; hourly buckets
    include 02:00+02:00 and 02:00+01:00."""
    sid = make_series(client, name="meter")
    write(
        client,
        sid,
        T0,
        [(utc("2025-10-25T23:30:00Z"), 1.0), (utc("2025-10-26T00:30:00Z"), 2.0), (utc("2025-10-26T01:30:00Z"), 3.0)],
    )
    assert get(client, sid, resample="P1D", agg="sum", tz=BERLIN) == [
        {"valid_time": "2025-10-26T00:00:00+02:00", "valid_time_end": "2025-10-27T00:00:00+01:00", "value": 6.0}
    ]
    assert get(client, sid, resample="PT1H", agg="sum", tz=BERLIN) == [
        {"valid_time": "2025-10-26T01:00:00+02:00", "valid_time_end": "2025-10-26T02:00:00+02:00", "value": 1.0},
        {"valid_time": "2025-10-26T02:00:00+02:00", "valid_time_end": "2025-10-26T02:00:00+01:00", "value": 2.0},
        {"valid_time": "2025-10-26T02:00:00+01:00", "valid_time_end": "2025-10-26T03:00:00+01:00", "value": 3.0},
    ]
    assert get(client, sid, resample="P1D", agg="sum") == [
        {"valid_time": "2025-10-25T00:00:00+00:00", "valid_time_end": "2025-10-26T00:00:00+00:00", "value": 1.0},
        {"valid_time": "2025-10-26T00:00:00+00:00", "valid_time_end": "2025-10-27T00:00:00+00:00", "value": 5.0},
    ]


def test_resample_weeks_start_on_monday_and_months_on_the_first(client):
    """P1W buckets start on Monday local midnight, P1M on the first of the month, in New York."""
    sid = make_series(client, name="meter")
    zone = ZoneInfo(NEW_YORK)
    vts = [datetime(2025, 3, d, h, tzinfo=zone).astimezone(UTC) for d, h in ((2, 23), (3, 0), (31, 23))]
    vts.append(datetime(2025, 4, 1, 0, tzinfo=zone).astimezone(UTC))
    write(client, sid, T0, [(t, 1.0) for t in vts])
    assert get(client, sid, resample="P1W", agg="count", tz=NEW_YORK) == [
        {"valid_time": "2025-02-24T00:00:00-05:00", "valid_time_end": "2025-03-03T00:00:00-05:00", "value": 1},
        {"valid_time": "2025-03-03T00:00:00-05:00", "valid_time_end": "2025-03-10T00:00:00-04:00", "value": 1},
        {"valid_time": "2025-03-31T00:00:00-04:00", "valid_time_end": "2025-04-07T00:00:00-04:00", "value": 2},
    ]
    assert get(client, sid, resample="P1M", agg="count", tz=NEW_YORK) == [
        {"valid_time": "2025-03-01T00:00:00-05:00", "valid_time_end": "2025-04-01T00:00:00-04:00", "value": 3},
        {"valid_time": "2025-04-01T00:00:00-04:00", "valid_time_end": "2025-05-01T00:00:00-04:00", "value": 1},
    ]


@pytest.mark.grid
@pytest.mark.parametrize("tz", [None, BERLIN])
@pytest.mark.parametrize("agg", AGGS)
def test_resample_after_version_selection(client, tz, agg):
    """Overlapping series: the latest read resamples the newest version of each valid_time (a null
    in it included), versions reads resample each version on its own; as_of and min_horizon select
    before resampling."""
    sid = make_series(client, name="fc", overlapping=True)
    day = date(2025, 3, 30)
    vs = quarter_hours(client, sid, tz, day, kt=utc("2025-03-27T00:00:00Z"))
    vts = [v.vt for v in vs][100:300]
    vs += write(
        client, sid, utc("2025-03-29T00:00:00Z"), [(t, None if i % 9 == 0 else 1000.0 + i) for i, t in enumerate(vts)]
    )
    for step in ("PT1H", "P1D"):
        assert get(client, sid, resample=step, agg=agg, tz=tz) == resampled(latest(vs), step, agg, tz)
        assert get(client, sid, resample=step, agg=agg, tz=tz, versions=True) == resampled(
            every_version(vs), step, agg, tz, with_known=True
        )
        old = latest(vs, lambda v: v.kt <= utc("2025-03-28T00:00:00Z"))
        assert get(client, sid, resample=step, agg=agg, tz=tz, as_of="2025-03-28T00:00:00Z") == resampled(
            old, step, agg, tz
        )
        far = latest(vs, horizon(2 * DAY, None))
        assert get(client, sid, resample=step, agg=agg, tz=tz, min_horizon="P2D") == resampled(far, step, agg, tz)


@pytest.mark.parametrize("agg", AGGS)
def test_resample_flat_series_after_corrections_and_rewrites(client, agg):
    """Flat series: the current value (newest write or correction) is resampled; versions reads
    resample each write (known_time) on its own."""
    sid = make_series(client, name="meter")
    day = date(2025, 11, 2)
    vs = quarter_hours(client, sid, NEW_YORK, day)
    rewrite = write(client, sid, utc("2025-06-01T00:00:00Z"), [(v.vt, 50.0) for v in vs[200:240]])
    correct(client, sid, vs[210].vt, -5.0)
    current = latest(vs + rewrite)
    current = [V(v.kt, v.vt, -5.0) if v.vt == vs[210].vt else v for v in current]
    assert get(client, sid, resample="PT6H", agg=agg, tz=NEW_YORK) == resampled(current, "PT6H", agg, NEW_YORK)
    per_write = every_version(vs) + [V(v.kt, v.vt, -5.0) if v.vt == vs[210].vt else v for v in rewrite]
    assert get(client, sid, resample="P1D", agg=agg, tz=NEW_YORK, versions=True) == resampled(
        per_write, "P1D", agg, NEW_YORK, with_known=True
    )


def test_resample_of_intervals_uses_the_bucket_end(client):
    """Stored interval ends do not leak into resampled records: valid_time_end is the bucket end."""
    sid = make_series(client, name="meter")
    write(
        client,
        sid,
        T0,
        [
            (utc("2025-01-01T00:00:00Z"), 1.0, utc("2025-01-01T05:00:00Z")),
            (utc("2025-01-01T00:30:00Z"), 3.0, utc("2025-01-01T00:45:00Z")),
        ],
    )
    assert get(client, sid, resample="PT1H", agg="mean") == [
        {"valid_time": "2025-01-01T00:00:00+00:00", "valid_time_end": "2025-01-01T01:00:00+00:00", "value": 2.0}
    ]


def test_buckets_without_data_are_absent(client):
    """Gaps in the data leave no empty buckets."""
    sid = make_series(client, name="meter")
    write(client, sid, T0, [(utc("2025-01-01T00:10:00Z"), 1.0), (utc("2025-01-01T05:10:00Z"), 2.0)])
    assert get(client, sid, resample="PT1H", agg="count") == [
        {"valid_time": "2025-01-01T00:00:00+00:00", "valid_time_end": "2025-01-01T01:00:00+00:00", "value": 1},
        {"valid_time": "2025-01-01T05:00:00+00:00", "valid_time_end": "2025-01-01T06:00:00+00:00", "value": 1},
    ]


@pytest.mark.grid
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"resample": "PT1H", "include_updates": "true"}, "resample"),
        ({"agg": "sum"}, "agg"),
        ({"resample": "PT7M"}, "resample"),
        ({"resample": "PT13H"}, "resample"),
        ({"resample": "P2D"}, "resample"),
        ({"resample": "PT30S"}, "resample"),
        ({"resample": "PT0S"}, "resample"),
        ({"resample": "P1Y"}, "resample"),
        ({"resample": "P2W"}, "resample"),
        ({"resample": "PT1H", "agg": "median"}, None),
        ({"resample": "1H"}, None),
    ],
    ids=["audit", "agg-alone", "PT7M", "PT13H", "P2D", "PT30S", "PT0S", "P1Y", "P2W", "median", "no-P"],
)
def test_bad_resample_is_400(client, params, name):
    """Unsupported durations, agg without resample, resample of the audit trail: 400 naming the
    parameter; values outside the schema (an unknown agg, no leading P): 400."""
    sid = make_series(client, name="meter")
    names = [name] if name else []
    problem(client.get("/values", params={"series_id": sid, **params}), 400, *names)
    body: dict[str, Any] = {"series": [{"series_id": sid}], **params}
    if body.pop("include_updates", None):
        body["mode"] = "audit"
    problem(client.post("/values/query", json=body), 400, *names)


# ===================================================================================================
# POST /values/query
# ===================================================================================================

Q0 = utc("2025-03-29T00:00:00Z")


@dataclass
class Catalogue:
    """Three series: wind/a (flat, also labelled model=x), wind/b (overlapping), solar/a (overlapping, kW)."""

    a: int
    b: int
    c: int
    meta: dict[int, dict[str, Any]]
    changed: datetime  # the change_time of the first correction


def catalogue(client: Any) -> Catalogue:
    a = make_series(client, name="wind", labels={"site": "a", "model": "x"}, unit="MW")
    b = make_series(client, name="wind", labels={"site": "b"}, unit="MW", overlapping=True)
    c = make_series(client, name="solar", labels={"site": "a"}, unit="kW", overlapping=True)
    vts = steps(Q0, Q0 + 3 * DAY, HOUR)
    for j, kt in enumerate(
        (
            "2025-03-27T05:00:00Z",
            "2025-03-28T05:00:00Z",
            "2025-03-29T04:00:00Z",
            "2025-03-30T03:00:00Z",
            "2025-03-30T05:00:00Z",
        )
    ):
        write(client, a, utc(kt), [(t, 10.0 * j + i) for i, t in enumerate(vts) if (i + j) % 4])
        write(client, b, utc(kt), [(t, 1000.0 * j + i) for i, t in enumerate(vts)])
        write(
            client,
            c,
            utc(kt),
            [(t, None if i % 7 == 0 else -float(j * i), t + HOUR) for i, t in enumerate(vts) if i % 2 == j % 2],
        )
    changed = correct(client, b, vts[30], 0.5)
    correct(client, a, vts[31], 0.25)
    correct(client, c, vts[1], 7.0, known_time=utc("2025-03-28T05:00:00Z"))
    meta = {
        a: {"series_id": a, "name": "wind", "labels": {"site": "a", "model": "x"}, "unit": "MW"},
        b: {"series_id": b, "name": "wind", "labels": {"site": "b"}, "unit": "MW"},
        c: {"series_id": c, "name": "solar", "labels": {"site": "a"}, "unit": "kW"},
    }
    return Catalogue(a, b, c, meta, changed)


def get_params(params: dict[str, Any]) -> dict[str, Any]:
    """The GET /values parameters of a query body's read parameters."""
    out = {k: v for k, v in params.items() if k != "mode"}
    mode = params.get("mode", "latest")
    if mode == "versions":
        out["versions"] = True
    elif mode == "audit":
        out["include_updates"] = True
    return out


def assert_series_by_series(
    client: Any, doc: dict[str, Any], order: list[int], cat: Catalogue, params: dict[str, Any]
) -> None:
    """doc answers the series of order, one after the other, each exactly as GET /values does."""
    assert doc["series"] == [cat.meta[s] for s in order]
    ids = [r["series_id"] for r in doc["data"]]
    assert ids == sorted(ids, key=order.index), "not series by series in the listed order"
    assert all(next(iter(r)) == "series_id" for r in doc["data"])
    for s in order:
        rows = [{k: v for k, v in r.items() if k != "series_id"} for r in doc["data"] if r["series_id"] == s]
        assert rows == get(client, s, **get_params(params)), s


QUERY_PARAMS: list[dict[str, Any]] = [
    {},
    {"mode": "versions"},
    {"mode": "audit"},
    {"as_of": "2025-03-29T04:00:00Z"},
    {"as_of": "2025-03-28T05:00:00Z", "mode": "versions"},
    {"as_of": "2025-03-30T03:00:00Z", "mode": "audit"},
    {"end_known": "2025-03-29T04:00:00Z", "start_valid": "2025-03-29T12:00:00Z", "end_valid": "2025-03-30T12:00:00Z"},
    {"start_known": "2025-03-28T05:00:00Z", "mode": "versions"},
    {"min_horizon": "PT20H"},
    {"min_horizon": "PT6H", "max_horizon": "P1DT12H", "mode": "versions"},
    {"max_horizon": "PT0S", "mode": "audit"},
    {"days_ahead": 1, "issue_time": "06:00", "tz": BERLIN},
    {"days_ahead": 0, "tz": NEW_YORK, "mode": "versions"},
    {"days_ahead": 1, "issue_time": "05:00"},
    {"resample": "PT6H", "agg": "max", "tz": BERLIN},
    {"resample": "P1D", "tz": NEW_YORK, "mode": "versions"},
    {"resample": "PT1H", "agg": "count", "as_of": "2025-03-30T03:00:00Z"},
    {"resample": "P1W", "agg": "first", "days_ahead": 1, "issue_time": "06:00", "tz": BERLIN},
    {
        "start_valid": "2025-03-30T00:00:00+01:00",
        "end_valid": "2025-03-31T00:00:00+02:00",
        "tz": BERLIN,
        "mode": "audit",
    },
    {"tz": "Asia/Kolkata", "mode": "versions"},
]


@pytest.mark.grid
@pytest.mark.parametrize(
    "params", QUERY_PARAMS, ids=[",".join(f"{k}={v}" for k, v in p.items()) or "latest" for p in QUERY_PARAMS]
)
def test_query_answers_each_listed_series_as_get_does(client, params):
    """A list (by id and by name + labels, flat and overlapping) is answered in its order, each
    series' records exactly those of GET /values with the same parameters."""
    cat = catalogue(client)
    items = [{"series_id": cat.c}, {"name": "wind", "labels": {"site": "a"}}, {"series_id": cat.b}]
    doc = query(client, {"series": items, **params})
    assert doc["count"] > 0
    assert_series_by_series(client, doc, [cat.c, cat.a, cat.b], cat, params)


def test_query_as_of_sees_a_correction_from_its_change_time(client):
    """as_of in the body: the correction of wind/b is seen from its change_time on."""
    cat = catalogue(client)
    for as_of in (cat.changed - US, cat.changed):
        params = {"as_of": iso(as_of)}
        doc = query(client, {"series": [{"series_id": cat.b}, {"series_id": cat.a}], **params})
        assert_series_by_series(client, doc, [cat.b, cat.a], cat, params)
    before = query(client, {"series": [{"series_id": cat.b}], "as_of": iso(cat.changed - US)})["data"]
    after = query(client, {"series": [{"series_id": cat.b}], "as_of": iso(cat.changed)})["data"]
    assert [r for r in after if r not in before] == [
        {"series_id": cat.b, "valid_time": iso(Q0 + 30 * HOUR), "value": 0.5}
    ]


@pytest.mark.grid
@pytest.mark.parametrize(
    ("flt", "which"),
    [
        ({"name": "wind"}, "ab"),
        ({"labels": {"site": "a"}}, "ac"),
        ({"unit": "kW"}, "c"),
        ({}, "abc"),
        ({"name": "wind", "labels": {"site": "b"}, "unit": "MW"}, "b"),
    ],
)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"mode": "versions", "min_horizon": "PT12H"},
        {"resample": "PT6H", "agg": "sum", "tz": NEW_YORK},
        {"mode": "audit"},
    ],
    ids=["latest", "versions", "resample", "audit"],
)
def test_query_filter_reads_every_match_by_series_id(client, flt, which, params):
    """A filter (name, unit, labels containment) reads every matching series, by series_id."""
    cat = catalogue(client)
    order = sorted(getattr(cat, x) for x in which)
    doc = query(client, {"filter": flt, **params})
    assert_series_by_series(client, doc, order, cat, params)


def test_query_reads_series_by_series_then_by_valid_time(client):
    """By hand: two small series listed in reverse order."""
    x = make_series(client, name="x")
    y = make_series(client, name="y", overlapping=True)
    write(client, x, T0, [(T0 + HOUR, 1.0), (T0, 2.0)])
    write(client, y, T0, [(T0 + HOUR, 3.0), (T0, 4.0)])
    write(client, y, T0 + HOUR, [(T0 + HOUR, 5.0)])
    doc = query(client, {"series": [{"series_id": y}, {"name": "x"}]})
    assert doc == {
        "count": 4,
        "series": [
            {"series_id": y, "name": "y", "labels": {}, "unit": "MW"},
            {"series_id": x, "name": "x", "labels": {}, "unit": "MW"},
        ],
        "data": [
            {"series_id": y, "valid_time": iso(T0), "value": 4.0},
            {"series_id": y, "valid_time": iso(T0 + HOUR), "value": 5.0},
            {"series_id": x, "valid_time": iso(T0), "value": 2.0},
            {"series_id": x, "valid_time": iso(T0 + HOUR), "value": 1.0},
        ],
    }
    versions = query(client, {"series": [{"series_id": y}], "mode": "versions", "tz": BERLIN})["data"]
    assert versions == [
        {
            "series_id": y,
            "known_time": "2025-01-01T01:00:00+01:00",
            "valid_time": "2025-01-01T01:00:00+01:00",
            "value": 4.0,
        },
        {
            "series_id": y,
            "known_time": "2025-01-01T01:00:00+01:00",
            "valid_time": "2025-01-01T02:00:00+01:00",
            "value": 3.0,
        },
        {
            "series_id": y,
            "known_time": "2025-01-01T02:00:00+01:00",
            "valid_time": "2025-01-01T02:00:00+01:00",
            "value": 5.0,
        },
    ]


@pytest.mark.parametrize(
    ("items", "status", "index"),
    [
        (lambda c: [{"series_id": c.a}, {"series_id": 999}], 404, 1),
        (lambda c: [{"name": "nope"}], 404, 0),
        (lambda c: [{"series_id": c.a}, {"series_id": c.b}, {"name": "wind", "labels": {"site": "z"}}], 404, 2),
        (lambda c: [{"series_id": c.a}, {"name": "wind"}], 400, 1),
        (lambda c: [{"labels": {}, "name": "wind"}], 400, 0),
        (lambda c: [{"series_id": c.a}, {"name": "wind", "labels": {"site": "a"}}], 400, 1),
        (lambda c: [{"series_id": c.b}, {"series_id": c.c}, {"series_id": c.b}], 400, 2),
    ],
    ids=[
        "unknown-id",
        "unknown-name",
        "unknown-labels",
        "ambiguous",
        "ambiguous-empty-labels",
        "duplicate-by-name",
        "duplicate-id",
    ],
)
def test_query_item_that_is_not_exactly_one_new_series(client, items, status, index):
    """An item matching no series is a 404, one matching several (or a series listed before) a
    400; the problem names the item by its index."""
    cat = catalogue(client)
    problem(client.post("/values/query", json={"series": items(cat)}), status, f"series[{index}]")


def test_query_of_more_than_ten_thousand_series_is_413(client):
    """10,001 listed series: 413; 10,000 are allowed (here: the first unknown one is a 404)."""
    problem(client.post("/values/query", json={"series": [{"series_id": i + 1} for i in range(10_001)]}), 413)
    problem(
        client.post("/values/query", json={"series": [{"series_id": i + 1} for i in range(10_000)]}), 404, "series[0]"
    )


def test_query_filter_matching_more_than_ten_thousand_series_is_422(client, clean_db):
    """A filter matching 10,001 series: 422 (the operation's description); 10,000 are read, by series_id."""
    with psycopg.connect(clean_db, autocommit=True) as conn:  # 10,001 series without data, in one statement
        conn.execute(
            "INSERT INTO series_table (name, labels) "
            "SELECT 'many', jsonb_build_object('i', i::text) FROM generate_series(1, 10001) i"
        )
    problem(client.post("/values/query", json={"filter": {"name": "many"}}), 422)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("DELETE FROM series_table WHERE labels->>'i' = '5000'")
    doc = query(client, {"filter": {"name": "many"}})
    assert doc["count"] == 0 and doc["data"] == []
    assert [s["series_id"] for s in doc["series"]] == [i for i in range(1, 10_002) if i != 5000]


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "latest"},
        {"series": [], "mode": "latest"},
        {"series": [{"series_id": 1}], "filter": {}},
        {"series": [{"series_id": 1}], "mode": "all"},
        {"series": [{"series_id": 1}], "versions": True},
        {"series": [{"series_id": 1, "name": "x"}]},
        {"filter": {"site": "a"}},
    ],
    ids=["neither", "empty-list", "both", "bad-mode", "get-flag", "id-and-name", "bad-filter-field"],
)
def test_query_malformed_body_is_400(client, body):
    """The body must carry series (non-empty) or filter, not both, and only the documented fields."""
    make_series(client, name="x")
    assert_problem(client.post("/values/query", json=body), 400)


def test_query_empty_results(client):
    """No match, or nothing selected: 200 with count 0 (and the series read, if any)."""
    cat = catalogue(client)
    assert query(client, {"filter": {"name": "nope"}}) == {"count": 0, "series": [], "data": []}
    assert query(client, {"filter": {"name": "wind"}, "as_of": "2025-03-27T04:59:59Z"}) == {
        "count": 0,
        "series": [cat.meta[cat.a], cat.meta[cat.b]],
        "data": [],
    }
    assert query(client, {"series": [{"series_id": cat.c}], "mode": "audit", "start_valid": "2030-01-01"}) == {
        "count": 0,
        "series": [cat.meta[cat.c]],
        "data": [],
    }


def test_query_large_answer_is_streamed_with_count_last(live):
    """More than 5,000 records (three series of 2,100 points): streamed, count after data and equal
    to len(data); series by series in the listed order, each as GET /values answers it."""
    sids = [make_series(live, name=f"s{i}", overlapping=bool(i % 2)) for i in range(3)]
    vts = steps(T0, T0 + 2100 * 15 * MINUTE, 15 * MINUTE)
    for i, sid in enumerate(sids):
        write(live, sid, T0, [(t, float(n + 1000 * i)) for n, t in enumerate(vts)])
    write(live, sids[1], T0 + HOUR, [(t, -1.0) for t in vts[:50]])
    order = [sids[2], sids[0], sids[1]]
    resp = live.post("/values/query", json={"series": [{"series_id": s} for s in order]})
    assert resp.status_code == 200, resp.text[:300]
    assert "content-length" not in resp.headers
    raw = resp.content
    assert raw.rstrip().endswith(b'"count":6300}')
    assert raw.index(b'"data"') < raw.rindex(b'"count"')
    doc = json.loads(raw)
    assert doc["count"] == len(doc["data"]) == 6300
    assert [s["series_id"] for s in doc["series"]] == order
    for s in order:
        rows = [{k: v for k, v in r.items() if k != "series_id"} for r in doc["data"] if r["series_id"] == s]
        assert rows == get(live, s)
    assert [r["series_id"] for r in doc["data"]] == [s for s in order for _ in vts]


# ===================================================================================================
# empty results
# ===================================================================================================


def two_issues_at_noon(client: Any, overlapping: bool) -> tuple[int, list[V]]:
    """Issues (writes) at 00:00 and 06:00 on 1 January 2025 for 12:00 and 13:00."""
    sid = make_series(client, name="fc", overlapping=overlapping)
    noon, one = utc("2025-01-01T12:00:00Z"), utc("2025-01-01T13:00:00Z")
    vs = write(client, sid, K0, [(noon, 1.0), (one, 2.0)]) + write(client, sid, K6, [(noon, 3.0), (one, 4.0)])
    return sid, vs


EMPTY: list[dict[str, Any]] = [
    {"as_of": "2024-12-31T23:59:59.999999Z"},
    {"as_of": "2025-01-01T06:00:00Z", "start_valid": "2025-01-01T14:00:00Z"},
    {"as_of": "2025-01-01T06:00:00Z", "end_valid": "2025-01-01T12:00:00Z"},
    {"as_of": "2025-01-01T06:00:00Z", "start_known": "2025-01-01T06:00:00.000001Z"},
    {"as_of": "2025-01-01T06:00:00Z", "end_known": "2025-01-01T00:00:00Z"},
    {"min_horizon": "PT13H0.000001S"},
    {"max_horizon": "PT5H59M59S"},
    {"min_horizon": "PT8H", "max_horizon": "PT11H"},
    {"min_horizon": "PT12H", "as_of": "2024-12-31T00:00:00Z"},
    {"days_ahead": 1},
    {"days_ahead": 1, "tz": NEW_YORK},
    {"days_ahead": 0, "issue_time": "00:59", "tz": BERLIN},
    {"days_ahead": 366, "issue_time": "23:59", "tz": BERLIN},
    {"days_ahead": 0, "issue_time": "05:59", "max_horizon": "PT11H59M"},
    {"resample": "PT1H", "end_valid": "2025-01-01T12:00:00Z"},
    {"resample": "P1M", "agg": "count", "as_of": "2024-12-31T23:59:59Z", "tz": BERLIN},
    {"resample": "P1D", "agg": "sum", "min_horizon": "P1D"},
    {"resample": "PT15M", "agg": "first", "days_ahead": 2, "issue_time": "23:00", "tz": NEW_YORK},
    {"tz": BERLIN, "start_valid": "2025-01-01T15:00:00+01:00"},
]


@pytest.mark.grid
@KIND
@pytest.mark.parametrize("params", EMPTY, ids=[",".join(f"{k}={v}" for k, v in p.items()) for p in EMPTY])
def test_parameters_that_select_nothing_answer_count_zero(client, overlapping, params):
    """Issues at 00:00 and 06:00 on 1 January 2025 for 12:00 and 13:00 (leads 6, 7, 12, 13 hours):
    each combination selects nothing, in every mode and through POST /values/query."""
    sid, _ = two_issues_at_noon(client, overlapping)
    modes = [{}, {"versions": "true"}] + ([] if "resample" in params else [{"include_updates": "true"}])
    for mode in modes:
        resp = client.get("/values", params={"series_id": sid, **params, **mode})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"count": 0, "data": []}, mode
    for mode in ["latest", "versions"] + ([] if "resample" in params else ["audit"]):
        assert query(client, {"series": [{"series_id": sid}], "mode": mode, **params}) == {
            "count": 0,
            "series": [{"series_id": sid, "name": "fc", "labels": {}, "unit": "MW"}],
            "data": [],
        }
    assert get(client, sid) != []
