"""Writes that a client may retry: the Idempotency-Key header of POST and PUT /values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from connexion import request
from starlette.responses import Response

from timedb import media_types, metrics
from timedb.db import idempotency, tenant
from timedb.db.pool import Connection, in_transaction
from timedb.handlers.context import pool, settings
from timedb.validation import FINGERPRINT_KEY, IDEMPOTENCY_HEADER


def respond_once(work: Callable[[Connection], Any], headers: dict[str, str] | None = None) -> Response:
    """Run a write in one transaction and answer with its JSON result.

    With an Idempotency-Key, the key is claimed in the same transaction: a retry of the
    same request (same method, path and body) within TIMEDB_IDEMPOTENCY_TTL gets the first
    answer again (header `Idempotent-Replayed: true`) and stores nothing; a failed request
    stores no key, so its retry runs again.
    """
    key = tenant.namespaced(request.headers.get(IDEMPOTENCY_HEADER))  # (one tenant never replays another's)
    fingerprint = request.scope.get("state", {}).get(FINGERPRINT_KEY, b"")
    ttl = settings().idempotency_ttl

    def transaction(conn: Connection) -> tuple[int, bytes, bool]:
        if key is not None:
            replay = idempotency.claim(conn, key, fingerprint, ttl)
            if replay is not None:
                return replay.status, replay.body, True
        result = work(conn)
        stored[0] = result.get("rows_inserted") or len(result.get("updated") or ()) if isinstance(result, dict) else 0
        # orjson prints aware datetimes as isoformat() does; Connexion would encode with the stdlib
        body = orjson.dumps(result)
        if key is not None:
            idempotency.save(conn, key, 200, body)
        return 200, body, False

    stored = [0]  # rows the (last) attempt stored: counted once it committed, never for a replay
    status, body, replayed = in_transaction(pool(), transaction)
    if not replayed and stored[0]:
        metrics.rows_written(stored[0])
    return Response(
        body,
        status,
        media_type=media_types.JSON,
        headers={**(headers or {}), **({"Idempotent-Replayed": "true"} if replayed else {})} or None,
    )
