"""GET /metrics: the Prometheus metrics of every worker of this server."""

from __future__ import annotations

from starlette.responses import Response

from timedb import metrics
from timedb.db import tenant
from timedb.errors import Forbidden
from timedb.handlers.context import pool

LABEL_SCOPED = (
    "GET /metrics needs a token whose scope is not limited by labels: its numbers cover every "
    "tenant's requests. Use a read token created without --labels."
)


def get_metrics() -> Response:
    """The metrics in the Prometheus text format 0.0.4."""
    if tenant.current() is not None:
        raise Forbidden(LABEL_SCOPED)
    return Response(metrics.exposition(pool()), 200, media_type=metrics.CONTENT_TYPE)
