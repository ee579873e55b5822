"""GET /, /healthz, /readyz."""

from __future__ import annotations

from html import escape
from typing import Any

from connexion import request

from timedb import __version__, media_types
from timedb.db.pool import in_transaction
from timedb.db.schema import schema_present
from timedb.errors import SchemaMissing
from timedb.formats.negotiate import prefers
from timedb.handlers.context import pool, replica
from timedb.media_types import HTML, JSON_HEADERS

JSON = JSON_HEADERS

ENDPOINTS = {
    "insert_values": "POST /values - Insert time series data",
    "read_values": "GET /values - Read time series values",
    "update_records": "PUT /values - Update existing records",
    "create_series": "POST /series - Create a new time series",
    "list_series": "GET /series - List/filter time series",
    "series_labels": "GET /series/labels - List unique label values",
    "series_count": "GET /series/count - Count matching series",
}


# the other things a server offers, as Link relations (RFC 8288; RFC 8631's service-desc and
# service-doc), and as the page a browser gets
LINKS = (
    ("/healthz", "health", "liveness probe"),
    ("/readyz", "readiness", "readiness probe"),
    ("/metrics", "metrics", "Prometheus metrics"),
    ("/openapi.json", "service-desc", "the OpenAPI spec"),
    ("/docs", "service-doc", "Swagger UI"),
    ("/redoc", "describedby", "ReDoc"),
)


def get_api_info() -> tuple[Any, int, dict[str, str]]:
    """API information and the endpoint list (the reference's document), with a Link header
    naming the probes, metrics, spec and doc pages; a browser gets the same as a page."""
    info = {
        "name": "TimeDB API",
        "version": __version__,
        "description": "REST API for reading and writing time series data",
        "endpoints": ENDPOINTS,
        "admin_note": "Schema creation/deletion must be done through CLI or SDK, not through the API.",
    }
    root = request.scope.get("root_path", "").rstrip("/")
    link = ", ".join(f'<{root}{path}>; rel="{rel}"' for path, rel, _ in LINKS)
    if _prefers_html(request.headers.get("accept")):
        return _page(info, root), 200, {"Content-Type": HTML, "Link": link}
    return info, 200, {**JSON, "Link": link}


def _prefers_html(accept: str | None) -> bool:
    """True when the client ranks text/html above JSON (a browser); curl's */* gets JSON."""
    if not accept or "html" not in accept:
        return False
    return prefers(accept, HTML, over=media_types.JSON)


def _page(info: dict[str, Any], root: str) -> str:
    links = "".join(
        f'<li><a href="{escape(root + path)}">{escape(path)}</a> {escape(what)}</li>' for path, _, what in LINKS
    )
    endpoints = "".join(f"<li>{escape(text)}</li>" for text in info["endpoints"].values())
    return (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{escape(info["name"])}</title>'
        f"<h1>{escape(info['name'])} {escape(info['version'])}</h1><p>{escape(info['description'])}</p>"
        f"<ul>{links}</ul><h2>Endpoints</h2><ul>{endpoints}</ul><p>{escape(info['admin_note'])}</p></html>"
    )


async def get_health() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The process is up: answered on the event loop, without the thread pool or the database."""
    return {"status": "ok"}, 200, JSON


def get_readiness() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The database answers and the timedb tables exist; with a read replica, its state as its
    monitor last saw it (never a wait on a replica that is away: reads do without it)."""
    if not in_transaction(pool(), schema_present):
        raise SchemaMissing()
    ready: dict[str, Any] = {"status": "ready"}
    if (read_replica := replica()) is not None:
        ready["replica"] = read_replica.report()
    return ready, 200, JSON
