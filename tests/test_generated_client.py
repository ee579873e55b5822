"""A Python client generated from openapi/timedb.yaml drives a real server.

openapi-python-client turns the spec into a typed package; this test generates it, checks that
every operation and schema came out under a pleasant name, and runs the main workflow through it
against uvicorn + PostgreSQL: create a series, insert two forecasts, read latest and versions,
correct a value, read the audit trail, list labels and count.
"""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.client

pytest.importorskip("openapi_python_client", reason="needs openapi-python-client (the `test` extra)")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi" / "timedb.yaml"
PACKAGE = "timedb_client"
TEXT_BODIES = ("application/x-ndjson", "text/csv")

OPERATIONS = {
    "meta": {"get_api_info", "get_health", "get_readiness", "get_metrics"},
    "series": {
        "create_series",
        "list_series",
        "list_labels",
        "count_series",
        "create_series_bulk",
        "get_series",
        "update_series",
    },
    "values": {"insert_values", "read_values", "update_records", "query_values", "insert_bulk"},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generate the client package into a temporary folder and make it importable."""
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yaml"
    # no formatter run: the test needs the code, not its style; Arrow bodies are bytes (a `File`)
    config.write_text(
        "post_hooks: []\ncontent_type_overrides:\n  application/vnd.apache.arrow.stream: application/octet-stream\n"
    )
    cli = Path(sys.executable).parent / "openapi-python-client"
    proc = subprocess.run(
        [
            str(cli),
            "generate",
            "--path",
            str(SPEC),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the generator reports every endpoint, body or schema it had to skip as a warning; the only
    # expected ones: it has no code for text bodies, so POST /values/bulk's NDJSON and CSV bodies
    # are left out of the client (its JSON and Arrow bodies are in)
    output = proc.stdout + proc.stderr
    warnings = re.findall(r"WARNING parsing (\S+ \S+) within \w+\.\s+(.+)", output)
    assert sorted(warnings) == [("POST /values/bulk", f"Unsupported content type {t}") for t in TEXT_BODIES], output
    assert output.count("WARNING") == len(TEXT_BODIES), output
    sys.path.insert(0, str(out))
    try:
        yield out / PACKAGE
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_every_operation_and_schema_has_a_plain_name(generated):
    for tag, operations in OPERATIONS.items():
        modules = {p.stem for p in (generated / "api" / tag).glob("*.py")} - {"__init__"}
        assert modules == operations, tag
    models = {p.stem for p in (generated / "models").glob("*.py")} - {"__init__"}
    # no generator-made names such as insert_request_batch_params_type_0
    assert not [m for m in models if "type_" in m or m[-1].isdigit()], sorted(models)
    assert {
        "series_info",
        "data_point",
        "value_record",
        "updated_record",
        "problem",
        "series_patch",
        "labels_patch",
        "item_error",
        "bulk_series_result",
    } <= models


@pytest.fixture
def server_with_token(make_database):
    """A real uvicorn that requires tokens (TIMEDB_AUTH=tokens), on a database of its own, and
    the secret of a write token."""
    from tests.processes import server_env, start_server, stop_process
    from timedb.db import tokens
    from timedb.db.commands import using

    dsn = make_database()
    secret = using(dsn, lambda conn: tokens.create(conn, "generated-client", "write", {}, None))
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"],
        server_env(dsn, TIMEDB_AUTH="tokens", TIMEDB_VALIDATE_RESPONSES="1"),
    )
    try:
        yield url, secret
    finally:
        stop_process(proc)


def test_client_drives_a_real_server(generated, server_with_token):
    def load(name: str):
        return importlib.import_module(f"{PACKAGE}.{name}")

    live_server, secret = server_with_token

    m = load("models")
    get_health = load("api.meta.get_health")
    create_series, list_series, list_labels, count_series = (
        load(f"api.series.{op}") for op in ("create_series", "list_series", "list_labels", "count_series")
    )
    insert_values, read_values, update_records, query_values = (
        load(f"api.values.{op}") for op in ("insert_values", "read_values", "update_records", "query_values")
    )

    # without a token: the spec's 401 problem; with one (AuthenticatedClient): served
    with load("client").Client(base_url=live_server) as anonymous:
        refused = count_series.sync(client=anonymous)
        assert isinstance(refused, m.Problem) and refused.status == 401, refused
        assert get_health.sync(client=anonymous).status == m.HealthStatus.OK  # (public)

    with load("client").AuthenticatedClient(
        base_url=live_server, token=secret, raise_on_unexpected_status=True
    ) as client:
        assert get_health.sync(client=client).status == m.HealthStatus.OK

        created = create_series.sync(
            client=client,
            body=m.CreateSeriesRequest(
                name="wind_power",
                unit="MW",
                labels=m.Labels.from_dict({"site": "Gotland", "model": "ecmwf"}),
                overlapping=True,
                retention=m.Retention.SHORT,
                description="Day-ahead wind forecast",
            ),
        )
        assert isinstance(created, m.CreateSeriesResponse) and created.created
        sid = created.series_id
        create_series.sync(
            client=client,
            body=m.CreateSeriesRequest(
                name="wind_power_measured", unit="MW", labels=m.Labels.from_dict({"site": "Visby"})
            ),
        )

        batches = []
        for known_time, base in (("2025-01-01T00:00:00Z", 100.0), ("2025-01-01T06:00:00Z", 110.0)):
            inserted = insert_values.sync(
                client=client,
                body=m.InsertRequest(
                    series_id=sid,
                    known_time=known_time,
                    data=[
                        m.DataPoint(valid_time="2025-01-02T00:00:00Z", value=base),
                        m.DataPoint(valid_time="2025-01-02T01:00:00Z", value=base + 1),
                    ],
                ),
            )
            assert isinstance(inserted, m.InsertResponse), inserted
            assert (inserted.series_id, inserted.rows_inserted) == (sid, 2)
            batches.append(inserted.batch_id)

        latest = read_values.sync(client=client, series_id=sid)
        assert isinstance(latest, m.ValuesResponse)
        assert [(r.valid_time, r.value) for r in latest.data] == [
            ("2025-01-02T00:00:00+00:00", 110.0),
            ("2025-01-02T01:00:00+00:00", 111.0),
        ]

        versions = read_values.sync(client=client, series_id=sid, versions=True)
        assert versions.count == 4
        assert [r.known_time for r in versions.data] == ["2025-01-01T00:00:00+00:00"] * 2 + [
            "2025-01-01T06:00:00+00:00"
        ] * 2

        fixed = update_records.sync(
            client=client,
            body=m.UpdateRecordsRequest(
                updates=[
                    m.RecordUpdateRequest(
                        valid_time="2025-01-02T00:00:00Z",
                        series_id=sid,
                        batch_id=batches[1],
                        value=150.0,
                        annotation="Corrected reading",
                        tags=["reviewed"],
                        changed_by="user@example.com",
                    )
                ]
            ),
        )
        assert isinstance(fixed, m.UpdateRecordsResponse), fixed
        [record] = fixed.updated
        assert (record.series_id, record.batch_id) == (sid, batches[1])
        assert record.overlapping_id and record.change_time

        audit = read_values.sync(client=client, series_id=sid, include_updates=True)
        assert audit.count == 5
        # a write token cannot name someone else: the correction is signed with its name
        corrections = [r for r in audit.data if r.changed_by == "generated-client"]
        assert len(corrections) == 1
        c = corrections[0]
        assert (c.value, c.annotation, c.tags, c.batch_id) == (150.0, "Corrected reading", ["reviewed"], batches[1])
        assert c.known_time == "2025-01-01T06:00:00+00:00"  # a correction keeps the version's known_time
        assert (
            read_values.sync(
                client=client, series_id=sid, start_valid="2025-01-02T00:00:00Z", end_valid="2025-01-02T01:00:00Z"
            )
            .data[0]
            .value
            == 150.0
        )

        labels = list_labels.sync(client=client, label_key="site")
        assert isinstance(labels, m.LabelValues) and labels.values == ["Gotland", "Visby"]
        assert count_series.sync(client=client).count == 2
        assert count_series.sync(client=client, labels='{"site":"Gotland"}').count == 1
        [info] = list_series.sync(client=client, name="wind_power")
        assert isinstance(info, m.SeriesInfo)
        assert (info.series_id, info.overlapping, info.retention) == (sid, True, m.Retention.SHORT)
        assert info.labels.to_dict() == {"site": "Gotland", "model": "ecmwf"}

        # many series in one request, with backtesting parameters
        both = query_values.sync(
            client=client,
            body=m.QueryRequest(
                series=[m.SeriesById(series_id=sid), m.SeriesByName(name="wind_power_measured")],
                as_of="2025-01-01T00:00:00Z",
                tz="Europe/Berlin",
            ),
        )
        assert isinstance(both, m.QueryResponse), both
        assert [s.series_id for s in both.series] == [sid, info.series_id + 1]
        assert [(r.series_id, r.valid_time, r.value) for r in both.data] == [
            (sid, "2025-01-02T01:00:00+01:00", 100.0),
            (sid, "2025-01-02T02:00:00+01:00", 101.0),
        ]
        daily = read_values.sync(client=client, series_id=sid, resample="P1D", agg=m.Aggregate.MAX)
        assert [(r.valid_time, r.valid_time_end, r.value) for r in daily.data] == [
            ("2025-01-02T00:00:00+00:00", "2025-01-03T00:00:00+00:00", 150.0)
        ]

        # errors come back as the spec's Problem model
        missing = read_values.sync(client=client, series_id=sid + 1000)
        assert isinstance(missing, m.Problem) and missing.status == 404

        # the series resource: many at once, one by id, a merge patch
        create_series_bulk, get_series, update_series = (
            load(f"api.series.{op}") for op in ("create_series_bulk", "get_series", "update_series")
        )
        farms = [
            m.CreateSeriesRequest(
                name="wind_power",
                unit="MW",
                overlapping=True,
                retention=m.Retention.SHORT,
                labels=m.Labels.from_dict({"site": site, "model": "ecmwf"}),
            )
            for site in ("Gotland", "Lillgrund", "Kriegers")
        ]
        bulk = create_series_bulk.sync(client=client, body=m.CreateSeriesBulkRequest(series=farms))
        assert isinstance(bulk, m.CreateSeriesBulkResponse), bulk
        assert bulk.series[0].series_id == sid
        assert [r.created for r in bulk.series] == [False, True, True]
        new_id = bulk.series[1].series_id

        one = get_series.sync(new_id, client=client)
        assert isinstance(one, m.SeriesInfo)
        assert (one.name, one.labels.to_dict(), one.description) == (
            "wind_power",
            {"site": "Lillgrund", "model": "ecmwf"},
            None,
        )

        changed = update_series.sync(
            new_id,
            client=client,
            body=m.SeriesPatch(
                description="Lillgrund, ICON", labels=m.LabelsPatch.from_dict({"model": "icon", "site": None})
            ),
        )
        assert isinstance(changed, m.SeriesInfo), changed
        assert (changed.labels.to_dict(), changed.description) == ({"model": "icon"}, "Lillgrund, ICON")
        cleared = update_series.sync(new_id, client=client, body=m.SeriesPatch(labels=None, description=None))
        assert isinstance(cleared, m.SeriesInfo), cleared
        assert (cleared.labels.to_dict(), cleared.description) == ({}, None)

        refused = update_series.sync(new_id, client=client, body=m.SeriesPatch(unit="kW"))
        assert isinstance(refused, m.Problem) and refused.status == 409 and "unit" in refused.detail
        measured_in_kw = m.CreateSeriesRequest(
            name="wind_power_measured", unit="kW", labels=m.Labels.from_dict({"site": "Visby"})
        )
        conflict = create_series_bulk.sync(
            client=client,
            body=m.CreateSeriesBulkRequest(series=[m.CreateSeriesRequest(name="new_one"), measured_in_kw]),
        )
        assert isinstance(conflict, m.Problem) and conflict.status == 409
        assert [(e.index, e.series_id) for e in conflict.errors] == [(1, info.series_id + 1)]
        assert isinstance(get_series.sync(10**9, client=client), m.Problem)

        # a forecast run of two series in one request, sent in kW into MW series
        insert_bulk = load("api.values.insert_bulk")
        kriegers = bulk.series[2].series_id
        stored = insert_bulk.sync(
            client=client,
            body=m.BulkInsertRequest(
                unit="kW",
                workflow_id="icon-06z",
                rows=[
                    m.BulkRow(
                        series_id=kriegers,
                        valid_time="2025-01-03T00:00:00Z",
                        value=51000.0,
                        known_time="2025-01-02T06:00:00Z",
                    ),
                    m.BulkRow(
                        name="wind_power",
                        labels=m.Labels.from_dict({"site": "Gotland", "model": "ecmwf"}),
                        valid_time="2025-01-03T00:00:00Z",
                        value=98000.0,
                        known_time="2025-01-02T06:00:00Z",
                    ),
                ],
            ),
        )
        assert isinstance(stored, m.BulkInsertResponse), stored
        assert (stored.rows_inserted, stored.rows_skipped) == (2, 0)
        assert sorted((b.series_id, b.rows) for b in stored.batches) == sorted([(kriegers, 1), (sid, 1)])
        assert [r.value for r in read_values.sync(client=client, series_id=kriegers).data] == [51.0]

        # the same row again as an Arrow stream, with skip_unchanged: nothing stored
        import pyarrow as pa

        table = pa.table(
            {
                "series_id": pa.array([kriegers], pa.int64()),
                "valid_time": ["2025-01-03T00:00:00Z"],
                "value": [51000.0],
                "known_time": ["2025-01-02T06:00:00Z"],
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        arrow_body = load("types").File(payload=io.BytesIO(sink.getvalue().to_pybytes()))
        again = insert_bulk.sync(client=client, body=arrow_body, unit="kW", skip_unchanged=True)
        assert isinstance(again, m.BulkInsertResponse), again
        assert (again.rows_inserted, again.rows_skipped) == (0, 1)
