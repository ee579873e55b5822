"""X-Request-ID on every answer, and the log lines of a request (issue 12): TIMEDB_LOG_FORMAT=json
gives one JSON object per line with the request's id, text keeps uvicorn's lines."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import LOCAL, assert_problem, insert, make_series
from timedb.app import create_app
from timedb.errors import ConfigError
from timedb.settings import Settings

GENERATED = re.compile(r"^[0-9a-f]{32}$")
LOGGERS = ("timedb", "timedb.access", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the loggers back as they were (a json app reconfigures them for the process)."""
    saved = {
        name: (list(lg.handlers), lg.propagate, lg.level, lg.disabled, list(lg.filters))
        for name in LOGGERS
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level, disabled, filters) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate, lg.level, lg.disabled, lg.filters = handlers, propagate, level, disabled, filters


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------------ X-Request-ID


def test_request_id_is_generated_and_echoed(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert GENERATED.match(first.headers["x-request-id"])
    assert uuid.UUID(hex=first.headers["x-request-id"]).version == 4
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("given", ["abc-123", "A" * 200, "trace:0af7651916cd43dd8448eb211c80319c", "~!#$%"])
def test_a_sane_client_request_id_is_kept(client, given):
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "has space", "A" * 201, "tab\there", "é"])
def test_an_insane_client_request_id_is_replaced(client, given):
    resp = client.get("/healthz", headers={"X-Request-ID": given.encode("utf-8")})
    assert GENERATED.match(resp.headers["x-request-id"]), resp.headers["x-request-id"]


def test_request_id_is_on_problems_and_streamed_responses(client):
    headers = {"X-Request-ID": "req-42"}
    assert_problem(client.get("/no/such/path", headers=headers), 404)
    assert_problem(client.post("/series", json={"name": 5}, headers=headers), 400)
    assert_problem(client.delete("/healthz", headers=headers), 405)
    for resp in (
        client.get("/no/such/path", headers=headers),
        client.post("/series", json={}, headers=headers),
        client.delete("/healthz", headers=headers),
        client.get("/docs/", headers=headers),
    ):
        assert resp.headers["x-request-id"] == "req-42", resp
    sid = make_series(client)
    insert(
        client,
        sid,
        [(f"2025-01-01T00:{m // 60:02d}:{m % 60:02d}Z", float(m)) for m in range(3600)]
        + [(f"2025-01-02T00:{m // 60:02d}:{m % 60:02d}Z", float(m)) for m in range(3600)],
    )
    streamed = client.get("/values", params={"series_id": sid}, headers=headers)
    assert streamed.status_code == 200 and "content-length" not in streamed.headers  # (really streamed)
    assert streamed.json()["count"] == 7200
    assert streamed.headers["x-request-id"] == "req-42"


def test_request_id_is_on_401(make_database):
    app = create_app(Settings(dsn=make_database(), auth="tokens"))
    with app.test_client(**LOCAL) as c:
        resp = c.get("/series", headers={"X-Request-ID": "who-is-it"})
        assert_problem(resp, 401)
        assert resp.headers["x-request-id"] == "who-is-it"


# ------------------------------------------------------------------------------ logs


def test_log_format_setting():
    assert Settings.from_env({"TIMEDB_DSN": "x"}).log_format == "text"
    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(ConfigError, match="TIMEDB_LOG_FORMAT"):
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_LOG_FORMAT": "xml"})


def test_json_access_log_is_one_line_per_request(make_database, restore_logging, capsys):
    app = create_app(Settings(dsn=make_database(), validate_responses=True, log_format="json"))
    assert logging.getLogger("uvicorn.access").disabled  # (ours replaces it: one line per request)
    with app.test_client(**LOCAL) as c:
        capsys.readouterr()
        ok = c.get("/series/count?name=x", headers={"X-Request-ID": "count-1"})
        missing = c.get("/nope")
        bad = c.post("/series", json={"name": 5})
    lines = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "timedb.access"]
    assert [line["request_id"] for line in lines] == [
        "count-1",
        missing.headers["x-request-id"],
        bad.headers["x-request-id"],
    ]
    first = lines[0]
    assert list(first) == [
        "ts",
        "level",
        "msg",
        "request_id",
        "method",
        "path",
        "operation",
        "status",
        "duration_ms",
        "client",
        "logger",
    ]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["ts"])
    assert first["level"] == "info" and first["msg"] == "GET /series/count 200"
    assert (first["method"], first["path"], first["operation"], first["status"]) == (
        "GET",
        "/series/count",
        "count_series",
        ok.status_code,
    )  # (no query string)
    assert first["client"] == "127.0.0.1:50000"
    assert 0 < first["duration_ms"] < 10_000
    assert (lines[1]["operation"], lines[1]["status"]) == ("unmatched", 404)
    assert (lines[2]["operation"], lines[2]["status"], lines[2]["method"]) == ("create_series", 400, "POST")


def drop(dsn: str, server_dsn: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{conninfo_to_dict(dsn)["dbname"]}" WITH (FORCE)')


@pytest.mark.faults
def test_json_5xx_line_has_the_cause_and_the_request_id(make_database, server_dsn, restore_logging, capsys):
    dsn = make_database()
    app = create_app(Settings(dsn=dsn, log_format="json", pool_min_size=1, pool_max_size=2, pool_timeout=1.0))
    with app.test_client(**LOCAL) as c:
        assert c.get("/series").status_code == 200
        drop(dsn, server_dsn)
        capsys.readouterr()
        resp = c.get("/series", headers={"X-Request-ID": "doomed-1"})
    body = assert_problem(resp, 503, "/problems/service-unavailable")
    assert resp.headers["x-request-id"] == "doomed-1"
    lines = json_lines(capsys.readouterr().err)
    errors = [line for line in lines if line["level"] == "error"]
    assert errors, lines
    error = errors[0]
    assert error["request_id"] == "doomed-1" and error["logger"] == "timedb"
    cause = re.search(r"\(cause: (\w+): (.+)\)$", error["msg"])
    assert cause, error["msg"]
    # what the log has, the answer has not
    assert cause.group(1) not in resp.text and cause.group(2)[:30] not in resp.text
    assert conninfo_to_dict(dsn)["dbname"] not in resp.text and "cause" not in body["detail"]
    assert any(
        line["logger"] == "timedb.access" and line["status"] == 503 and line["request_id"] == "doomed-1"
        for line in lines
    )


@pytest.mark.faults
def test_text_5xx_line_has_the_request_id(make_database, server_dsn, restore_logging, caplog):
    dsn = make_database()
    app = create_app(Settings(dsn=dsn, pool_min_size=1, pool_max_size=2, pool_timeout=1.0))
    assert not logging.getLogger("uvicorn.access").disabled  # (text: uvicorn's access log as ever)
    with app.test_client(**LOCAL) as c:
        assert c.get("/series").status_code == 200
        drop(dsn, server_dsn)
        with caplog.at_level(logging.INFO, logger="timedb"):
            resp = c.get("/series", headers={"X-Request-ID": "doomed-2"})
    assert_problem(resp, 503)
    errors = [r for r in caplog.records if r.name == "timedb" and r.levelno == logging.ERROR]
    assert errors and errors[0].request_id == "doomed-2"
    assert "(cause: " in errors[0].getMessage()
    assert not [r for r in caplog.records if r.name == "timedb.access"]  # (text: no access line of ours)


def test_rows_written_and_read_are_counted_and_logged(make_database, restore_logging, capsys):
    """POST /values (N points), PUT /values (1 correction), reads of the N+1 stored rows as a
    complete and as a streamed answer: the counters and each access line's `rows` say so."""
    from prometheus_client.parser import text_string_to_metric_families

    def totals(c: Any) -> dict[str, float]:
        return {
            s.name: s.value
            for f in text_string_to_metric_families(c.get("/metrics").text)
            for s in f.samples
            if s.name in ("timedb_rows_written_total", "timedb_rows_read_total")
        }

    n = 6000  # above the streaming threshold (5,000 rows) for the audit read below
    app = create_app(Settings(dsn=make_database(), log_format="json"))
    with app.test_client(**LOCAL) as c:
        sid = make_series(c, name="m")
        before = totals(c)
        capsys.readouterr()
        points = [(f"2025-01-{1 + i // 1440:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z", float(i)) for i in range(n)]
        insert(c, sid, points)
        assert (
            c.put(
                "/values", json={"updates": [{"series_id": sid, "valid_time": "2025-01-01T00:00:00Z", "value": 2.0}]}
            ).status_code
            == 200
        )
        latest = c.get("/values", params={"series_id": sid})
        audit = c.get("/values", params={"series_id": sid, "include_updates": "true"})
        assert "content-length" not in audit.headers  # (streamed)
        after = totals(c)
    assert latest.json()["count"] == n and audit.json()["count"] == n + 1
    assert after["timedb_rows_written_total"] - before["timedb_rows_written_total"] == n + 1
    assert after["timedb_rows_read_total"] - before["timedb_rows_read_total"] == n + n + 1
    lines = [
        line
        for line in json_lines(capsys.readouterr().err)
        if line["logger"] == "timedb.access" and line["path"] != "/metrics"
    ]
    assert [(line["method"], line.get("rows")) for line in lines] == [
        ("POST", n),
        ("PUT", 1),
        ("GET", n),
        ("GET", n + 1),
    ]
