"""Formats of values reads (issue 9): JSON, CSV, NDJSON and Arrow for GET /values and
POST /values/query, content negotiation (`format`, `Accept`) and the 406.

Every non-JSON answer is read back on its own terms (Python's csv and json modules, pyarrow)
and compared with the JSON answer of the same request.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.json as pjson
import pytest
from psycopg import sql

from tests.helpers import AUDIT_KEYS, assert_problem, insert, make_series
from tests.processes import server_env, start_server, stop_process
from timedb.db.pool import Pool
from timedb.db.read_query import Mode
from timedb.db.values_copy import CopyStream, Printed
from timedb.errors import NotAcceptable, QueryTimeout
from timedb.formats.negotiate import negotiate
from timedb.settings import Settings

CSV, NDJSON, ARROW = "text/csv", "application/x-ndjson", "application/vnd.apache.arrow.stream"
MEDIA = {"json": "application/json", "csv": CSV, "ndjson": NDJSON, "arrow": ARROW}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
TIMES = ("known_time", "valid_time", "valid_time_end", "change_time")
KT1, KT2 = "2025-03-29T06:00:00+00:00", "2025-03-29T12:00:00+00:00"
NASTY = 'a, "quoted"\nline two\r\nthird, with a comma'
MODES = {"latest": {}, "versions": {"versions": "true"}, "audit": {"include_updates": "true"}}


# --- reading each format back -----------------------------------------------------------------------


def from_csv(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, records) of a CSV answer, with Python's csv module, as the JSON records would be:
    empty valid_time_end left out, numbers and tags parsed, timestamps kept as text."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, records = rows[0], []
    for row in rows[1:]:
        rec: dict[str, Any] = {}
        for name, field in zip(header, row, strict=True):
            if name == "valid_time_end" and field == "":
                continue
            if name in ("series_id", "batch_id"):
                rec[name] = int(field) if field else None
            elif name == "value":
                rec[name] = float(field) if field else None
            elif name == "tags":
                rec[name] = json.loads(field) if field else None
            elif name in ("changed_by", "annotation", "inserted_by"):
                rec[name] = field or None  # (csv cannot tell "" from null: see test_empty_text_*)
            else:
                rec[name] = field
        records.append(rec)
    return header, records


def from_arrow(data: bytes) -> pa.Table:
    return ipc.open_stream(data).read_all()


def arrow_records(table: pa.Table) -> list[dict[str, Any]]:
    """The records of an Arrow answer as the JSON records would be (timestamps printed in the
    column's zone by Python, a null valid_time_end left out)."""
    out = []
    for row in table.to_pylist():
        rec = {}
        for name, value in row.items():
            if name == "valid_time_end" and value is None:
                continue
            rec[name] = value.isoformat() if isinstance(value, datetime) else value
        out.append(rec)
    return out


def from_ndjson(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metadata, records) of an NDJSON answer."""
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def typed_csv(data: bytes, tz: str = "UTC") -> pa.Table:
    """A CSV answer read by pyarrow with types: timestamps (with offsets) as instants."""
    names = data.split(b"\n", 1)[0].decode().split(",")
    types = {n: pa.timestamp("us", tz=tz) for n in names if n in TIMES}
    types.update({n: pa.utf8() for n in names if n in ("changed_by", "annotation", "inserted_by", "tags")})
    return pcsv.read_csv(
        io.BytesIO(data),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )


def instants(records: list[dict[str, Any]], name: str) -> list[datetime | None]:
    return [datetime.fromisoformat(r[name]) if r.get(name) else None for r in records]


# --- requests -----------------------------------------------------------------------------------


def get(client: Any, fmt: str | None = None, accept: str | None = None, **params: Any) -> Any:
    if fmt is not None:
        params["format"] = fmt
    return client.get("/values", params=params, headers={"Accept": accept} if accept else {})


def query(client: Any, body: dict[str, Any], fmt: str | None = None, accept: str | None = None) -> Any:
    return client.post(
        "/values/query", params={"format": fmt} if fmt else {}, json=body, headers={"Accept": accept} if accept else {}
    )


def ok(resp: Any, media: str) -> Any:
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"].split(";")[0] == media
    return resp


def check_all_formats(
    doc: dict[str, Any], answers: dict[str, Any], mode: str, many: bool, tz: str | None = None
) -> None:
    """Every format's answer carries the records (and metadata) of the JSON document doc."""
    data = doc["data"]
    columns = {
        "latest": ["valid_time", "valid_time_end", "value"],
        "versions": ["known_time", "valid_time", "valid_time_end", "value"],
        "audit": [*AUDIT_KEYS[:2], "valid_time_end", *AUDIT_KEYS[2:]],
    }[mode]
    if many:
        columns = ["series_id", *columns]
    # CSV: the same text for every timestamp, the same numbers, tags and text
    header, records = from_csv(ok(answers["csv"], CSV).text)
    assert header == columns
    assert records == data
    typed = typed_csv(answers["csv"].content, tz or "UTC")
    assert typed.num_rows == len(data)
    for name in columns:
        if name in TIMES:
            assert typed.column(name).to_pylist() == instants(data, name), name
    # NDJSON: the metadata line, then the JSON records, key order included
    meta, lines = from_ndjson(ok(answers["ndjson"], NDJSON).text)
    assert meta == {"mode": mode, "columns": columns, **({"series": doc["series"]} if many else {})}
    assert lines == data
    assert [list(r) for r in lines] == [list(r) for r in data]
    if lines:
        rest = answers["ndjson"].content.split(b"\n", 1)[1]
        assert pjson.read_json(io.BytesIO(rest)).num_rows == len(data)
    # Arrow: typed columns holding the same instants (printed in the same zone) and values
    table = from_arrow(ok(answers["arrow"], ARROW).content)
    assert table.column_names == columns
    assert arrow_records(table) == data
    for field in table.schema:
        expected = {
            "series_id": pa.int64(),
            "batch_id": pa.int64(),
            "value": pa.float64(),
            "changed_by": pa.utf8(),
            "annotation": pa.utf8(),
            "inserted_by": pa.utf8(),
            "tags": pa.list_(pa.utf8()),
        }.get(field.name, pa.timestamp("us", tz=tz or "UTC"))
        assert field.type == expected, field
    metadata = table.schema.metadata
    assert metadata[b"mode"] == mode.encode()
    if many:
        assert json.loads(metadata[b"series"]) == doc["series"]


# --- data ---------------------------------------------------------------------------------------


def forecast(client: Any) -> int:
    """An overlapping series: two issues, an interval, a null, a microsecond, a correction with
    awkward text."""
    sid = make_series(client, name="fc", overlapping=True)
    insert(
        client,
        sid,
        [("2025-03-30T00:00:00Z", 1.5), ("2025-03-30T01:00:00.25Z", None), ("2025-03-30T02:00:00Z", 0.1)],
        known_time=KT1,
    )
    resp = client.post(
        "/values",
        json={
            "series_id": sid,
            "known_time": KT2,
            "data": [
                {"valid_time": "2025-03-30T00:00:00Z", "value": 110.0},
                {"valid_time": "2025-03-30T03:00:00Z", "valid_time_end": "2025-03-30T04:00:00Z", "value": -1e-7},
                {"valid_time": "2025-03-30T05:00:00Z", "value": 1e20},
            ],
        },
    )
    assert resp.status_code == 200, resp.text
    resp = client.put(
        "/values",
        json={
            "updates": [
                {
                    "series_id": sid,
                    "valid_time": "2025-03-30T00:00:00Z",
                    "value": 2.5,
                    "annotation": NASTY,
                    "tags": ["y,z", 'say "hi"', "äöü", "x"],
                    "changed_by": "ops@example.com",
                }
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    return sid


def meter(client: Any) -> int:
    """A flat series with a correction."""
    sid = make_series(client, name="meter")
    insert(client, sid, [("2025-03-30T00:00:00Z", 3.0), ("2025-03-30T00:15:00Z", 1 / 3)], known_time=KT1)
    insert(client, sid, [("2025-03-30T00:15:00Z", 2 / 3)], known_time=KT2)
    return sid


def all_formats(send: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON document, {format: response}) of one request sent in every format."""
    doc = ok(send("json"), "application/json").json()
    assert doc["count"] == len(doc["data"])
    return doc, {fmt: send(fmt) for fmt in ("csv", "ndjson", "arrow")}


# --- content negotiation --------------------------------------------------------------------------


@pytest.mark.grid
@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        (BROWSER, "json"),
        ("application/json", "json"),
        ("text/csv", "csv"),
        ("application/x-ndjson", "ndjson"),
        (ARROW, "arrow"),
        ("text/*", "csv"),
        ("application/*", "json"),
        ("TEXT/CSV; charset=utf-8", "csv"),
        ("application/json;q=0.5, text/csv;q=0.6", "csv"),
        ("text/csv;q=0.2, application/vnd.apache.arrow.stream;q=0.9, */*;q=0.1", "arrow"),
        ("*/*;q=0.9, text/csv", "csv"),  # the more specific range wins at equal q
        ("text/csv, application/x-ndjson", "csv"),  # equal q: the client's order
        ("application/json;q=0, */*", "csv"),  # q=0: not acceptable; then the server's order
        ("text/csv;q=0, text/*;q=1, */*;q=0.5", "json"),
        ("text/html, */*;q=0.1", "json"),
        ("application/json;q=abc, text/csv", "csv"),  # a malformed range is left out
    ],
)
def test_accept_header_picks_the_format(accept, fmt):
    assert negotiate(None, accept) == fmt


@pytest.mark.parametrize(
    "accept",
    [
        "application/xml",
        "text/html",
        "image/*",
        "application/json;q=0",
        "text/csv;q=0, application/*;q=0",
        "nonsense",
        "*/json",
    ],
)
def test_accept_header_without_an_available_media_type_is_refused(accept):
    with pytest.raises(NotAcceptable) as info:
        negotiate(None, accept)
    assert info.value.extra["available"] == list(MEDIA.values())


def test_format_parameter_wins_over_accept():
    assert negotiate("csv", "application/json") == "csv"
    assert negotiate("arrow", "application/xml") == "arrow"


@pytest.mark.parametrize("accept", ["application/xml", "text/html;q=1, application/json;q=0"])
def test_406_problem_lists_the_media_types(client, accept):
    sid = meter(client)
    for resp in (
        get(client, accept=accept, series_id=sid),
        query(client, {"series": [{"series_id": sid}]}, accept=accept),
    ):
        body = assert_problem(resp, 406, "/problems/not-acceptable")
        assert body["available"] == list(MEDIA.values())
        for media in MEDIA.values():
            assert media in body["detail"]


@pytest.mark.parametrize("accept", [None, "*/*", BROWSER])
def test_default_and_browser_accept_get_json(client, accept):
    sid = meter(client)
    assert get(client, accept=accept, series_id=sid).json()["count"] == 2
    ok(query(client, {"series": [{"series_id": sid}]}, accept=accept), "application/json")


@pytest.mark.parametrize("fmt", list(MEDIA))
def test_accept_and_format_select_the_same_answer(client, fmt):
    sid = meter(client)
    by_accept = ok(get(client, accept=f"application/xml;q=0.9, {MEDIA[fmt]}", series_id=sid), MEDIA[fmt])
    by_format = ok(get(client, fmt, accept="application/xml", series_id=sid), MEDIA[fmt])
    assert by_accept.content == by_format.content
    body = {"series": [{"series_id": sid}]}
    assert (
        ok(query(client, body, accept=MEDIA[fmt]), MEDIA[fmt]).content
        == ok(query(client, body, fmt, accept="text/html"), MEDIA[fmt]).content
    )


def test_unknown_format_is_400(client):
    sid = meter(client)
    assert_problem(get(client, "xml", series_id=sid), 400)
    assert_problem(query(client, {"series": [{"series_id": sid}]}, "parquet"), 400)


@pytest.mark.parametrize("fmt", list(MEDIA))
def test_errors_stay_problem_json_in_every_format(client, fmt):
    assert_problem(get(client, fmt, series_id=999), 404)
    assert_problem(get(client, fmt, accept=MEDIA[fmt], series_id=999), 404)
    assert_problem(query(client, {"series": [{"series_id": 999}]}, fmt), 404)
    assert_problem(get(client, fmt, series_id=1, start_valid="2025-02-30"), 422)


# --- every format, every read ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("series", ["fc", "meter"])
def test_get_values_in_every_format(client, mode, series):
    sid = forecast(client) if series == "fc" else meter(client)
    doc, answers = all_formats(lambda fmt: get(client, fmt, series_id=sid, **MODES[mode]))
    assert doc["count"] > 0
    check_all_formats(doc, answers, mode, many=False)
    for fmt in ("csv", "arrow"):  # small answers go out whole, like JSON's
        assert "content-length" in answers[fmt].headers


@pytest.mark.parametrize("mode", list(MODES))
def test_query_in_every_format(client, mode):
    fc, mt = forecast(client), meter(client)
    body = {"series": [{"series_id": mt}, {"name": "fc"}], "mode": mode}
    doc, answers = all_formats(lambda fmt: query(client, body, fmt))
    assert [s["series_id"] for s in doc["series"]] == [mt, fc]
    assert doc["data"][0]["series_id"] == mt
    check_all_formats(doc, answers, mode, many=True)


@pytest.mark.grid
@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
@pytest.mark.parametrize("mode", list(MODES))
def test_tz_offsets_in_every_format(client, tz, mode):
    """Timestamps carry tz's offset (DST change in Berlin on 2025-03-30) in CSV as in JSON;
    Arrow columns are labelled with the zone."""
    fc, _ = forecast(client), meter(client)
    doc, answers = all_formats(lambda fmt: get(client, fmt, series_id=fc, tz=tz, **MODES[mode]))
    check_all_formats(doc, answers, mode, many=False, tz=tz)
    doc, answers = all_formats(lambda fmt: query(client, {"filter": {}, "tz": tz, "mode": mode}, fmt))
    check_all_formats(doc, answers, mode, many=True, tz=tz)
    if tz == "Europe/Berlin" and mode == "latest":
        assert [r["valid_time"] for r in doc["data"] if r["series_id"] == fc][:2] == [
            "2025-03-30T01:00:00+01:00",
            "2025-03-30T03:00:00.250000+02:00",
        ]


def test_csv_text_of_awkward_values(client):
    """RFC 4180 quoting, nulls as empty fields, shortest-exact floats, microseconds only when
    present, tags as a JSON array, valid_time_end always a column."""
    sid = forecast(client)
    text = ok(get(client, "csv", series_id=sid, include_updates="true"), CSV).text
    lines = text.split("\n")
    assert lines[0] == (
        "known_time,valid_time,valid_time_end,change_time,value,changed_by,annotation,tags,batch_id,inserted_by"
    )
    quoted_annotation = '"' + NASTY.replace('"', '""') + '"'
    assert quoted_annotation in text
    # (tags are stored sorted and lower-cased)
    assert '"[""say \\""hi\\"""",""x"",""y,z"",""äöü""]"' in text
    latest = ok(get(client, "csv", series_id=sid), CSV).text
    assert latest == (
        "valid_time,valid_time_end,value\n"
        "2025-03-30T00:00:00+00:00,,2.5\n"
        "2025-03-30T01:00:00.250000+00:00,,\n"
        "2025-03-30T02:00:00+00:00,,0.1\n"
        "2025-03-30T03:00:00+00:00,2025-03-30T04:00:00+00:00,-1e-07\n"
        "2025-03-30T05:00:00+00:00,,1e+20\n"
    )


def test_empty_text_is_not_null(client):
    """An empty string stays "" (quoted in CSV, "" in Arrow), a null stays null."""
    sid = meter(client)
    resp = client.put(
        "/values",
        json={
            "updates": [
                {"series_id": sid, "valid_time": "2025-03-30T00:00:00Z", "changed_by": "", "annotation": "note"}
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    audit = get(client, "json", series_id=sid, include_updates="true").json()["data"]
    assert [r["changed_by"] for r in audit] == [None, "", None, None]
    text = ok(get(client, "csv", series_id=sid, include_updates="true"), CSV).text
    assert ',"",note,' in text
    typed = typed_csv(get(client, "csv", series_id=sid, include_updates="true").content)
    assert typed.column("changed_by").to_pylist() == [None, "", None, None]
    table = from_arrow(get(client, "arrow", series_id=sid, include_updates="true").content)
    assert table.column("changed_by").to_pylist() == [None, "", None, None]
    assert table.column("annotation").to_pylist() == [None, "note", None, None]


def test_resampled_reads_in_every_format(client):
    sid = meter(client)
    for agg in ("mean", "count", "first"):
        doc, answers = all_formats(lambda fmt, agg=agg: get(client, fmt, series_id=sid, resample="PT1H", agg=agg))
        check_all_formats(doc, answers, "latest", many=False)
        assert doc["data"][0]["valid_time_end"] == "2025-03-30T01:00:00+00:00"


def test_empty_answers_in_every_format(client):
    sid = meter(client)
    doc, answers = all_formats(lambda fmt: get(client, fmt, series_id=sid, start_valid="2030-01-01"))
    assert doc == {"count": 0, "data": []}
    check_all_formats(doc, answers, "latest", many=False)
    assert answers["csv"].text == "valid_time,valid_time_end,value\n"
    assert from_arrow(answers["arrow"].content).num_rows == 0
    doc, answers = all_formats(lambda fmt: query(client, {"filter": {"name": "none"}}, fmt))
    assert doc == {"count": 0, "series": [], "data": []}
    check_all_formats(doc, answers, "latest", many=True)


def test_ndjson_metadata_line(client):
    sid = meter(client)
    meta, records = from_ndjson(get(client, "ndjson", series_id=sid, versions="true").text)
    assert meta == {"mode": "versions", "columns": ["known_time", "valid_time", "valid_time_end", "value"]}
    assert len(records) == 3
    meta, _ = from_ndjson(query(client, {"series": [{"series_id": sid}], "mode": "audit"}, "ndjson").text)
    assert meta["mode"] == "audit"
    assert meta["series"] == [{"series_id": sid, "name": "meter", "labels": {}, "unit": "MW"}]
    assert meta["columns"][0] == "series_id"


@pytest.mark.processes
def test_only_clients_that_leave_are_logged_as_gone(app_dsn, clean_db):
    """uvicorn reports a disconnect as soon as a response is complete: that is no client
    going away (it was logged as one after every streamed read)."""
    proc, url = start_server([sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"], server_env(app_dsn))
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            sid = meter(http)
            for fmt in MEDIA:
                for _ in range(3):
                    ok(get(http, fmt, series_id=sid, versions="true"), MEDIA[fmt])  # NDJSON: streamed
    finally:
        log = stop_process(proc)
    assert "went away" not in log, log


# --- large, streamed answers (real server) ------------------------------------------------------------


BIG = 12_000


def big_series(live: Any, overlapping: bool) -> int:
    """BIG quarter-hours, two issues each for an overlapping series, some intervals and nulls."""
    sid = make_series(live, name=f"big-{overlapping}", overlapping=overlapping)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for kt, shift in ((KT1, 0.0), (KT2, 0.5)) if overlapping else ((KT1, 0.0),):
        data = []
        for i in range(BIG):
            vt = t0 + timedelta(minutes=15 * i)
            point: dict[str, Any] = {"valid_time": vt.isoformat(), "value": None if i % 97 == 0 else i / 7 + shift}
            if i % 5 == 0:
                point["valid_time_end"] = (vt + timedelta(minutes=15)).isoformat()
            data.append(point)
        resp = live.post("/values", json={"series_id": sid, "known_time": kt, "data": data})
        assert resp.status_code == 200, resp.text
    return sid


@pytest.mark.parametrize("mode", list(MODES))
def test_streamed_reads_in_every_format(live, mode):
    fc, flat = big_series(live, True), big_series(live, False)
    doc, answers = all_formats(lambda fmt: get(live, fmt, series_id=fc, **MODES[mode]))
    assert doc["count"] == (BIG if mode == "latest" else 2 * BIG)
    check_all_formats(doc, answers, mode, many=False)
    for resp in answers.values():
        assert "content-length" not in resp.headers  # streamed
    doc, answers = all_formats(
        lambda fmt: query(
            live, {"series": [{"series_id": flat}, {"series_id": fc}], "mode": mode, "tz": "Europe/Berlin"}, fmt
        )
    )
    check_all_formats(doc, answers, mode, many=True, tz="Europe/Berlin")


def test_arrow_batches_are_streamed_as_they_come(live):
    sid = big_series(live, True)
    with live.stream("GET", "/values", params={"series_id": sid, "versions": "true", "format": "arrow"}) as resp:
        ok(resp, ARROW)
        parts = list(resp.iter_raw())
    assert len(parts) > 1
    reader = ipc.open_stream(b"".join(parts))
    sizes = [batch.num_rows for batch in reader]
    assert sizes[0] == 5000 and sum(sizes) == 2 * BIG and max(sizes) <= 32768


def busy_sessions(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND (state = 'active' OR state LIKE 'idle in transaction%')"
        ).fetchall()


@pytest.mark.parametrize("fmt", ["csv", "arrow", "ndjson"])
def test_client_going_away_stops_the_read(live, clean_db, fmt):
    """A client that leaves mid-stream: the COPY (or query) is cancelled, the connection back."""
    sid = big_series(live, True)
    with live.stream("GET", "/values", params={"series_id": sid, "include_updates": "true", "format": fmt}) as resp:
        ok(resp, MEDIA[fmt])
        next(resp.iter_raw())
    deadline = time.monotonic() + 10
    while busy_sessions(clean_db) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert busy_sessions(clean_db) == []
    assert get(live, fmt, series_id=sid).status_code == 200


# --- the data layer: CopyStream ---------------------------------------------------------------------


def _plan(delay: float):
    def plan(conn: Any) -> tuple[sql.Composed, dict[str, Any]]:
        return sql.SQL(
            "SELECT now()::timestamp AS valid_time, NULL::timestamp AS valid_time_end, g::float8 AS value"
            " FROM generate_series(1, %(n)s) g WHERE g < 3 OR pg_sleep(%(delay)s) IS NOT NULL"
        ).format(), {"n": 4, "delay": delay}

    return plan


def test_copy_stream_steps_are_bounded_and_close_returns_the_connection(db_dsn):
    pool = Pool(Settings(dsn=db_dsn, statement_timeout=0.5, pool_min_size=1, pool_max_size=1))
    pool.open(wait=True)
    try:
        stream = CopyStream(pool, _plan(2.0), Mode.LATEST, many=False, printed=Printed.TEXT)
        try:
            assert stream.read(1).count(b"\n") == 2  # the header and the first row
            with pytest.raises(QueryTimeout):
                stream.read(10)
        finally:
            stream.close()
        stream = CopyStream(pool, _plan(0.0), Mode.LATEST, many=False, printed=Printed.TYPED)
        try:
            assert stream.read(10).count(b"\n") == 4 and stream.done and stream.rows == 4
            assert stream.read(10) == b""
        finally:
            stream.close()
        stream.close()  # idempotent
        with pool.connection(timeout=2) as conn:  # the one connection is back, and usable
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()
