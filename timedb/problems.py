"""Render every error as RFC 9457 application/problem+json, in one place."""

from __future__ import annotations

import logging

from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.problem import problem

from timedb.errors import TimedbError

log = logging.getLogger("timedb")


def render_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Turn a TimedbError into a problem+json response."""
    assert isinstance(exc, TimedbError)
    if exc.status >= 500:
        # the cause (driver error) goes to the log only, never to the client
        cause = exc.__cause__
        log.error("%s: %s%s", type(exc).__name__, exc.detail,
                  f" (cause: {type(cause).__name__}: {str(cause).strip()[:500]})" if cause else "")
    return problem(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        type=exc.type,
        headers=exc.headers or None,
        ext=exc.extra or None,
    )


def render_unexpected(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Log an unexpected error and answer 500 without any internal detail."""
    log.error("unhandled error", exc_info=exc)
    return problem(
        status=500,
        title="Internal Server Error",
        detail="The server failed to handle this request; it has been logged.",
        type="/problems/internal",
    )
