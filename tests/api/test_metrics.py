"""GET /metrics (issue 12): Prometheus metrics by operation and status, pool gauges, 5xx counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LOCAL, assert_problem, make_series
from timedb.app import create_app
from timedb.db import tokens as store
from timedb.db.commands import using
from timedb.settings import Settings


def scrape(client: Any, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by (name, sorted labels)."""
    resp = client.get("/metrics", **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def requests(samples: dict, operation: str, status: int) -> float:
    return samples.get(("timedb_requests_total", (("operation", operation), ("status", str(status)))), 0.0)


def durations(samples: dict, operation: str) -> float:
    return samples.get(("timedb_request_duration_seconds_count", (("operation", operation),)), 0.0)


def test_requests_are_counted_by_operation_and_status(client):
    before = scrape(client)
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert_problem(client.post("/series", json={"name": 5}), 400)  # rejected by validation
    assert_problem(client.get("/no/such/path"), 404)
    assert_problem(client.get("/series/999999"), 404)  # routed, then not found
    after = scrape(client)
    assert requests(after, "get_health", 200) - requests(before, "get_health", 200) == 2
    assert requests(after, "create_series", 400) - requests(before, "create_series", 400) == 1
    assert requests(after, "unmatched", 404) - requests(before, "unmatched", 404) == 1
    assert requests(after, "get_series", 404) - requests(before, "get_series", 404) == 1
    # the first scrape is counted by the time of the second (it ends before the second starts)
    assert requests(after, "get_metrics", 200) - requests(before, "get_metrics", 200) == 1
    assert durations(after, "get_health") - durations(before, "get_health") == 2


def test_labels_never_carry_a_path(client):
    sid = make_series(client)
    client.get(f"/series/{sid}")
    client.get("/a/path/nobody/knows/7f3a9")
    client.get("/docs/")
    text = client.get("/metrics").text
    assert "7f3a9" not in text and f"/series/{sid}" not in text
    samples = scrape(client)
    operations = {dict(labels).get("operation") for _, labels in samples} - {None}
    assert {"get_series", "unmatched", "docs"} <= operations
    assert all("/" not in op for op in operations), operations


def test_pool_gauges(client):
    samples = scrape(client)
    size = samples[("timedb_pool_size", ())]
    available = samples[("timedb_pool_available", ())]
    assert Settings.pool_min_size <= size <= Settings.pool_max_size
    assert 0 <= available <= size
    assert samples[("timedb_pool_requests_waiting", ())] == 0


def test_database_errors_are_counted_by_problem_type(make_database):
    app = create_app(Settings(dsn=make_database(with_tables=False), validate_responses=True))
    with app.test_client(**LOCAL) as c:
        key = ("timedb_database_errors_total", (("type", "/problems/schema-missing"),))
        before = scrape(c).get(key, 0.0)
        assert_problem(c.get("/series/count"), 503, "/problems/schema-missing")
        assert_problem(c.get("/series"), 503, "/problems/schema-missing")
        assert_problem(c.get("/no/such/path"), 404)  # (a 4xx is not a server error)
        after = scrape(c)
        assert after[key] - before == 2
        assert requests(after, "count_series", 503) >= 1


# ------------------------------------------------------------------------------ access


@pytest.fixture(scope="module")
def guarded(make_database) -> Iterator[tuple[Any, dict[str, str]]]:
    """A client of an app whose database has tokens: an unscoped reader, a label-scoped one."""
    dsn = make_database()
    secrets = {
        "reader": using(dsn, lambda c: store.create(c, "reader", "read", {}, None)),
        "tenant": using(dsn, lambda c: store.create(c, "tenant", "read", {"tenant": "acme"}, None)),
    }
    app = create_app(Settings(dsn=dsn, validate_responses=True, auth="tokens"))
    with app.test_client(**LOCAL) as c:
        yield c, secrets


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_metrics_need_a_token_not_limited_by_labels(guarded):
    client, secrets = guarded
    assert_problem(client.get("/metrics"), 401)
    body = assert_problem(client.get("/metrics", headers=bearer(secrets["tenant"])), 403, "/problems/forbidden")
    assert "labels" in body["detail"]
    samples = scrape(client, headers=bearer(secrets["reader"]))
    # the refused scrapes are counted too (security runs inside the metrics middleware)
    assert requests(samples, "get_metrics", 401) >= 1
    assert requests(samples, "get_metrics", 403) >= 1
