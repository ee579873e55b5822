"""Prometheus metrics of the server (GET /metrics).

One process (uvicorn, `timedb api`): the metrics live in this process. Under gunicorn with
`timedb.workers.UvicornWorker`, the master sets PROMETHEUS_MULTIPROC_DIR before any worker
imports prometheus_client, each worker writes its numbers to files there, and a scrape
(answered by any one worker) merges the files of every worker, living or dead.

Labels stay bounded: `operation` is an operationId of the spec (or "docs", "unmatched"),
`status` an HTTP status, `type` a problem type; never a path or anything a client chooses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.metrics import disable_created_metrics

from timedb import request_id

# prometheus_client chose how to store values when it was first imported: in files shared by
# the processes when PROMETHEUS_MULTIPROC_DIR was set then, else in this process's memory
MULTIPROCESS = values.ValueClass is not values.MutexValue
# the text format GET /metrics answers with (what Prometheus asks for by default)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# `*_created` series (start times of counters) are noise here, and absent in multiprocess mode
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "timedb_requests", "Requests answered, by operation and status.", ["operation", "status"], registry=REGISTRY
)
DURATION = Histogram(
    "timedb_request_duration_seconds",
    "Time from the request's arrival to the end of its response (streamed bodies included).",
    ["operation"],
    registry=REGISTRY,
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
)
ROWS_WRITTEN = Counter(
    "timedb_rows_written",
    "Rows of values stored by writes (POST /values, POST /values/bulk, PUT /values).",
    registry=REGISTRY,
)
ROWS_READ = Counter(
    "timedb_rows_read", "Rows of values sent by reads (GET /values, POST /values/query).", registry=REGISTRY
)
DATABASE_ERRORS = Counter(
    "timedb_database_errors",
    "Requests that failed on the server side (5xx problems), by problem type.",
    ["type"],
    registry=REGISTRY,
)
# per worker, summed over the living workers (a dead worker's numbers are dropped)
POOL_SIZE = Gauge(
    "timedb_pool_size",
    "Database connections held by the pools (in use or idle).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_AVAILABLE = Gauge(
    "timedb_pool_available", "Idle database connections in the pools.", registry=REGISTRY, multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "timedb_pool_requests_waiting",
    "Requests waiting for a database connection.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

# the children of the labelled metrics, by label values: `labels()` costs more than the update
_requests: dict[tuple[str, int], Callable[[], None]] = {}
_durations: dict[str, Callable[[float], None]] = {}
# in multiprocess mode each worker refreshes its pool gauges at most this often (seconds),
# when it answers a request, so that a scrape answered by another worker sees recent numbers
POOL_REFRESH = 1.0
_pool_refreshed = 0.0


def observe_request(operation: str, status: int, seconds: float, pool: Any = None) -> None:
    """Count one answered request."""
    try:
        _requests[(operation, status)]()
    except KeyError:
        _requests[(operation, status)] = REQUESTS.labels(operation, str(status)).inc
        _requests[(operation, status)]()
    try:
        _durations[operation](seconds)
    except KeyError:
        _durations[operation] = DURATION.labels(operation).observe
        _durations[operation](seconds)
    if MULTIPROCESS and pool is not None:
        global _pool_refreshed
        now = time.monotonic()
        if now - _pool_refreshed >= POOL_REFRESH:
            _pool_refreshed = now
            refresh_pool(pool)


def rows_written(count: int) -> None:
    """Rows a write stored (also noted for the request's access log line)."""
    ROWS_WRITTEN.inc(count)
    request_id.add_rows(count)


def rows_read(count: int) -> None:
    """Rows a read sent, counted once per response (also noted for its access log line)."""
    ROWS_READ.inc(count)
    request_id.add_rows(count)


def server_error(problem_type: str) -> None:
    """A request failed with a 5xx problem of this type."""
    DATABASE_ERRORS.labels(problem_type).inc()


def refresh_pool(pool: Any) -> None:
    """Copy the pool's current numbers (psycopg_pool's get_stats) into the gauges."""
    stats = pool.get_stats()
    POOL_SIZE.set(stats.get("pool_size", 0))
    POOL_AVAILABLE.set(stats.get("pool_available", 0))
    POOL_WAITING.set(stats.get("requests_waiting", 0))


def exposition(pool: Any) -> bytes:
    """Every metric in the text format, merged over the workers in multiprocess mode."""
    refresh_pool(pool)
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return generate_latest(merged)
