"""GET /, /healthz, /readyz."""

from __future__ import annotations

from typing import Any

from timedb import __version__
from timedb.db.pool import in_transaction
from timedb.db.schema import schema_present
from timedb.errors import SchemaMissing
from timedb.handlers.context import pool

JSON = {"Content-Type": "application/json"}

ENDPOINTS = {
    "insert_values": "POST /values - Insert time series data",
    "read_values": "GET /values - Read time series values",
    "update_records": "PUT /values - Update existing records",
    "create_series": "POST /series - Create a new time series",
    "list_series": "GET /series - List/filter time series",
    "series_labels": "GET /series/labels - List unique label values",
    "series_count": "GET /series/count - Count matching series",
}


def get_api_info() -> tuple[dict[str, Any], int, dict[str, str]]:
    """API information and the endpoint list."""
    return {
        "name": "TimeDB API",
        "version": __version__,
        "description": "REST API for reading and writing time series data",
        "endpoints": ENDPOINTS,
        "admin_note": "Schema creation/deletion must be done through CLI or SDK, not through the API.",
    }, 200, JSON


async def get_health() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The process is up: answered on the event loop, without the thread pool or the database."""
    return {"status": "ok"}, 200, JSON


def get_readiness() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The database answers and the timedb tables exist."""
    if not in_transaction(pool(), schema_present):
        raise SchemaMissing()
    return {"status": "ready"}, 200, JSON
