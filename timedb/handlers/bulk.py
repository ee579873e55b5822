"""POST /values/bulk: rows for many series in one request (JSON, NDJSON, CSV or Arrow)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from timedb import bulk_formats
from timedb.bulk_columns import RowColumns
from timedb.db import bulk
from timedb.db.pool import Connection
from timedb.errors import InvalidInput
from timedb.handlers.context import body
from timedb.handlers.idempotent import respond_once
from timedb.points import Rows


def insert_bulk(
    workflow_id: str | None = None,
    batch_params: str | None = None,
    unit: str | None = None,
    skip_unchanged: bool | None = None,
) -> Response:
    """Store rows of many series in one transaction: all or nothing."""
    query = {"workflow_id": workflow_id, "batch_params": batch_params, "unit": unit, "skip_unchanged": skip_unchanged}
    req = body()
    columns: RowColumns
    if isinstance(req, bulk_formats.RawBody):
        columns = bulk_formats.read(req)  # parsed and checked here, in the handler's thread
        meta = bulk_formats.metadata(query)
    else:
        given = [name for name, value in query.items() if value is not None]
        if given:
            raise InvalidInput(
                f"With a JSON body, give {', '.join(given)} in the body, not as query parameters "
                "(those are for NDJSON, CSV and Arrow bodies).",
                query=given[0],
            )
        rows: Rows = req["rows"]  # decoded and checked by the body validator
        columns = rows.columns
        meta = req
    start_time = datetime.now(UTC)

    def work(conn: Connection) -> dict[str, Any]:
        loaded = bulk.load(
            conn,
            columns,
            unit=meta.get("unit"),
            skip_unchanged=bool(meta.get("skip_unchanged")),
            workflow_id=meta.get("workflow_id", "api-workflow"),
            batch_params=meta.get("batch_params"),
            start_time=start_time,
        )
        return {"rows_inserted": loaded.rows_inserted, "rows_skipped": loaded.rows_skipped, "batches": loaded.batches}

    return respond_once(work)
