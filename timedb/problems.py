"""Render every error as RFC 9457 application/problem+json, in one place."""

from __future__ import annotations

import logging
import re

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.problem import problem
from starlette.exceptions import HTTPException

from timedb.errors import TimedbError

log = logging.getLogger("timedb")


_CONTROL = re.compile("[\x00-\x1f\x7f\u2028\u2029]")


def one_line(text: str) -> str:
    """A detail on one line: control characters a client sent (a label key with a newline,
    quoted in a message) shown as \\uXXXX escapes."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def render_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Turn a TimedbError into a problem+json response."""
    assert isinstance(exc, TimedbError)
    if exc.status >= 500:
        # the cause (driver error) goes to the log only, never to the client
        cause = exc.__cause__
        log.error(
            "%s: %s%s",
            type(exc).__name__,
            exc.detail,
            f" (cause: {type(cause).__name__}: {str(cause).strip()[:500]})" if cause else "",
        )
    return problem(
        status=exc.status,
        title=exc.title,
        detail=one_line(exc.detail),
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


# Connexion's and Starlette's own errors (no route, wrong method, wrong media type, and any 400
# a validator of theirs raises) get timedb problem types instead of about:blank
CONNEXION_ERRORS = (ProblemException, HTTPException)
_TYPES = {
    400: ("/problems/schema-violation", "Bad Request"),  # (their validators' refusals)
    404: ("/problems/not-found", "Not Found"),
    405: ("/problems/method-not-allowed", "Method Not Allowed"),
    415: ("/problems/unsupported-media-type", "Unsupported Media Type"),
}
_DETAILS = {
    404: "No operation at this path: GET / and /docs list them.",
    405: "The path exists but not with this method: the Allow header lists its methods.",
}


def render_connexion_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """A Connexion ProblemException or Starlette HTTPException as a timedb problem."""
    if isinstance(exc, ProblemException):
        status, detail, headers = exc.status, exc.detail, exc.headers
    else:
        assert isinstance(exc, HTTPException)
        status, detail, headers = exc.status_code, exc.detail, exc.headers
    if status >= 500:  # (a response that broke the spec, ...): logged, never described to the client
        log.error("%s: %s", type(exc).__name__, detail)
        return (
            render_unexpected(_request, exc)
            if status == 500
            else problem(
                status=status,
                title=getattr(exc, "title", "") or "Error",
                detail="The server could not answer.",
                type=f"/problems/http-{status}",
            )
        )
    type_, title = _TYPES.get(status, (f"/problems/http-{status}", getattr(exc, "title", "") or "Error"))
    detail = _DETAILS.get(status, detail or title)
    # (our validators raise timedb errors; what Connexion itself refuses is the body: a form
    # without its multipart boundary, ...)
    ext = {"errors": [{"in": "body", "pointer": "", "message": detail}]} if status == 400 else None
    return problem(status=status, title=title, detail=one_line(detail), type=type_, headers=headers or None, ext=ext)
