"""POST /values/bulk (JSON bodies), skip_unchanged and units (issue 10).

Expectations are computed here from what the tests send: unit factors from physics written in
this file (1 MW = 1000 kW, K = degC + 273.15, degF = degC * 9/5 + 32, 1 MWh = 1000 kWh), stored
rows and reads from a small model of versions (latest = greatest known_time per valid_time).
What the API cannot show (batches_table, that nothing was stored after a failure) is checked
with SQL. The CSV, NDJSON and Arrow bodies of POST /values/bulk are tested elsewhere.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers import assert_problem, insert, make_series, posts, read, table_rows

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KT1 = "2024-12-31T06:00:00+00:00"
KT2 = "2024-12-31T12:00:00+00:00"
KT3 = "2024-12-31T18:00:00+00:00"
FACT_TABLES = ("batches_table", "overlapping", "flat")


def at(hour: int) -> str:
    """The valid_time `hour` hours after T0, as the API prints it."""
    return (T0 + timedelta(hours=hour)).isoformat()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- physics (independent of timedb and pint) ---------------------------------------------------------


def kw_to_mw(x: float) -> float:
    return x / 1000


def degc_to_k(x: float) -> float:
    return x + 273.15


def degf_to_degc(x: float) -> float:
    return (x - 32) * 5 / 9


def degf_to_k(x: float) -> float:
    return degc_to_k(degf_to_degc(x))


def close(x: float | None) -> Any:
    """x, compared up to floating-point noise (a conversion multiplies by a rounded factor)."""
    return None if x is None else pytest.approx(x, rel=1e-9, abs=1e-9)


def approx_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "value": close(r["value"])} for r in records]


# --- requests -----------------------------------------------------------------------------------------


def row(
    series: int | dict[str, Any], hour: int, value: float | None, known_time: str | None = None, end: int | None = None
) -> dict[str, Any]:
    """One bulk row; series is an id or {"name": ..., "labels": ...}."""
    r: dict[str, Any] = {"series_id": series} if isinstance(series, int) else dict(series)
    r.update(valid_time=at(hour), value=value)
    if known_time is not None:
        r["known_time"] = known_time
    if end is not None:
        r["valid_time_end"] = at(end)
    return r


def bulk(client: Any, rows: list[dict[str, Any]], **extra: Any) -> Any:
    return client.post("/values/bulk", json={"rows": rows, **extra})


def bulk_ok(client: Any, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    resp = bulk(client, rows, **extra)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"rows_inserted", "rows_skipped", "batches"}, body
    return body


def post_ok(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/values", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def send(
    client: Any,
    endpoint: str,
    sid: int,
    points: list[tuple[int, float | None]],
    known_time: str | None = None,
    ends: dict[int, int] | None = None,
    **extra: Any,
) -> tuple[int, int]:
    """Write [(hour, value), ...] into one series through POST /values or POST /values/bulk
    (with skip_unchanged unless told otherwise); returns (rows_inserted, rows_skipped)."""
    extra.setdefault("skip_unchanged", True)
    ends = ends or {}
    if endpoint == "bulk":
        body = bulk_ok(client, [row(sid, h, v, known_time, ends.get(h)) for h, v in points], **extra)
        assert sum(b["rows"] for b in body["batches"]) == body["rows_inserted"]
        return body["rows_inserted"], body["rows_skipped"]
    data = [
        {"valid_time": at(h), "value": v, **({"valid_time_end": at(ends[h])} if h in ends else {})} for h, v in points
    ]
    req: dict[str, Any] = {"series_id": sid, "data": data, **extra}
    if known_time is not None:
        req["known_time"] = known_time
    body = post_ok(client, req)
    keys = {"batch_id", "series_id", "rows_inserted"} | ({"rows_skipped"} if extra["skip_unchanged"] else set())
    assert set(body) == keys, body
    return body["rows_inserted"], body.get("rows_skipped", 0)


def latest(client: Any, sid: int, **params: Any) -> list[dict[str, Any]]:
    return read(client, series_id=sid, **params)


def versions(client: Any, sid: int, **params: Any) -> list[dict[str, Any]]:
    return read(client, series_id=sid, versions=True, **params)


def audit(client: Any, sid: int, **params: Any) -> list[dict[str, Any]]:
    return read(client, series_id=sid, include_updates=True, **params)


def put_ok(client: Any, updates: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    resp = client.put("/values", json={"updates": updates, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()["updated"]


# --- the expected reads (a model of versions) --------------------------------------------------------


def record(vt: str, value: float | None, end: str | None = None, known: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {} if known is None else {"known_time": known}
    r["valid_time"] = vt
    if end is not None:
        r["valid_time_end"] = end
    r["value"] = value
    return r


Version = tuple[str, str, str | None, float | None]  # known_time, valid_time, valid_time_end, value


def model_latest(stored: list[Version]) -> list[dict[str, Any]]:
    """Per valid_time the version with the greatest known_time."""
    best: dict[str, Version] = {}
    for v in stored:
        if v[1] not in best or ts(v[0]) > ts(best[v[1]][0]):
            best[v[1]] = v
    return [record(vt, value, end) for _, vt, end, value in sorted(best.values(), key=lambda v: ts(v[1]))]


def model_versions(stored: list[Version]) -> list[dict[str, Any]]:
    return [record(vt, value, end, kt) for kt, vt, end, value in sorted(stored, key=lambda v: (ts(v[0]), ts(v[1])))]


# --- the database ---------------------------------------------------------------------------------------


def sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of batches_table and the fact tables: what 'nothing was stored' compares."""
    return table_rows(dsn, FACT_TABLES)


def batch_count(dsn: str, sid: int) -> int:
    return sql(dsn, "SELECT count(*) FROM batches_table WHERE series_id = %s", sid)[0][0]


def numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", text)}


def names_row(detail: str, n: int) -> bool:
    """The detail names 0-based row n (rows[n], /rows/n, row n, rows n)."""
    return re.search(rf"\brows?\s*(\[|/)?\s*{n}\b", detail) is not None


# ======================================================================================================
# POST /values/bulk (JSON)
# ======================================================================================================


def catalogue(client: Any) -> dict[str, int]:
    """Two flat and three overlapping series, named by name + labels in some rows."""
    return {
        "f1": make_series(client, name="meter", labels={"site": "A"}),
        "f2": make_series(client, name="meter", labels={"site": "B"}),
        "o1": make_series(client, name="wind", labels={"site": "A", "model": "ecmwf"}, overlapping=True),
        "o2": make_series(client, name="wind", labels={"site": "B", "model": "ecmwf"}, overlapping=True),
        "o3": make_series(client, name="solar", overlapping=True),
    }


F2 = {"name": "meter", "labels": {"site": "B"}}
O2 = {"name": "wind", "labels": {"site": "B", "model": "ecmwf"}}
O2_PART = {"name": "wind", "labels": {"site": "B"}}  # containment: only o2 has site B
O3 = {"name": "solar"}


def mixed_rows(s: dict[str, int]) -> list[dict[str, Any]]:
    """Rows of all five series, by id and by name + labels, with and without known_time."""
    return [
        row(s["o1"], 0, 1.0, KT1),
        row(s["o1"], 1, 2.0, KT1),
        row(O2, 0, 10.0, KT1),
        row(s["f1"], 0, 100.0),
        row(s["o1"], 0, 1.5, KT2),
        row(s["o1"], 1, 2.5, KT2, end=2),
        row(s["o2"], 1, 11.0, KT1),  # the same (series, known_time) as row 2, by id
        row(F2, 0, 200.0, KT1),
        row(F2, 1, None),
        row(s["o1"], 2, 3.0),  # server time
        row(O3, 0, 0.0),
        row(O3, 1, -4.25, end=2),
        row(s["f1"], 1, 101.0),
        row(O2_PART, 2, 12.0, KT1),
    ]


def test_bulk_stores_one_batch_per_series_and_known_time(client, db_dsn):
    """A request mixing flat and overlapping series named by id and by name+labels stores one
    batch per (series, known_time); the answer's batches match batches_table and the fact
    tables; rows without known_time share one server time taken during the request; workflow_id
    and batch_params are on every batch; reads afterwards show exactly what was sent."""
    s = catalogue(client)
    rows = mixed_rows(s)
    ids = {"meter": {"A": s["f1"], "B": s["f2"]}, "wind": {"A": s["o1"], "B": s["o2"]}, "solar": {None: s["o3"]}}

    def sid_of(r: dict[str, Any]) -> int:
        return r["series_id"] if "series_id" in r else ids[r["name"]][(r.get("labels") or {}).get("site")]

    params = {"model": "ecmwf", "members": [1, 2], "nested": {"a": None}}
    before = datetime.now(UTC)
    body = bulk_ok(client, rows, workflow_id="run-06z", batch_params=params)
    after = datetime.now(UTC)

    assert (body["rows_inserted"], body["rows_skipped"]) == (len(rows), 0)
    server = {b["known_time"] for b in body["batches"] if ts(b["known_time"]) not in (ts(KT1), ts(KT2))}
    assert len(server) == 1, body["batches"]  # one server time for every series of the request
    now = server.pop()
    assert now.endswith("+00:00") and before <= ts(now) <= after, (before, now, after)

    flat = {s["f1"], s["f2"]}
    expected = Counter((sid_of(r), ts(r.get("known_time") or now)) for r in rows)
    got = Counter()
    for b in body["batches"]:
        assert set(b) == {"series_id", "batch_id", "known_time", "rows"}, b
        assert (b["batch_id"] is None) == (b["series_id"] in flat), b
        got[(b["series_id"], ts(b["known_time"]))] += b["rows"]
    assert got == expected
    assert len(body["batches"]) == len(expected) == 8  # one entry per (series, known_time)

    # batches_table: one row per overlapping entry, with its rows, workflow_id and batch_params
    answer = sorted(
        (b["batch_id"], b["series_id"], ts(b["known_time"]), b["rows"], "run-06z", params)
        for b in body["batches"]
        if b["batch_id"] is not None
    )
    stored = sql(
        db_dsn,
        "SELECT b.batch_id, b.series_id, b.known_time, count(o.*), b.workflow_id, b.batch_params "
        "FROM batches_table b LEFT JOIN overlapping o USING (batch_id) "
        "GROUP BY b.batch_id ORDER BY b.batch_id",
    )
    assert stored == answer
    assert sql(
        db_dsn,
        "SELECT count(*) FROM overlapping o JOIN batches_table b USING (batch_id) "
        "WHERE o.series_id <> b.series_id OR o.known_time <> b.known_time",
    ) == [(0,)]
    flat_rows = sql(db_dsn, "SELECT series_id, known_time, count(*) FROM flat GROUP BY 1, 2 ORDER BY 1, 2")
    assert flat_rows == sorted(
        (b["series_id"], ts(b["known_time"]), b["rows"]) for b in body["batches"] if b["batch_id"] is None
    )

    # reads: latest and versions of every series, from the rows sent
    for name, sid in s.items():
        sent: list[Version] = [
            (r.get("known_time") or now, r["valid_time"], r.get("valid_time_end"), r["value"])
            for r in rows
            if sid_of(r) == sid
        ]
        assert sent, name
        assert latest(client, sid) == model_latest(sent), name
        assert versions(client, sid) == model_versions(sent), name


def test_bulk_known_times_are_per_row_and_server_time_is_per_request(client, db_dsn):
    """Two requests without known_time get two server times; in one request every series gets
    the same one, for flat and overlapping series alike (the flat rows' stored known_time)."""
    a = make_series(client, name="a", overlapping=True)
    b = make_series(client, name="b", overlapping=True)
    f = make_series(client, name="f")
    first = bulk_ok(client, [row(a, 0, 1.0), row(b, 0, 2.0), row(f, 0, 3.0)])
    second = bulk_ok(client, [row(a, 0, 4.0), row(b, 1, 5.0), row(f, 0, 6.0)])
    times = [{x["known_time"] for x in answer["batches"]} for answer in (first, second)]
    assert [len(t) for t in times] == [1, 1]
    t1, t2 = times[0].pop(), times[1].pop()
    assert ts(t1) < ts(t2)
    assert sql(db_dsn, "SELECT DISTINCT known_time FROM batches_table ORDER BY 1") == [(ts(t1),), (ts(t2),)]
    assert sql(db_dsn, "SELECT known_time, value FROM flat ORDER BY known_time") == [(ts(t1), 3.0), (ts(t2), 6.0)]
    assert latest(client, a) == [record(at(0), 4.0)]
    assert versions(client, a) == [record(at(0), 1.0, known=t1), record(at(0), 4.0, known=t2)]
    assert latest(client, f) == [record(at(0), 6.0)]


def test_bulk_workflow_id_defaults_and_batch_params_null(client, db_dsn):
    """Without workflow_id and batch_params every batch gets 'api-workflow' and no params."""
    a = make_series(client, name="a", overlapping=True)
    b = make_series(client, name="b", overlapping=True)
    bulk_ok(client, [row(a, 0, 1.0, KT1), row(a, 0, 1.0, KT2), row(b, 0, 1.0)])
    assert sql(db_dsn, "SELECT series_id, workflow_id, batch_params FROM batches_table ORDER BY series_id") == [
        (a, "api-workflow", None),
        (a, "api-workflow", None),
        (b, "api-workflow", None),
    ]


def test_bulk_same_valid_time_at_different_known_times_is_not_a_duplicate(client):
    """For an overlapping series one valid_time may come once per known_time in one request."""
    o = make_series(client, name="o", overlapping=True)
    body = bulk_ok(client, [row(o, 0, 1.0, KT1), row(o, 0, 2.0, KT2), row(o, 0, 3.0, KT3)])
    assert body["rows_inserted"] == 3 and len(body["batches"]) == 3
    assert versions(client, o) == [
        record(at(0), 1.0, known=KT1),
        record(at(0), 2.0, known=KT2),
        record(at(0), 3.0, known=KT3),
    ]


# ======================================================================================================
# All or nothing
# ======================================================================================================


@pytest.fixture
def stocked(client, db_dsn) -> dict[str, int]:
    """Series with stored values (o1 has a batch at KT1, hours 0-1); failing requests must leave
    the database exactly as this."""
    s = catalogue(client)
    bulk_ok(client, [row(s["o1"], 0, 1.0, KT1), row(s["o1"], 1, 2.0, KT1), row(s["f1"], 0, 5.0)])
    return s


def good_rows(s: dict[str, int]) -> list[dict[str, Any]]:
    """Valid rows of flat and overlapping series that a failing request carries along."""
    return [
        row(s["o2"], 0, 1.0, KT2),
        row(s["f1"], 5, 1.0),
        row(O3, 0, 1.0),
        row(F2, 0, 1.0, KT1),
        row(s["o1"], 5, 1.0, KT1),
        row(s["o1"], 6, 1.0),
    ]


def refused(client: Any, dsn: str, rows: list[dict[str, Any]], status: int, **extra: Any) -> dict[str, Any]:
    """The request fails with status and stores nothing at all; returns the problem."""
    before = snapshot(dsn)
    problem = assert_problem(bulk(client, rows, **extra), status)
    assert snapshot(dsn) == before
    return problem


def test_unknown_series_404_lists_every_one_and_stores_nothing(client, db_dsn, stocked):
    """Unknown series by id and by name+labels: 404 naming each in the detail and in `missing`."""
    rows = [
        *good_rows(stocked),
        row(9999, 0, 1.0),
        row({"name": "nosuch", "labels": {"site": "Zeta"}}, 0, 1.0),
        row({"name": "wind", "labels": {"site": "Mars"}}, 0, 1.0),
        row(9999, 1, 1.0),
        row(8888, 0, 1.0),
    ]
    problem = refused(client, db_dsn, rows, 404)
    detail = problem["detail"]
    for name in ("9999", "8888", "nosuch", "Zeta", "Mars"):
        assert name in detail, detail
    missing = problem.get("missing")
    assert isinstance(missing, list) and len(missing) == 4, problem
    assert sum("9999" in str(m) for m in missing) == 1 and sum("8888" in str(m) for m in missing) == 1, missing
    assert sum("nosuch" in str(m) and "Zeta" in str(m) for m in missing) == 1, missing
    assert sum("wind" in str(m) and "Mars" in str(m) for m in missing) == 1, missing
    assert client.get("/series/count").json() == {"count": 5}  # never created implicitly


def test_ambiguous_name_400_stores_nothing(client, db_dsn, stocked):
    """A name whose labels match several series is a 400 naming it."""
    problem = refused(client, db_dsn, [*good_rows(stocked), row({"name": "wind"}, 0, 1.0)], 400)
    assert "wind" in problem["detail"], problem


def test_overlapping_duplicates_422_with_row_numbers(client, db_dsn, stocked):
    """The same (series, valid_time, known_time) twice, by id and by name: 422 naming the
    repeating rows by their 0-based numbers; nothing stored."""
    s = stocked
    rows = [
        *good_rows(s),
        row(s["o2"], 3, 1.0, KT1),
        row(O2, 3, 2.0, KT1),
        row(s["o2"], 3, 1.0, KT2),
        row(s["o3"], 4, 1.0),
        row(O3, 4, 2.0),
    ]
    # rows 6..10: row 7 repeats row 6 (id vs name), row 8 has another known_time, row 10 repeats row 9
    problem = refused(client, db_dsn, rows, 422)
    found = numbers(problem["detail"])
    assert {7, 10} <= found, problem
    assert 8 not in found, problem  # same valid_time, other known_time: not a duplicate


def test_flat_duplicates_422_even_with_other_known_times(client, db_dsn, stocked):
    """For a flat series the same (series, valid_time) twice is a duplicate whatever the known_times."""
    s = stocked
    rows = [*good_rows(s), row(s["f2"], 3, 1.0, KT1), row(s["f2"], 4, 1.0), row(F2, 3, 2.0, KT2)]
    problem = refused(client, db_dsn, rows, 422)
    found = numbers(problem["detail"])
    assert 8 in found and 7 not in found, problem


def test_clash_with_stored_version_409_with_row_numbers(client, db_dsn, stocked):
    """A version stored by another batch at a row's (valid_time, known_time): 409 naming the rows."""
    s = stocked
    rows = [
        *good_rows(s),
        row(s["o1"], 2, 1.0, KT1),
        row(s["o1"], 1, 9.0, KT1),
        row(s["o1"], 0, 8.0, KT1),
        row(s["o1"], 0, 8.0, KT3),
    ]
    # rows 7 and 8 clash with the stored batch at KT1; rows 6 and 9 alone would be fine
    problem = refused(client, db_dsn, rows, 409)
    found = numbers(problem["detail"])
    assert {7, 8} <= found and not {6, 9} & found, problem


@pytest.mark.parametrize("end", [0, -1], ids=["equal", "earlier"])
def test_valid_time_end_not_after_valid_time_422(client, db_dsn, stocked, end):
    """valid_time_end <= valid_time: 422 naming the row."""
    rows = [*good_rows(stocked), row(stocked["o2"], 3, 1.0, KT1, end=3 + end), row(stocked["f2"], 3, 1.0)]
    problem = refused(client, db_dsn, rows, 422)
    assert names_row(problem["detail"], 6), problem


def test_row_without_series_400(client, db_dsn, stocked):
    """A row with neither series_id nor name: 400 naming the row."""
    rows = [*good_rows(stocked), {"labels": {"site": "A"}, "valid_time": at(0), "value": 1.0}, row(stocked["f2"], 3, 1)]
    problem = refused(client, db_dsn, rows, 400)
    assert names_row(problem["detail"], 6), problem


def test_unknown_and_incompatible_units_422(client, db_dsn, stocked):
    """An unknown unit (422 naming it) or one of another dimension than a series' (422 naming
    both units): nothing stored."""
    k = make_series(client, name="temp", unit="degC")
    rows = good_rows(stocked)
    problem = refused(client, db_dsn, rows, 422, unit="furlongz")
    assert "furlongz" in problem["detail"], problem
    problem = refused(client, db_dsn, [*rows, row(k, 0, 1.0)], 422, unit="kW")
    assert "kW" in problem["detail"] and "degC" in problem["detail"], problem


# ======================================================================================================
# Concurrency (a real server, two requests at once)
# ======================================================================================================


N = 2000  # valid_times per series and request


def test_concurrent_bulk_requests_overlapping_series(live, live_server, db_dsn):
    """Two bulk requests at once for overlapping sets of series (no known_time): both succeed,
    every row of both is stored, each request has its own server time, and on the shared series
    the later writer's values are the latest."""
    over = [make_series(live, name="o", labels={"i": str(i)}, overlapping=True) for i in range(6)]
    flat = [make_series(live, name="f", labels={"i": str(i)}) for i in range(6)]
    sets = [range(0, 4), range(2, 6)]  # series 2 and 3 are written by both
    bodies = [
        {"rows": [row(sids[i], h, h + 0.5 * n) for i in part for sids in (over, flat) for h in range(N)]}
        for n, part in enumerate(sets)
    ]
    responses = posts(live_server, "/values/bulk", bodies)
    assert [r.status_code for r in responses] == [200, 200], [r.text[:300] for r in responses]
    answers = [r.json() for r in responses]
    assert [(a["rows_inserted"], a["rows_skipped"]) for a in answers] == [(8 * N, 0), (8 * N, 0)]
    times = [{b["known_time"] for b in a["batches"]} for a in answers]
    assert [len(t) for t in times] == [1, 1]
    known = [t.pop() for t in times]
    assert known[0] != known[1]
    last = 0 if ts(known[0]) > ts(known[1]) else 1

    writers = Counter({**{s: 1 for s in over + flat}, **{s: 2 for s in (over[2], over[3], flat[2], flat[3])}})
    for table in ("overlapping", "flat"):
        counts = dict(sql(db_dsn, f"SELECT series_id, count(*) FROM {table} GROUP BY 1"))
        assert counts == {s: writers[s] * N for s in (over if table == "overlapping" else flat)}
    assert sql(db_dsn, "SELECT series_id, count(*) FROM batches_table GROUP BY 1 ORDER BY 1") == [
        (s, writers[s]) for s in over
    ]
    for i in (2, 3):
        for sid in (over[i], flat[i]):
            assert latest(live, sid) == [record(at(h), h + 0.5 * last) for h in range(N)]
    assert versions(live, over[2]) == model_versions(
        [(known[n], at(h), None, h + 0.5 * n) for n in (0, 1) for h in range(N)]
    )
    assert latest(live, over[0]) == [record(at(h), float(h)) for h in range(N)]
    assert latest(live, flat[5]) == [record(at(h), h + 0.5) for h in range(N)]


@pytest.mark.parametrize("attempt", range(2))
def test_concurrent_writers_take_turns(live, live_server, db_dsn, attempt):
    """Two skip_unchanged requests at once send the same new values for shared series: writers
    of a series take turns, so the second one sees the first one's rows and skips all of them
    (together the shared rows are stored exactly once), while each request's own series are
    stored in full."""
    shared = [make_series(live, name="shared"), make_series(live, name="shared_o", overlapping=True)]
    own = [make_series(live, name=f"own{n}") for n in range(2)]
    bodies = [
        {"skip_unchanged": True, "rows": [row(sid, h, float(h)) for sid in [*shared, own[n]] for h in range(N)]}
        for n in range(2)
    ]
    if attempt:
        bodies[1]["rows"].reverse()  # the order of the rows must not matter
    responses = posts(live_server, "/values/bulk", bodies)
    assert [r.status_code for r in responses] == [200, 200], [r.text[:300] for r in responses]
    answers = [r.json() for r in responses]
    assert sorted((a["rows_inserted"], a["rows_skipped"]) for a in answers) == [(N, 2 * N), (3 * N, 0)]
    assert sql(db_dsn, "SELECT series_id, count(*) FROM flat GROUP BY 1 ORDER BY 1") == [
        (shared[0], N),
        (own[0], N),
        (own[1], N),
    ]
    assert sql(db_dsn, "SELECT series_id, count(*) FROM overlapping GROUP BY 1") == [(shared[1], N)]
    assert batch_count(db_dsn, shared[1]) == 1


# ======================================================================================================
# skip_unchanged
# ======================================================================================================

ENDPOINTS = ["values", "bulk"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_resending_a_window_stores_nothing(client, db_dsn, endpoint, overlapping):
    """Re-sending the same window with skip_unchanged stores nothing (rows_skipped = all, no new
    batch); changing some values stores only those."""
    sid = make_series(client, name="s", overlapping=overlapping)
    window = [(h, float(h * 10)) for h in range(6)]
    assert send(client, endpoint, sid, window) == (6, 0)
    state = snapshot(db_dsn)
    assert send(client, endpoint, sid, window) == (0, 6)
    assert snapshot(db_dsn) == state
    changed = [(h, v + 1 if h in (1, 4) else v) for h, v in window]
    assert send(client, endpoint, sid, changed) == (2, 4)
    assert batch_count(db_dsn, sid) == (2 if overlapping else 0)
    assert latest(client, sid) == [record(at(h), v) for h, v in changed]
    stored = sql(
        db_dsn,
        f"SELECT valid_time, value FROM {'overlapping' if overlapping else 'flat'} ORDER BY change_time, valid_time",
    )
    assert stored == [(T0 + timedelta(hours=h), v) for h, v in [*window, changed[1], changed[4]]]


def test_bulk_resend_of_many_series_stores_nothing(client, db_dsn):
    """A bulk re-send of a run of several flat and overlapping series, with and without
    known_time, stores nothing: rows_skipped = all, no batches in the answer or the database."""
    s = catalogue(client)
    rows = mixed_rows(s)
    bulk_ok(client, rows)
    state = snapshot(db_dsn)
    assert bulk_ok(client, rows, skip_unchanged=True) == {"rows_inserted": 0, "rows_skipped": len(rows), "batches": []}
    assert snapshot(db_dsn) == state
    rows[3]["value"], rows[13]["value"] = -1.0, -2.0  # f1 at hour 0, o2 at hour 2 (KT1)
    rows[13]["known_time"] = KT3
    body = bulk_ok(client, rows, skip_unchanged=True)
    assert (body["rows_inserted"], body["rows_skipped"]) == (2, len(rows) - 2)
    assert sorted((b["series_id"], b["rows"]) for b in body["batches"]) == [(s["f1"], 1), (s["o2"], 1)]
    assert [b["known_time"] for b in body["batches"] if b["series_id"] == s["o2"]] == [KT3]
    assert latest(client, s["o2"]) == [record(at(0), 10.0), record(at(1), 11.0), record(at(2), -2.0)]
    assert latest(client, s["f1"]) == [record(at(0), -1.0), record(at(1), 101.0)]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_overlapping_compares_with_the_version_known_at_the_rows_known_time(client, db_dsn, endpoint):
    """Overlapping series: a new run with the same values is skipped; with one changed value only
    that row is stored; a backfill compares with what was known at its own known_time (not the
    newest version); a run sent again with its known_time stores nothing and is no 409."""
    sid = make_series(client, name="fc", overlapping=True)
    run = [(h, float(h + 1)) for h in range(4)]
    assert send(client, endpoint, sid, run, KT1, skip_unchanged=False) == (4, 0)
    assert send(client, endpoint, sid, run, KT2) == (0, 4)  # a new run, same values
    assert batch_count(db_dsn, sid) == 1
    run3 = [(h, 30.0 if h == 2 else v) for h, v in run]
    assert send(client, endpoint, sid, run3, KT3) == (1, 3)
    assert batch_count(db_dsn, sid) == 2
    # a backfill at KT2 (< KT3): known then were run 1's values, so run 1 again is unchanged ...
    assert send(client, endpoint, sid, run, KT2) == (0, 4)
    # ... while the newest values (30 at hour 2) differ from what was known at KT2
    assert send(client, endpoint, sid, [(2, 30.0), (3, 4.0)], KT2) == (1, 1)
    state = snapshot(db_dsn)
    assert send(client, endpoint, sid, run3, KT3) == (0, 4)  # run 3 sent again: nothing, no 409
    assert send(client, endpoint, sid, [(2, 30.0)], KT2) == (0, 1)
    assert snapshot(db_dsn) == state
    expected = [*((KT1, at(h), None, v) for h, v in run), (KT2, at(2), None, 30.0), (KT3, at(2), None, 30.0)]
    assert versions(client, sid) == model_versions(expected)
    assert latest(client, sid) == [record(at(h), v) for h, v in run3]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_overlapping_compares_with_corrected_version(client, endpoint):
    """The version a latest read shows includes its corrections (PUT /values)."""
    sid = make_series(client, name="fc", overlapping=True)
    send(client, endpoint, sid, [(0, 1.0), (1, 2.0)], KT1, skip_unchanged=False)
    put_ok(client, [{"series_id": sid, "valid_time": at(0), "known_time": KT1, "value": 5.0}])
    assert send(client, endpoint, sid, [(0, 5.0), (1, 2.0)], KT2) == (0, 2)
    assert send(client, endpoint, sid, [(0, 1.0), (1, 2.0)], KT2) == (1, 1)
    assert versions(client, sid) == [
        record(at(0), 5.0, known=KT1),
        record(at(1), 2.0, known=KT1),
        record(at(0), 1.0, known=KT2),
    ]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_flat_compares_with_the_current_value_after_a_correction(client, endpoint):
    """Flat series compare with the current value, which a PUT /values correction replaces."""
    sid = make_series(client, name="meter")
    assert send(client, endpoint, sid, [(0, 1.0), (1, 2.0), (2, 3.0)], KT1) == (3, 0)
    assert send(client, endpoint, sid, [(0, 1.0), (1, 20.0), (2, 3.0), (3, 4.0)]) == (2, 2)
    put_ok(client, [{"series_id": sid, "valid_time": at(0), "value": 5.0, "changed_by": "qa"}])
    assert send(client, endpoint, sid, [(0, 5.0), (1, 20.0)], KT2) == (0, 2)  # the corrected value is current
    assert send(client, endpoint, sid, [(0, 1.0)]) == (1, 0)  # the original is no longer current
    assert latest(client, sid) == [record(at(0), 1.0), record(at(1), 20.0), record(at(2), 3.0), record(at(3), 4.0)]
    trail = [(r["valid_time"], r["value"]) for r in audit(client, sid)]
    assert sorted(trail) == sorted(
        [(at(0), 1.0), (at(1), 2.0), (at(2), 3.0), (at(1), 20.0), (at(3), 4.0), (at(0), 5.0), (at(0), 1.0)]
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_valid_time_end_differences_are_changes(client, endpoint, overlapping):
    """A different valid_time_end (or one added or removed) is a change; the same one is not."""
    sid = make_series(client, name="s", overlapping=overlapping)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={0: 1}) == (2, 0)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={0: 1}) == (0, 2)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={0: 2}) == (1, 1)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={0: 2, 5: 6}) == (1, 1)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={5: 6}) == (1, 1)
    assert send(client, endpoint, sid, [(0, 1.0), (5, 2.0)], ends={5: 6}) == (0, 2)
    assert latest(client, sid) == [record(at(0), 1.0), record(at(5), 2.0, at(6))]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_null_values(client, endpoint, overlapping):
    """null equals a stored null; null against a number and a number against null are changes
    (0.0 is not null)."""
    sid = make_series(client, name="s", overlapping=overlapping)
    assert send(client, endpoint, sid, [(0, None), (1, 1.0), (2, None)]) == (3, 0)
    assert send(client, endpoint, sid, [(0, None), (1, 1.0), (2, None)]) == (0, 3)
    assert send(client, endpoint, sid, [(0, 0.0), (1, None), (2, None)]) == (2, 1)
    assert latest(client, sid) == [record(at(0), 0.0), record(at(1), None), record(at(2), None)]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_skip_unchanged_compares_in_the_series_unit(client, endpoint):
    """With a unit, the converted value is compared with the stored one (2500 kW = 2.5 MW,
    20 degC = 293.15 K)."""
    mw = make_series(client, name="p", unit="MW")
    k = make_series(client, name="t", unit="K", overlapping=True)
    send(client, endpoint, mw, [(0, 2.5), (1, 1.0)], skip_unchanged=False)
    send(client, endpoint, k, [(0, 293.15)], KT1, skip_unchanged=False)
    assert send(client, endpoint, mw, [(0, 2500.0), (1, 1000.0)], unit="kW") == (0, 2)
    assert send(client, endpoint, mw, [(0, 2500.0), (1, 1500.0)], unit="kW") == (1, 1)
    assert send(client, endpoint, mw, [(0, 2500.0)]) == (1, 0)  # 2500 MW is a change
    assert send(client, endpoint, k, [(0, 20.0)], KT2, unit="degC") == (0, 1)
    assert send(client, endpoint, k, [(0, 21.0)], KT2, unit="degC") == (1, 0)
    assert latest(client, mw) == approx_records([record(at(0), 2500.0), record(at(1), kw_to_mw(1500.0))])
    assert latest(client, k) == approx_records([record(at(0), degc_to_k(21.0))])


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_without_skip_unchanged_nothing_is_skipped(client, db_dsn, overlapping):
    """Without skip_unchanged a re-send is stored again; POST /values answers in the seed's
    shape (no rows_skipped), POST /values/bulk with rows_skipped 0."""
    sid = make_series(client, name="s", overlapping=overlapping)
    window = [(h, 1.0) for h in range(3)]
    for _ in range(2):
        body = insert(client, sid, [(at(h), v) for h, v in window])
        assert set(body) == {"batch_id", "series_id", "rows_inserted"} and body["rows_inserted"] == 3
        assert send(client, "bulk", sid, window, skip_unchanged=False) == (3, 0)
        assert send(client, "bulk", sid, window, skip_unchanged=False, unit="MW") == (3, 0)
    table = "overlapping" if overlapping else "flat"
    assert sql(db_dsn, f"SELECT count(*) FROM {table}") == [(18,)]
    assert batch_count(db_dsn, sid) == (6 if overlapping else 0)


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_post_values_answer_shape_with_skip_unchanged_and_unit(client, db_dsn, overlapping):
    """POST /values keeps its answer (batch_id, series_id, rows_inserted) and adds rows_skipped
    only with skip_unchanged; a unit alone adds nothing."""
    sid = make_series(client, name="s", unit="MW", overlapping=overlapping)
    data = [{"valid_time": at(h), "value": 1000.0 * h} for h in range(3)]
    first = post_ok(client, {"series_id": sid, "data": data, "unit": "kW"})
    assert set(first) == {"batch_id", "series_id", "rows_inserted"}
    assert (first["series_id"], first["rows_inserted"]) == (sid, 3)
    assert (first["batch_id"] is None) is not overlapping
    again = post_ok(client, {"series_id": sid, "data": data, "unit": "kW", "skip_unchanged": True})
    assert again == {"batch_id": None, "series_id": sid, "rows_inserted": 0, "rows_skipped": 3}
    data[0]["value"] = 7.0
    third = post_ok(client, {"series_id": sid, "data": data, "unit": "kW", "skip_unchanged": True})
    assert set(third) == {"batch_id", "series_id", "rows_inserted", "rows_skipped"}
    assert (third["series_id"], third["rows_inserted"], third["rows_skipped"]) == (sid, 1, 2)
    if overlapping:
        assert third["batch_id"] is not None and third["batch_id"] > first["batch_id"]
        assert sql(db_dsn, "SELECT batch_id, count(*) FROM overlapping GROUP BY 1 ORDER BY 1") == [
            (first["batch_id"], 3),
            (third["batch_id"], 1),
        ]
    else:
        assert third["batch_id"] is None
    assert latest(client, sid) == approx_records([record(at(0), kw_to_mw(7.0)), record(at(1), 1.0), record(at(2), 2.0)])


# ======================================================================================================
# Units
# ======================================================================================================

# series unit, request unit, values sent, the value stored (physics written here)
CONVERSIONS = [
    ("MW", "kW", [1500.0, -250.0, 0.0, 1.0], kw_to_mw),
    ("kW", "MW", [1.5, -0.25], lambda x: x * 1000),
    ("K", "degC", [20.0, -273.15, 0.0, 36.6], degc_to_k),
    ("K", "degF", [32.0, 212.0, -40.0, 98.6], degf_to_k),
    ("degC", "degF", [32.0, 212.0, -40.0], degf_to_degc),
    ("degF", "degC", [0.0, 100.0, -40.0], lambda x: x * 9 / 5 + 32),
    ("MWh", "kWh", [2500.0, 1.0], lambda x: x / 1000),
    ("dimensionless", "percent", [50.0, 100.0], lambda x: x / 100),
]
CONVERSION_IDS = [f"{src}-into-{dst}" for dst, src, _, _ in CONVERSIONS]


@pytest.mark.grid
@pytest.mark.parametrize(("series_unit", "unit", "sent", "stored"), CONVERSIONS, ids=CONVERSION_IDS)
@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
def test_post_values_converts_into_the_series_unit_and_reads_convert_back(
    client, db_dsn, series_unit, unit, sent, stored, overlapping
):
    """POST /values with `unit` stores values converted into the series' unit (checked in the
    table); GET /values with that `unit` converts them back; nulls stay null."""
    sid = make_series(client, name="s", unit=series_unit, overlapping=overlapping)
    values = [*sent, None]
    post_ok(
        client,
        {
            "series_id": sid,
            "unit": unit,
            "known_time": KT1,
            "data": [{"valid_time": at(h), "value": v} for h, v in enumerate(values)],
        },
    )
    expected = [None if v is None else stored(v) for v in values]
    table = "overlapping" if overlapping else "flat"
    assert [v for (v,) in sql(db_dsn, f"SELECT value FROM {table} ORDER BY valid_time")] == [close(v) for v in expected]
    assert latest(client, sid) == approx_records([record(at(h), v) for h, v in enumerate(expected)])
    assert latest(client, sid, unit=unit) == approx_records([record(at(h), v) for h, v in enumerate(values)])
    assert latest(client, sid, unit=series_unit) == approx_records([record(at(h), v) for h, v in enumerate(expected)])


def test_bulk_converts_each_row_into_its_series_unit(client, db_dsn):
    """One bulk request in kW into series in MW, kW, GW and W: each value converted to its own
    series' unit; POST /values/query with unit=kW reads every one back in kW."""
    units = {"MW": 1 / 1000, "kW": 1.0, "GW": 1 / 1_000_000, "W": 1000.0}  # kW -> unit
    sids = {u: make_series(client, name="p", labels={"u": u}, unit=u, overlapping=(u in ("MW", "W"))) for u in units}
    rows = [row(sids[u], h, 1234.5 * (h + 1)) for u in units for h in range(3)]
    rows.append(row({"name": "p", "labels": {"u": "GW"}}, 3, -5.0e6, KT1))
    body = bulk_ok(client, rows, unit="kW")
    assert (body["rows_inserted"], body["rows_skipped"]) == (len(rows), 0)
    for u, factor in units.items():
        sent = [r for r in rows if r.get("series_id") == sids[u] or (r.get("labels") or {}).get("u") == u]
        assert latest(client, sids[u]) == approx_records(
            [record(r["valid_time"], r["value"] * factor) for r in sent]
        ), u
        assert latest(client, sids[u], unit="kW") == approx_records(
            [record(r["valid_time"], r["value"]) for r in sent]
        ), u
    stored = dict(
        sql(
            db_dsn,
            "SELECT series_id, sum(value) FROM (SELECT series_id, value FROM flat UNION ALL "
            "SELECT series_id, value FROM overlapping) x GROUP BY 1",
        )
    )
    assert stored == {
        sids[u]: close(
            sum(r["value"] * f for r in rows if r.get("series_id") == sids[u] or (r.get("labels") or {}).get("u") == u)
        )
        for u, f in units.items()
    }


def test_put_values_with_unit_stores_the_converted_correction(client):
    """PUT /values with `unit`: the corrected value is converted into each item's series unit;
    the replaced value stays in the audit trail; a null value stays null."""
    flat = make_series(client, name="meter", unit="MW")
    fc = make_series(client, name="fc", unit="K", overlapping=True)
    insert(client, flat, [(at(0), 1.0), (at(1), 2.0)])
    batch = insert(client, fc, [(at(0), 280.0)], known_time=KT1)["batch_id"]
    put_ok(
        client,
        [
            {"series_id": flat, "valid_time": at(0), "value": 2500.0},
            {"series_id": flat, "valid_time": at(1), "value": None},
        ],
        unit="kW",
    )
    put_ok(client, [{"series_id": fc, "valid_time": at(0), "batch_id": batch, "value": 68.0}], unit="degF")
    assert latest(client, flat) == approx_records([record(at(0), kw_to_mw(2500.0)), record(at(1), None)])
    assert latest(client, fc) == approx_records([record(at(0), degf_to_k(68.0))])
    assert [r["value"] for r in audit(client, flat) if r["valid_time"] == at(0)] == [1.0, close(2.5)]
    assert [r["value"] for r in audit(client, fc)] == [280.0, close(degf_to_k(68.0))]


def test_reads_convert_latest_versions_audit_and_resample(client):
    """GET /values `unit` converts latest, versions and audit reads, and a resample aggregates
    the converted values (a sum of degC values, not the degC of a sum of K)."""
    sid = make_series(client, name="t", unit="K", overlapping=True)
    insert(client, sid, [(at(0), 273.15), (at(1), 283.15)], known_time=KT1)
    batch = insert(client, sid, [(at(0), 293.15), (at(1), 303.15)], known_time=KT2)["batch_id"]
    put_ok(client, [{"series_id": sid, "valid_time": at(1), "batch_id": batch, "value": 313.15}])
    degc = {273.15: 0.0, 283.15: 10.0, 293.15: 20.0, 303.15: 30.0, 313.15: 40.0}  # K - 273.15

    assert latest(client, sid, unit="degC") == approx_records([record(at(0), 20.0), record(at(1), 40.0)])
    assert versions(client, sid, unit="degC") == approx_records(
        [
            record(at(0), 0.0, known=KT1),
            record(at(1), 10.0, known=KT1),
            record(at(0), 20.0, known=KT2),
            record(at(1), 40.0, known=KT2),
        ]
    )
    trail_k = audit(client, sid)
    trail_c = audit(client, sid, unit="degC")
    assert trail_c == [{**r, "value": close(degc[r["value"]])} for r in trail_k]
    assert [r["value"] for r in trail_k] == [273.15, 283.15, 293.15, 303.15, 313.15]

    buckets = read(client, series_id=sid, resample="PT2H", agg="sum", unit="degC")
    assert buckets == approx_records([record(at(0), 60.0, at(2))])  # 20 + 40
    buckets = read(client, series_id=sid, resample="PT2H", agg="mean", unit="degF")
    assert buckets == approx_records([record(at(0), (20.0 * 9 / 5 + 32 + 40.0 * 9 / 5 + 32) / 2, at(2))])
    buckets = read(client, series_id=sid, resample="PT2H", agg="sum", versions=True, unit="degC")
    assert buckets == approx_records([record(at(0), 10.0, at(2), KT1), record(at(0), 60.0, at(2), KT2)])

    mw = make_series(client, name="p", unit="MW")
    insert(client, mw, [(at(0), 1.5), (at(1), 2.0)])
    assert latest(client, mw, unit="kW") == approx_records([record(at(0), 1500.0), record(at(1), 2000.0)])
    assert latest(client, mw, unit="GW") == approx_records([record(at(0), 0.0015), record(at(1), 0.002)])
    assert read(client, series_id=mw, resample="PT2H", agg="sum", unit="kW") == approx_records(
        [record(at(0), 3500.0, at(2))]
    )


def test_query_converts_each_series_from_its_own_unit(client):
    """POST /values/query `unit` converts series of different units, each from its own, in
    every mode; the series listed are the series as stored."""
    specs = [("a", "MW", 2.0), ("b", "kW", 2.0), ("c", "W", 2.0), ("d", "GW", 2.0)]
    to_kw = {"MW": 1000.0, "kW": 1.0, "W": 1 / 1000, "GW": 1_000_000.0}
    sids = [make_series(client, name=n, unit=u, overlapping=(n == "b")) for n, u, _ in specs]
    for sid, (_, _, v) in zip(sids, specs, strict=True):
        insert(client, sid, [(at(0), v), (at(1), -v)], known_time=KT1)
    resp = client.post("/values/query", json={"series": [{"series_id": s} for s in sids], "unit": "kW"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "count": 8,
        "series": [
            {"series_id": sid, "name": n, "labels": {}, "unit": u} for sid, (n, u, _) in zip(sids, specs, strict=True)
        ],
        "data": [
            {"series_id": sid, **rec}
            for sid, (_, u, v) in zip(sids, specs, strict=True)
            for rec in approx_records([record(at(0), v * to_kw[u]), record(at(1), -v * to_kw[u])])
        ],
    }
    resp = client.post("/values/query", json={"filter": {"name": "a"}, "mode": "versions", "unit": "W"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] == [
        {"series_id": sids[0], **rec}
        for rec in approx_records([record(at(0), 2_000_000.0, known=KT1), record(at(1), -2_000_000.0, known=KT1)])
    ]


def test_series_with_a_unit_pint_does_not_know(client, db_dsn):
    """A series in EUR/MWh works without `unit` and with `unit` equal to its own (writes, PUT,
    reads); any other unit is a 422 naming it and stores nothing."""
    sid = make_series(client, name="price", unit="EUR/MWh")
    insert(client, sid, [(at(0), 50.0)])
    post_ok(client, {"series_id": sid, "unit": "EUR/MWh", "data": [{"valid_time": at(1), "value": 51.0}]})
    bulk_ok(client, [row(sid, 2, 52.0)], unit="EUR/MWh")
    bulk_ok(client, [row(sid, 3, 53.0)])
    put_ok(client, [{"series_id": sid, "valid_time": at(0), "value": 49.5}], unit="EUR/MWh")
    expected = [record(at(0), 49.5), record(at(1), 51.0), record(at(2), 52.0), record(at(3), 53.0)]
    assert latest(client, sid) == expected
    assert latest(client, sid, unit="EUR/MWh") == expected
    resp = client.post("/values/query", json={"series": [{"series_id": sid}], "unit": "EUR/MWh"})
    assert resp.status_code == 200 and resp.json()["data"] == [{"series_id": sid, **r} for r in expected]

    state = snapshot(db_dsn)
    for unit, unknown in (("EUR/kWh", "EUR/kWh"), ("kW", "EUR/MWh")):  # unknown: the one pint does not know
        for resp in (
            client.post(
                "/values", json={"series_id": sid, "unit": unit, "data": [{"valid_time": at(5), "value": 1.0}]}
            ),
            bulk(client, [row(sid, 5, 1.0)], unit=unit),
            client.put(
                "/values", json={"unit": unit, "updates": [{"series_id": sid, "valid_time": at(0), "value": 1.0}]}
            ),
        ):
            problem = assert_problem(resp, 422)
            assert unknown in problem["detail"], (resp.request.method, problem)
        # reads: the names in the detail are test_unknown_unit_is_a_422_naming_it's business
        assert_problem(client.get("/values", params={"series_id": sid, "unit": unit}), 422)
    assert snapshot(db_dsn) == state


WRITES: dict[str, Callable[[Any, int, str], Any]] = {
    "post": lambda c, sid, unit: c.post(
        "/values", json={"series_id": sid, "unit": unit, "data": [{"valid_time": at(7), "value": 1.0}]}
    ),
    "bulk": lambda c, sid, unit: bulk(c, [row(sid, 7, 1.0), row(sid, 8, 2.0)], unit=unit),
    "put": lambda c, sid, unit: c.put(
        "/values", json={"unit": unit, "updates": [{"series_id": sid, "valid_time": at(0), "value": 1.0}]}
    ),
}
READS: dict[str, Callable[[Any, int, str], Any]] = {
    "get": lambda c, sid, unit: c.get("/values", params={"series_id": sid, "unit": unit}),
    "query": lambda c, sid, unit: c.post("/values/query", json={"series": [{"series_id": sid}], "unit": unit}),
}


@pytest.mark.parametrize("operation", [*WRITES, *READS])
def test_unknown_unit_is_a_422_naming_it(client, db_dsn, operation):
    """An unknown unit: 422 naming it (reads: naming both units, as the spec's `unit` read
    parameter says), nothing stored."""
    sid = make_series(client, name="p", unit="MW")
    insert(client, sid, [(at(0), 1.0)])
    state = snapshot(db_dsn)
    problem = assert_problem({**WRITES, **READS}[operation](client, sid, "furlongz"), 422)
    assert "furlongz" in problem["detail"], problem
    if operation in READS:
        assert "MW" in problem["detail"], problem
    assert snapshot(db_dsn) == state


@pytest.mark.parametrize("operation", [*WRITES, *READS])
def test_incompatible_unit_is_a_422_naming_both(client, db_dsn, operation):
    """kW for a degC series (another dimension): 422 naming both units, nothing stored."""
    sid = make_series(client, name="t", unit="degC")
    insert(client, sid, [(at(0), 1.0)])
    state = snapshot(db_dsn)
    problem = assert_problem({**WRITES, **READS}[operation](client, sid, "kW"), 422)
    assert "kW" in problem["detail"] and "degC" in problem["detail"], problem
    assert snapshot(db_dsn) == state


def test_dimensionless_is_the_default_unit(client):
    """A series created without unit is dimensionless: `unit: dimensionless` changes nothing,
    percent divides by 100, a power unit is a 422."""
    resp = client.post("/series", json={"name": "ratio"})
    assert resp.status_code == 200, resp.text
    sid = resp.json()["series_id"]
    assert client.get(f"/series/{sid}").json()["unit"] == "dimensionless"
    post_ok(client, {"series_id": sid, "unit": "dimensionless", "data": [{"valid_time": at(0), "value": 0.25}]})
    bulk_ok(client, [row(sid, 1, 75.0)], unit="percent")
    assert_problem(bulk(client, [row(sid, 2, 1.0)], unit="kW"), 422)
    assert latest(client, sid) == approx_records([record(at(0), 0.25), record(at(1), 0.75)])
    assert latest(client, sid, unit="percent") == approx_records([record(at(0), 25.0), record(at(1), 75.0)])
