"""POST /values/bulk in every request format (issue 10): JSON, NDJSON, CSV and Arrow IPC streams.

Each format is encoded here on its own terms (json, csv, pyarrow) from the same rows; the loads
are compared with the JSON load of the same rows, with GET /values reads and with expectations
computed from the rows themselves. Errors, all-or-nothing, units, skip_unchanged, query-parameter
metadata and the body limits are checked for each format.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from tests.helpers import LOCAL, assert_problem, empty_tables, make_partitions, make_series
from tests.processes import server_env, start_server, stop_process
from timedb import bulk_columns, points
from timedb.app import create_app
from timedb.errors import InvalidInput, Unprocessable
from timedb.settings import Settings
from timedb.timestamps import TIMESTAMP_PATTERN, parse_timestamp

MEDIA = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
}
FORMATS = list(MEDIA)
OTHERS = ["ndjson", "csv", "arrow"]
K1, K2 = "2025-01-01T06:00:00Z", "2025-01-01T12:00:00Z"
FIELDS = ("series_id", "name", "labels", "valid_time", "valid_time_end", "value", "known_time")


# --- encoding rows in each format -----------------------------------------------------------------


def to_ndjson(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def to_csv(rows: list[dict[str, Any]], labels: str = "columns", extra: dict[str, list[Any]] | None = None) -> bytes:
    """A CSV body: labels as label.<key> columns ("columns") or one JSON column ("json")."""
    keys = sorted({k for r in rows for k in (r.get("labels") or {})})
    columns = [c for c in ("series_id", "name") if any(c in r for r in rows)]
    if labels == "columns":
        columns += [f"label.{k}" for k in keys]
    elif any("labels" in r for r in rows):
        columns.append("labels")
    columns += [c for c in ("valid_time", "valid_time_end", "value", "known_time") if any(c in r for r in rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns + list(extra or {}))

    def cell(r: dict[str, Any], c: str) -> Any:
        if c.startswith("label."):
            return (r.get("labels") or {}).get(c[6:])
        if c == "labels":
            return None if r.get("labels") is None else json.dumps(r["labels"])
        return r.get(c)

    for i, r in enumerate(rows):
        cells = [cell(r, c) for c in columns] + [v[i] for v in (extra or {}).values()]
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in cells])
    return out.getvalue().encode()


def arrow_table(rows: list[dict[str, Any]], labels: str = "columns", times: str = "timestamps") -> pa.Table:
    """Rows as an Arrow table: timestamps as Arrow timestamps (several units and zones) or as
    strings; labels as label.<key> columns, a JSON string column or a struct column."""
    cols: dict[str, pa.Array] = {}
    if any("series_id" in r for r in rows):
        cols["series_id"] = pa.array([r.get("series_id") for r in rows], pa.int64())
    if any("name" in r for r in rows):
        cols["name"] = pa.array([r.get("name") for r in rows], pa.string())
    keys = sorted({k for r in rows for k in (r.get("labels") or {})})
    if labels == "columns":
        for k in keys:
            cols[f"label.{k}"] = pa.array([(r.get("labels") or {}).get(k) for r in rows], pa.string())
    elif labels == "json" and any("labels" in r for r in rows):
        cols["labels"] = pa.array([None if r.get("labels") is None else json.dumps(r["labels"]) for r in rows])
    elif labels == "struct" and keys:
        cols["labels"] = pa.array(
            [None if r.get("labels") is None else {k: r["labels"].get(k) for k in keys} for r in rows],
            pa.struct([(k, pa.string()) for k in keys]),
        )
    units = {
        "valid_time": pa.timestamp("ns"),
        "valid_time_end": pa.timestamp("ms", "UTC"),
        "known_time": pa.timestamp("us", "Europe/Oslo"),
    }
    for c, unit in units.items():
        if not any(c in r for r in rows):
            continue
        if times == "strings":
            cols[c] = pa.array([r.get(c) for r in rows], pa.string())
        else:
            stamps = [None if r.get(c) is None else parse_timestamp(r[c]) for r in rows]
            if unit.tz is None:  # a naive column holds UTC wall times
                stamps = [None if s is None else s.astimezone(UTC).replace(tzinfo=None) for s in stamps]
            cols[c] = pa.array(stamps, unit)
    if any("value" in r for r in rows):
        cols["value"] = pa.array([r.get("value") for r in rows], pa.float64())
    return pa.table(cols)


def to_arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=3)  # several record batches
    return sink.getvalue().to_pybytes()


def encode(fmt: str, rows: list[dict[str, Any]], **options: Any) -> bytes:
    if fmt == "ndjson":
        return to_ndjson(rows)
    if fmt == "csv":
        return to_csv(rows, **options)
    if fmt == "arrow":
        return to_arrow(arrow_table(rows, **options))
    raise ValueError(fmt)


def post(
    client: Any,
    fmt: str,
    rows: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    **meta: Any,
) -> Any:
    """POST /values/bulk with the rows in a format; metadata as body fields (JSON) or query parameters."""
    if fmt == "json":
        return client.post("/values/bulk", json={"rows": rows, **meta}, headers=headers)
    params = {
        k: json.dumps(v) if k == "batch_params" else str(v).lower() if isinstance(v, bool) else v
        for k, v in meta.items()
    }
    return client.post(
        "/values/bulk",
        content=encode(fmt, rows, **(options or {})),
        params=params,
        headers={"Content-Type": MEDIA[fmt], **(headers or {})},
    )


def load(client: Any, fmt: str, rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    resp = post(client, fmt, rows, **kw)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


# --- the database --------------------------------------------------------------------------------


def stored(dsn: str) -> list[tuple[Any, ...]]:
    """Every stored version: (series_id, batch_id, valid_time, valid_time_end, value, known_time)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT series_id, batch_id, valid_time, valid_time_end, value, known_time FROM overlapping "
            "UNION ALL SELECT series_id, NULL, valid_time, valid_time_end, value, NULL FROM flat "
            "ORDER BY 1, 3, 6"
        ).fetchall()


def batches(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT batch_id, series_id, known_time, workflow_id, batch_params FROM batches_table ORDER BY batch_id"
        ).fetchall()


def versions(client: Any, series_id: int) -> list[dict[str, Any]]:
    resp = client.get("/values", params={"series_id": series_id, "versions": "true"})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


# --- the rows ------------------------------------------------------------------------------------


def make_catalogue(client: Any) -> dict[str, int]:
    """Two overlapping wind series (same name, other sites) and a flat meter with intervals."""
    return {
        "gotland": make_series(
            client, name="wind", unit="MW", overlapping=True, labels={"site": "Gotland", "kind": "fc"}
        ),
        "visby": make_series(client, name="wind", unit="MW", overlapping=True, labels={"site": "Visby", "kind": "fc"}),
        "meter": make_series(client, name="meter", unit="MWh", labels={}),
    }


def mixed_rows(ids: dict[str, int]) -> list[dict[str, Any]]:
    """Rows naming their series by id, by name and labels (a subset of them), by name alone;
    with and without known_time, intervals, a null value, several timestamp spellings."""
    return [
        {
            "name": "wind",
            "labels": {"site": "Gotland", "kind": "fc"},
            "valid_time": "2025-01-02T00:00:00Z",
            "value": 101.5,
            "known_time": K1,
        },
        {
            "name": "wind",
            "labels": {"site": "Gotland"},
            "valid_time": "2025-01-02T02:00:00+01:00",
            "value": None,
            "known_time": K1,
        },
        {"series_id": ids["gotland"], "valid_time": "2025-01-02 02:00", "value": -0.25, "known_time": K2},
        {"series_id": ids["visby"], "valid_time": "2025-01-02T00:00:00.123456Z", "value": 42, "known_time": K1},
        {"series_id": ids["visby"], "valid_time": "2025-01-02t01:00:00z", "value": 1e-300, "known_time": K1},
        {"name": "meter", "valid_time": "2025-01-02", "valid_time_end": "2025-01-02T01:00:00Z", "value": 3.0},
        {
            "name": "meter",
            "labels": {},
            "valid_time": "2025-01-02T01:00:00Z",
            "valid_time_end": "2025-01-02T02:00:00Z",
            "value": 12345678.125,
        },
    ]


def expected_versions(rows: list[dict[str, Any]], ids: dict[str, int]) -> dict[int, set[tuple[Any, ...]]]:
    """What each series stores, computed from the rows: {series_id: {(valid_time, end, value, known_time)}}."""
    by_labels = {("wind", "Gotland"): ids["gotland"], ("wind", "Visby"): ids["visby"], ("meter", None): ids["meter"]}
    out: dict[int, set[tuple[Any, ...]]] = {sid: set() for sid in ids.values()}
    for r in rows:
        sid = r.get("series_id") or by_labels[(r["name"], (r.get("labels") or {}).get("site"))]
        end = r.get("valid_time_end")
        value = None if r.get("value") is None else float(r["value"])
        kt = None if sid == ids["meter"] or r.get("known_time") is None else parse_timestamp(r["known_time"])
        out[sid].add((parse_timestamp(r["valid_time"]), end and parse_timestamp(end), value, kt))
    return out


def actual_versions(dsn: str) -> dict[int, set[tuple[Any, ...]]]:
    out: dict[int, set[tuple[Any, ...]]] = {}
    for sid, _, vt, vte, value, kt in stored(dsn):
        out.setdefault(sid, set()).add((vt, vte, value, kt))
    return out


def without_write_times(answer: dict[str, Any], flat: set[int]) -> dict[str, Any]:
    """The answer with the known_time of flat series (the request's write time) blanked."""
    return {
        **answer,
        "batches": [
            {**b, "known_time": None if b["series_id"] in flat else b["known_time"]} for b in answer["batches"]
        ],
    }


# --- every format loads the same rows ---------------------------------------------------------------


OPTION_SETS: dict[str, list[dict[str, str]]] = {
    "json": [{}],
    "ndjson": [{}],
    "csv": [{"labels": "columns"}, {"labels": "json"}],
    "arrow": [
        {"labels": "columns"},
        {"labels": "json"},
        {"labels": "struct"},
        {"labels": "columns", "times": "strings"},
    ],
}
VARIANTS = [(fmt, options) for fmt, sets in OPTION_SETS.items() for options in sets]


VARIANT_IDS = [f"{f}-{'-'.join(o.values()) or 'plain'}" for f, o in VARIANTS]


@pytest.mark.parametrize(("fmt", "options"), VARIANTS, ids=VARIANT_IDS)
def test_every_format_loads_what_json_loads(client, clean_db, fmt, options):
    ids = make_catalogue(client)
    rows = mixed_rows(ids)
    make_partitions(clean_db, *{r["valid_time"][:7] for r in rows})  # (the batch ids are compared)
    by_json = load(client, "json", rows)
    json_stored, json_batches, json_reads = stored(clean_db), batches(clean_db), versions(client, ids["gotland"])
    empty_tables(clean_db)
    assert make_catalogue(client) == ids
    answer = load(client, fmt, rows, options=options if fmt != "json" else None)
    flat = {ids["meter"]}
    assert without_write_times(answer, flat) == without_write_times(by_json, flat)
    assert answer["rows_inserted"] == len(rows) and answer["rows_skipped"] == 0
    assert [(b["series_id"], b["rows"]) for b in answer["batches"]] == [
        (ids["gotland"], 2),
        (ids["gotland"], 1),
        (ids["visby"], 2),
        (ids["meter"], 2),
    ]
    assert stored(clean_db) == json_stored
    assert [b[1:3] for b in batches(clean_db)] == [b[1:3] for b in json_batches]
    assert versions(client, ids["gotland"]) == json_reads
    assert actual_versions(clean_db) == expected_versions(rows, ids)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_show_the_loaded_rows(client, fmt):
    ids = make_catalogue(client)
    load(client, fmt, mixed_rows(ids))
    assert versions(client, ids["visby"]) == [
        {"known_time": "2025-01-01T06:00:00+00:00", "valid_time": "2025-01-02T00:00:00.123456+00:00", "value": 42.0},
        {"known_time": "2025-01-01T06:00:00+00:00", "valid_time": "2025-01-02T01:00:00+00:00", "value": 1e-300},
    ]
    latest = client.get("/values", params={"series_id": ids["meter"]}).json()["data"]
    assert latest == [
        {"valid_time": "2025-01-02T00:00:00+00:00", "valid_time_end": "2025-01-02T01:00:00+00:00", "value": 3.0},
        {
            "valid_time": "2025-01-02T01:00:00+00:00",
            "valid_time_end": "2025-01-02T02:00:00+00:00",
            "value": 12345678.125,
        },
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_rows_in_many_record_batches_and_slices(client, clean_db, fmt, monkeypatch):
    monkeypatch.setattr(points, "RAW_SLICE_ITEMS", 7)  # JSON rows decoded 7 at a time
    sids = [make_series(client, name=f"s{i}", overlapping=bool(i % 2)) for i in range(5)]
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        {
            "series_id": sid,
            "valid_time": (t0 + timedelta(minutes=15 * k)).isoformat(),
            "value": k * 0.5 + j,
            **({"known_time": K1} if j % 2 else {}),
        }
        for j, sid in enumerate(sids)
        for k in range(40)
    ]
    answer = load(client, fmt, rows)
    assert answer["rows_inserted"] == 200
    assert sorted((b["series_id"], b["rows"]) for b in answer["batches"]) == [(sid, 40) for sid in sids]
    assert len(stored(clean_db)) == 200


# --- metadata ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_is_stored_on_every_batch(client, clean_db, fmt):
    ids = make_catalogue(client)
    rows = [r for r in mixed_rows(ids) if r.get("known_time")]
    load(client, fmt, rows, workflow_id="ecmwf-06z", batch_params={"model": "ecmwf", "members": [1, 2]})
    found = batches(clean_db)
    assert len(found) == 3
    assert {(b[3], json.dumps(b[4], sort_keys=True)) for b in found} == {
        ("ecmwf-06z", json.dumps({"members": [1, 2], "model": "ecmwf"}, sort_keys=True))
    }


@pytest.mark.parametrize("fmt", OTHERS)
def test_default_workflow_and_no_batch_params(client, clean_db, fmt):
    sid = make_series(client, name="f", overlapping=True)
    load(client, fmt, [{"series_id": sid, "valid_time": "2025-01-01T00:00:00Z", "value": 1.0}])
    assert [(b[3], b[4]) for b in batches(clean_db)] == [("api-workflow", None)]


@pytest.mark.parametrize(
    "param", [{"unit": "kW"}, {"skip_unchanged": "true"}, {"workflow_id": "w"}, {"batch_params": "{}"}]
)
def test_query_parameters_with_a_json_body_are_400(client, param):
    sid = make_series(client)
    resp = client.post(
        "/values/bulk",
        params=param,
        json={"rows": [{"series_id": sid, "valid_time": "2025-01-01T00:00:00Z", "value": 1}]},
    )
    body = assert_problem(resp, 400, "/problems/invalid-input")
    assert next(iter(param)) in body["detail"]
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


@pytest.mark.grid
@pytest.mark.parametrize("fmt", OTHERS)
@pytest.mark.parametrize("batch_params", ["[1]", "5", "{", '"x"', '{"a":' + "[" * 40 + "]" * 40 + "}"])
def test_bad_batch_params_are_400(client, clean_db, fmt, batch_params):
    sid = make_series(client, overlapping=True)
    resp = client.post(
        "/values/bulk",
        params={"batch_params": batch_params},
        content=encode(fmt, [{"series_id": sid, "valid_time": "2025-01-01", "value": 1.0}]),
        headers={"Content-Type": MEDIA[fmt]},
    )
    assert "batch_params" in assert_problem(resp, 400)["detail"]
    assert stored(clean_db) == []


# --- units and skip_unchanged -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_unit_conversion_to_each_series_unit(client, fmt):
    mw = make_series(client, name="power", unit="MW", overlapping=True)
    kw = make_series(client, name="power", unit="kW", labels={"site": "small"})
    w = make_series(client, name="power", unit="W", labels={"site": "tiny"})
    rows = [
        {"series_id": mw, "valid_time": "2025-01-01T00:00:00Z", "value": 1_500_000, "known_time": K1},
        {"series_id": kw, "valid_time": "2025-01-01T00:00:00Z", "value": 1_500_000.0},
        {"series_id": w, "valid_time": "2025-01-01T00:00:00Z", "value": -0.0},
        {"series_id": kw, "valid_time": "2025-01-01T01:00:00Z", "value": None},
    ]
    load(client, fmt, rows, unit="W")
    assert versions(client, mw)[0]["value"] == 1.5
    assert [d["value"] for d in client.get("/values", params={"series_id": kw}).json()["data"]] == [1500.0, None]
    assert str(client.get("/values", params={"series_id": w}).json()["data"][0]["value"]) == "-0.0"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unit_conversion_with_offset_and_incompatible_units(client, fmt):
    kelvin = make_series(client, name="temp", unit="K")
    load(
        client,
        fmt,
        [
            {"series_id": kelvin, "valid_time": "2025-01-01T00:00:00Z", "value": 20.0},
            {"series_id": kelvin, "valid_time": "2025-01-01T01:00:00Z", "value": None},
            {"series_id": kelvin, "valid_time": "2025-01-01T02:00:00Z", "value": -273.15},
        ],
        unit="degC",
    )
    data = client.get("/values", params={"series_id": kelvin}).json()["data"]
    assert [d["value"] for d in data] == [20.0 + 273.15, None, -273.15 + 273.15]
    mw = make_series(client, name="power", unit="MW")
    resp = post(
        client,
        fmt,
        [
            {"series_id": mw, "valid_time": "2025-01-01T00:00:00Z", "value": 1.0},
            {"series_id": kelvin, "valid_time": "2025-01-02T00:00:00Z", "value": 1.0},
        ],
        unit="degC",
    )
    body = assert_problem(resp, 422)
    assert "degC" in body["detail"] and "MW" in body["detail"]
    assert client.get("/values", params={"series_id": mw}).json()["count"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_skip_unchanged(client, clean_db, fmt):
    fc = make_series(client, name="fc", overlapping=True)
    meter = make_series(client, name="meter")
    rows = [
        {"series_id": fc, "valid_time": f"2025-01-01T0{h}:00:00Z", "value": float(h), "known_time": K1}
        for h in range(4)
    ] + [
        {"series_id": meter, "valid_time": f"2025-01-01T0{h}:00:00Z", "value": None if h == 1 else h * 10.0}
        for h in range(3)
    ]
    first = load(client, fmt, rows, skip_unchanged=True)
    assert (first["rows_inserted"], first["rows_skipped"]) == (7, 0)
    again = load(client, fmt, rows, skip_unchanged=True)
    assert again == {"rows_inserted": 0, "rows_skipped": 7, "batches": []}
    # a later run with one changed value (fc at 02:00) and one changed null (meter at 01:00)
    later = [dict(r, known_time=K2) if r["series_id"] == fc else dict(r) for r in rows]
    later[2]["value"] = 99.0
    later[5]["value"] = 7.0
    third = load(client, fmt, later, skip_unchanged=True)
    assert (third["rows_inserted"], third["rows_skipped"]) == (2, 5)
    assert sorted((b["series_id"], b["rows"]) for b in third["batches"]) == [(fc, 1), (meter, 1)]
    assert len(stored(clean_db)) == 9


@pytest.mark.parametrize("fmt", FORMATS)
def test_skip_unchanged_compares_converted_values(client, fmt):
    fc = make_series(client, name="fc", unit="MW", overlapping=True)
    load(client, fmt, [{"series_id": fc, "valid_time": "2025-01-01T00:00:00Z", "value": 2.0, "known_time": K1}])
    again = load(
        client,
        fmt,
        [{"series_id": fc, "valid_time": "2025-01-01T00:00:00Z", "value": 2000.0, "known_time": K1}],
        unit="kW",
        skip_unchanged=True,
    )
    assert (again["rows_inserted"], again["rows_skipped"]) == (0, 1)


# --- errors ----------------------------------------------------------------------------------------


def one(sid: int, **changes: Any) -> dict[str, Any]:
    return {"series_id": sid, "valid_time": "2025-01-01T00:00:00Z", "value": 1.0, **changes}


def rows_of(sid: int, n: int = 5) -> list[dict[str, Any]]:
    return [one(sid, valid_time=f"2025-01-01T0{h}:00:00Z") for h in range(n)]


@pytest.mark.grid
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("2025-01-01T07:00:00", None),
        ("tomorrow", 400),
        ("2025-13-01T00:00:00Z", 400),
        ("2025-02-30T00:00:00Z", 422),
        ("0000-01-01", 422),
        ("2025-01-01T24:00:00Z", 400),
    ],
)
def test_bad_timestamps_name_their_row(client, fmt, text, status):
    sid = make_series(client)
    rows = rows_of(sid)
    rows[3] = one(sid, valid_time=text)
    resp = post(client, fmt, rows, options={"times": "strings"} if fmt == "arrow" else None)
    if status is None:
        assert resp.status_code == 200, resp.text
        return
    body = assert_problem(resp, status)
    assert re.search(r"rows\[3\]|/rows/3", body["detail"]), body["detail"]
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_time_end_must_follow_valid_time(client, fmt):
    sid = make_series(client)
    rows = rows_of(sid)
    rows[2]["valid_time_end"] = rows[2]["valid_time"]
    body = assert_problem(post(client, fmt, rows), 422)
    assert "rows[2]" in body["detail"] and "valid_time_end" in body["detail"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_row_without_a_series_is_400(client, fmt):
    sid = make_series(client, name="x")
    rows: list[dict[str, Any]] = [
        {"name": "x", "valid_time": f"2025-01-01T0{h}:00:00Z", "value": 1.0} for h in range(3)
    ]
    rows[1] = {"valid_time": "2025-01-01T05:00:00Z", "value": 1.0}
    if fmt in ("csv", "arrow"):  # an empty cell in the name column
        rows[1] = {"name": None, "valid_time": "2025-01-01T05:00:00Z", "value": 1.0}
    body = assert_problem(post(client, fmt, rows), 400)
    assert "rows[1]" in body["detail"]
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


@pytest.mark.parametrize("fmt", ["csv", "arrow"])
def test_missing_series_columns_are_400(client, fmt):
    make_series(client)
    body = assert_problem(post(client, fmt, [{"valid_time": "2025-01-01T00:00:00Z", "value": 1.0}]), 400)
    assert "series_id or a name column" in body["detail"]


@pytest.mark.parametrize("fmt", ["csv", "arrow"])
def test_missing_valid_time_is_400(client, fmt):
    sid = make_series(client)
    body = assert_problem(post(client, fmt, [{"series_id": sid, "value": 1.0}]), 400)
    assert "valid_time" in body["detail"]
    rows = rows_of(sid, 3)
    rows[1]["valid_time"] = None
    body = assert_problem(post(client, fmt, rows), 400)
    assert "rows[1].valid_time" in body["detail"]


def test_unknown_columns_are_named(client):
    sid = make_series(client)
    rows = rows_of(sid, 2)
    body = assert_problem(
        client.post(
            "/values/bulk",
            content=to_csv(rows, extra={"colour": ["r", "g"], "Value": [1, 2]}),
            headers={"Content-Type": MEDIA["csv"]},
        ),
        400,
    )
    assert "'colour'" in body["detail"] and "'Value'" in body["detail"]
    table = arrow_table(rows).append_column("colour", pa.array(["r", "g"]))
    body = assert_problem(
        client.post("/values/bulk", content=to_arrow(table), headers={"Content-Type": MEDIA["arrow"]}), 400
    )
    assert "'colour'" in body["detail"]
    body = assert_problem(post(client, "ndjson", [rows[0], {**rows[1], "colour": "r"}]), 400)
    assert "colour" in body["detail"] and "/rows/1" in body["detail"]
    body = assert_problem(post(client, "json", [rows[0], {**rows[1], "colour": "r"}]), 400)
    assert "colour" in body["detail"] and "/rows/1" in body["detail"]


def test_labels_twice_or_repeated_columns_are_400(client):
    make_series(client, name="x", labels={"site": "a"})
    text = b"name,label.site,labels,valid_time,value\nx,a,{},2025-01-01,1\n"
    assert_problem(client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["csv"]}), 400)
    text = b"name,value,valid_time,value\nx,1,2025-01-01,1\n"
    body = assert_problem(client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["csv"]}), 400)
    assert "'value'" in body["detail"]


@pytest.mark.parametrize("labels", ['{"site":1}', "[1]", "{", '{"site":"' + "x" * 1001 + '"}'])
def test_bad_labels_json_is_400(client, labels):
    make_series(client, name="x", labels={"site": "a"})
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        [["name", "labels", "valid_time", "value"], ["x", labels, "2025-01-01", "1"]]
    )
    assert_problem(
        client.post("/values/bulk", content=out.getvalue().encode(), headers={"Content-Type": MEDIA["csv"]}), 400
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_finite_values_are_422(client, fmt):
    sid = make_series(client)
    if fmt == "json":
        text = b'{"rows": [{"series_id": %d, "valid_time": "2025-01-01", "value": 1e999}]}' % sid
        resp = client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["json"]})
    elif fmt == "ndjson":
        text = b'{"series_id": %d, "valid_time": "2025-01-01", "value": 1}\n' % sid
        text += b'{"series_id": %d, "valid_time": "2025-01-02", "value": NaN}\n' % sid
        resp = client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["ndjson"]})
    else:
        rows = rows_of(sid, 3)
        rows[2]["value"] = float("inf")
        if fmt == "csv":
            resp = client.post(
                "/values/bulk",
                content=to_csv(rows).replace(b"inf", b"Infinity"),
                headers={"Content-Type": MEDIA["csv"]},
            )
        else:
            resp = post(client, fmt, rows)
    body = assert_problem(resp, 422)
    assert "finite" in body["detail"]
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


@pytest.mark.parametrize(
    ("cell", "field"),
    [("abc", "value"), ("1,5", "value"), ("1.5", "series_id"), ("x", "series_id"), ("0", "series_id")],
)
def test_bad_csv_numbers_name_their_row(client, cell, field):
    sid = make_series(client)
    text = f"series_id,valid_time,value\n{sid},2025-01-01T00:00:00Z,1\n" + (
        f'{sid},2025-01-01T01:00:00Z,"{cell}"\n' if field == "value" else f"{cell},2025-01-01T01:00:00Z,1\n"
    )
    body = assert_problem(
        client.post("/values/bulk", content=text.encode(), headers={"Content-Type": MEDIA["csv"]}), 400
    )
    assert f"rows[1].{field}" in body["detail"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_series_are_404_listing_all(client, fmt):
    sid = make_series(client, name="x")
    rows = [
        one(sid),
        one(9999),
        {"name": "nope", "labels": {"site": "a"}, "valid_time": "2025-01-01", "value": 1},
        one(8888),
        one(9999, valid_time="2025-01-02"),
    ]
    body = assert_problem(post(client, fmt, rows), 404, "/problems/series-not-found")
    assert "3 series" in body["detail"]
    for text in ("series_id=9999", "series_id=8888", "name='nope'"):
        assert text in body["detail"]
    assert client.get("/values", params={"series_id": sid}).json()["count"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_are_422_with_row_numbers(client, clean_db, fmt):
    fc = make_series(client, name="fc", overlapping=True)
    meter = make_series(client, name="meter")
    rows = rows_of(fc, 4) + [dict(r, series_id=meter) for r in rows_of(meter, 3)]
    for r in rows[:4]:
        r["known_time"] = K1
    rows.append(dict(rows[1]))  # row 7 repeats row 1
    rows.append(dict(rows[5], known_time=K2))  # flat: one value per valid_time, known_time or not
    rows.append(dict(rows[2], known_time=K2))  # another known_time: not a repeat
    body = assert_problem(post(client, fmt, rows), 422, "/problems/duplicate-valid-time")
    assert "row 7 repeats row 1" in body["detail"] and "row 8 repeats row 5" in body["detail"]
    assert body["rows"] == [7, 8]
    assert stored(clean_db) == [] and batches(clean_db) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_clash_with_another_batch_is_409_and_stores_nothing(client, clean_db, fmt):
    fc = make_series(client, name="fc", overlapping=True)
    other = make_series(client, name="other", overlapping=True)
    load(client, "json", [dict(r, known_time=K1) for r in rows_of(fc, 2)])
    before = stored(clean_db)
    rows = [dict(r, known_time=K1) for r in rows_of(other, 2)] + [
        dict(r, known_time=K1) for r in rows_of(fc, 4)
    ]  # fc at 00:00 and 01:00 are stored
    body = assert_problem(post(client, fmt, rows), 409, "/problems/version-conflict")
    assert body["rows"] == [2, 3]
    assert stored(clean_db) == before and len(batches(clean_db)) == 1
    # the same known_time at other valid_times is no clash
    later = [dict(r, known_time=K1) for r in rows_of(fc, 4)][2:]
    assert load(client, fmt, later)["rows_inserted"] == 2


@pytest.mark.parametrize("fmt", OTHERS)
# (`null`: pyarrow 26's JSON reader crashes the process on a body whose first value is not an
# object, apache/arrow#47409; such bodies never reach it)
@pytest.mark.grid
@pytest.mark.parametrize(
    "body",
    [b"", b"  \n", b"\xff\xfe\x00garbage", b"valid_time\n", b"null", b" null\n", b"nullx", b"\n\nnull\n{}", b"[]"],
)
def test_empty_or_unreadable_bodies_are_400(client, fmt, body):
    assert_problem(client.post("/values/bulk", content=body, headers={"Content-Type": MEDIA[fmt]}), 400)


def test_a_header_without_rows_is_400(client):
    body = assert_problem(
        client.post("/values/bulk", content=b"series_id,valid_time,value\n", headers={"Content-Type": MEDIA["csv"]}),
        400,
    )
    assert "at least one" in body["detail"]
    table = arrow_table([one(1)]).slice(0, 0)
    assert_problem(client.post("/values/bulk", content=to_arrow(table), headers={"Content-Type": MEDIA["arrow"]}), 400)


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2]",
        b"5",
        b'{"series_id": 1, "valid_time": "2025-01-01"} {"series_id": 1}',
        b'{"series_id": 1, "valid_time": "2025-01-01", "labels": {"site": null}}',
        b'{"series_id": "1", "valid_time": "2025-01-01"}',
        b'{"series_id": 1, "valid_time": "2025-01-01", "value": true}',
    ],
)
def test_ndjson_lines_that_are_not_one_row_are_400(client, line):
    sid = make_series(client)
    text = b'{"series_id": %d, "valid_time": "2025-01-02", "value": 1}\n' % sid + line + b"\n"
    body = assert_problem(client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["ndjson"]}), 400)
    assert re.search(r"rows\[1\]|/rows/1", body["detail"]), body["detail"]


def test_ndjson_skips_blank_lines_and_names_rows_not_lines(client):
    sid = make_series(client)
    text = (
        b'\n{"series_id": %d, "valid_time": "2025-01-01", "value": 1}\n\n  \n'
        b'{"series_id": %d, "valid_time": "2025-01-02", "value": 2}\r\n'
        b'{"series_id": %d, "valid_time": "bad", "value": 3}'
    ) % (sid, sid, sid)
    body = assert_problem(client.post("/values/bulk", content=text, headers={"Content-Type": MEDIA["ndjson"]}), 400)
    assert "/rows/2/valid_time" in body["detail"]
    assert load(client, "ndjson", [one(sid), one(sid, valid_time="2025-01-02")])["rows_inserted"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"valid_time": "x"},
        {"valid_time": "2025-02-30"},
        {"value": "1"},
        {"series_id": 0},
        {"series_id": None, "name": "n" * 1001},
        {"series_id": None, "name": "n", "labels": {"a": 1}},
        {"valid_time_end": "2024-01-01"},
        {"series_id": None},
    ],
)
def test_ndjson_names_problems_as_json_does(client, change):
    sid = make_series(client)
    rows = rows_of(sid, 3)
    rows[2] = {k: v for k, v in {**rows[2], **change}.items() if v is not None}
    by_json = post(client, "json", rows)
    assert by_json.status_code in (400, 422), by_json.text
    by_ndjson = assert_problem(post(client, "ndjson", rows), by_json.status_code)
    assert by_ndjson["detail"] == by_json.json()["detail"]


def test_arrow_types(client, clean_db):
    sid = make_series(client, overlapping=True)
    n = 3
    table = pa.table(
        {
            "series_id": pa.array([sid] * n, pa.uint16()),
            "valid_time": pa.array([0, 1, 2], pa.date32()),
            "valid_time_end": pa.array([86_400_000_000_000 + 1999, None, 3 * 86_400_000_000_000], pa.timestamp("ns")),
            "value": pa.array([1, None, 3], pa.int8()),
            "known_time": pa.array(["2025-01-01T00:00:00+01:00"] * n).dictionary_encode(),
        }
    )
    assert load_arrow(client, table)["rows_inserted"] == 3
    got = [(r[2], r[3], r[4], r[5]) for r in stored(clean_db)]
    day = timedelta(days=1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    kt = datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert got == [
        (epoch, epoch + day + timedelta(microseconds=1), 1.0, kt),
        (epoch + day, None, None, kt),
        (epoch + 2 * day, epoch + 3 * day, 3.0, kt),
    ]


def load_arrow(client: Any, table: pa.Table, **params: Any) -> dict[str, Any]:
    resp = client.post("/values/bulk", content=to_arrow(table), params=params, headers={"Content-Type": MEDIA["arrow"]})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("column", "array", "status"),
    [
        ("series_id", pa.array([1.0]), 400),
        ("series_id", pa.array([0], pa.int64()), 400),
        ("series_id", pa.array([2**64 - 1], pa.uint64()), 400),
        ("value", pa.array(["1"]), 400),
        ("value", pa.array([float("nan")]), 422),
        ("valid_time", pa.array([1], pa.int64()), 400),
        ("valid_time", pa.array([253402300800], pa.timestamp("s")), 422),
        ("name", pa.array([1]), 400),
    ],
)
def test_arrow_bad_columns(client, column, array, status):
    sid = make_series(client)
    table = pa.table({"series_id": pa.array([sid]), "valid_time": pa.array(["2025-01-01"]), "value": pa.array([1.0])})
    table = (
        table.set_column(table.column_names.index(column), column, array)
        if column in table.column_names
        else table.append_column(column, array)
    )
    resp = client.post("/values/bulk", content=to_arrow(table), headers={"Content-Type": MEDIA["arrow"]})
    body = assert_problem(resp, status)
    assert column in body["detail"] or "finite" in body["detail"]


def test_arrow_body_that_is_not_a_stream_is_400(client):
    sink = pa.BufferOutputStream()
    table = arrow_table([one(1)])
    with pa.ipc.new_file(sink, table.schema) as writer:  # the file format, not the stream
        writer.write_table(table)
    body = assert_problem(
        client.post("/values/bulk", content=sink.getvalue().to_pybytes(), headers={"Content-Type": MEDIA["arrow"]}), 400
    )
    assert "Arrow IPC stream" in body["detail"]


# --- all or nothing, idempotency -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_bad_row_stores_nothing(client, clean_db, fmt):
    ids = make_catalogue(client)
    rows = mixed_rows(ids)
    rows[-1]["valid_time_end"] = "2025-01-01T00:00:00Z"  # before its valid_time
    assert_problem(post(client, fmt, rows), 422)
    rows = [*mixed_rows(ids), one(12345)]
    assert_problem(post(client, fmt, rows), 404)
    assert stored(clean_db) == [] and batches(clean_db) == []


@pytest.mark.parametrize("fmt", OTHERS)
def test_idempotency_key_covers_the_query_parameters(client, clean_db, fmt):
    sid = make_series(client, unit="MW")
    rows = rows_of(sid, 2)
    key = {"Idempotency-Key": f"bulk-{fmt}"}
    first = post(client, fmt, rows, headers=key, unit="kW")
    again = post(client, fmt, rows, headers=key, unit="kW")
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert_problem(post(client, fmt, rows, headers=key, unit="GW"), 422)  # same body, other query
    assert len(stored(clean_db)) == 2


# --- body limits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_client(make_database) -> Iterator[Any]:
    app = create_app(Settings(dsn=make_database(), validate_responses=True, max_body_bytes=1000))
    with app.test_client(**LOCAL) as c:
        yield c


def _pieces(raw: bytes) -> Iterator[bytes]:
    for i in range(0, len(raw), 100):
        yield raw[i : i + 100]


@pytest.mark.parametrize("fmt", OTHERS)
def test_body_over_the_limit_is_413(small_client, fmt):
    rows = [one(1, valid_time=(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=h)).isoformat()) for h in range(100)]
    raw = encode(fmt, rows)
    assert len(raw) > 1000
    headers = {"Content-Type": MEDIA[fmt]}
    assert_problem(small_client.post("/values/bulk", content=raw, headers=headers), 413, "/problems/payload-too-large")
    resp = small_client.post("/values/bulk", content=_pieces(raw), headers=headers)  # chunked: no Content-Length
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413, "/problems/payload-too-large")


@pytest.fixture(scope="module")
def impatient_server(make_database) -> Iterator[str]:
    """A uvicorn process that waits at most 1 s for each part of a body."""
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"],
        server_env(make_database(), TIMEDB_CLIENT_TIMEOUT="1"),
    )
    yield url
    stop_process(proc)


@pytest.mark.processes
@pytest.mark.parametrize("fmt", OTHERS)
def test_a_stalled_body_is_408(impatient_server, fmt):
    port = int(impatient_server.rsplit(":", 1)[1])
    raw = encode(fmt, rows_of(1, 3))
    head = (
        f"POST /values/bulk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MEDIA[fmt]}\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        t0 = time.monotonic()
        sock.sendall(head + raw[: len(raw) // 2])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"/problems/request-timeout" in answer
    assert time.monotonic() - t0 > 0.8  # (not before the server's client timeout of 1 s)


# --- timestamps: the columnar reading agrees with parse_timestamp -----------------------------------


def _random_timestamps(n: int) -> list[str]:
    rnd = random.Random(10)
    out = []
    for _ in range(n):
        s = "-".join(
            [
                rnd.choice(["0000", "0001", "0002", "1850", "1969", "1970", "2024", "9998", "9999"]),
                rnd.choice(["00", "01", "02", "12", "13"]),
                rnd.choice(["01", "28", "29", "30", "31", "32"]),
            ]
        )
        if rnd.random() < 0.9:
            s += rnd.choice("Tt ") + rnd.choice(["00", "23", "24"]) + ":" + rnd.choice(["00", "59", "60"])
            if rnd.random() < 0.8:
                s += ":" + rnd.choice(["00", "59", "60"]) + rnd.choice(["", ".5", ".123456", ".1234567", ".999999999"])
            s += rnd.choice(
                ["", "Z", "z", "+00:00", "-00:00", "+01:00", "-23:59", "+24:00", "+0100", "+01", " 01:00", "+05:30"]
            )
        out.append(s)
    return [*out, "2025-01-01T00:00:00Z\n", "", " 2025-01-01", "1969-12-31T23:59:59.9999999Z"]


def _by_parse_timestamp(text: str) -> int | str:
    if re.match(TIMESTAMP_PATTERN, text) is None:
        return "400"
    try:
        return bulk_columns.micros(parse_timestamp(text))
    except Unprocessable:
        return "422"


def _by_columns(text: str) -> int | str:
    try:
        return bulk_columns.timestamps_from_text(pa.array([text]), "valid_time").to_pylist()[0]  # type: ignore[no-any-return]
    except InvalidInput:
        return "400"
    except Unprocessable:
        return "422"


def test_timestamp_columns_read_as_parse_timestamp_does():
    texts = _random_timestamps(3000)
    assert [_by_columns(t) for t in texts] == [_by_parse_timestamp(t) for t in texts]
    good = [t for t in texts if isinstance(_by_parse_timestamp(t), int)]
    assert len(good) > 200
    as_column = bulk_columns.timestamps_from_text(pa.array(good), "valid_time").to_pylist()
    assert as_column == [_by_parse_timestamp(t) for t in good]
    assert bulk_columns.timestamps_from_text(pa.array(good).dictionary_encode(), "x").to_pylist() == as_column


@pytest.mark.parametrize(
    "content_type", ["text/csv; charset=utf-8", "text/csv;header=present", "application/x-ndjson; charset=utf-8"]
)
def test_media_type_parameters_are_ignored(client, content_type):
    sid = make_series(client)
    fmt = "csv" if content_type.startswith("text/csv") else "ndjson"
    resp = client.post("/values/bulk", content=encode(fmt, rows_of(sid, 2)), headers={"Content-Type": content_type})
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows_inserted"] == 2


def test_other_media_types_are_415(client):
    sid = make_series(client)
    resp = client.post("/values/bulk", content=to_csv(rows_of(sid, 2)), headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
