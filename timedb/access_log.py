"""What each request did: its X-Request-ID, its metrics, and (TIMEDB_LOG_FORMAT=json) its log line.

`RequestObserver` is the outermost middleware of the app, so it sees every answer: problems
raised by security (401, 403) and validation (400), unknown paths (404), and the 500 that
Starlette's last-resort handler sends. It only looks at the `http.response.start` message:
bodies stream through untouched, and a streamed response is recorded when it ends (also when
the client went away mid-stream: with the status that was sent).
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from timedb import metrics, request_id
from timedb.request_id import RequestContext, RequestIdFilter

log = logging.getLogger("timedb")
access = logging.getLogger("timedb.access")

ROUTING = "connexion_routing"  # (Connexion's scope extension: operation_id once routed)
# paths the app serves outside the spec's operations (documentation, the web UI), by their first segment
DOC_PAGES = ("/docs", "/redoc", "/openapi.json", "/openapi.yaml", "/ui")


def operation_name(resolved: str | None, path: str) -> str:
    """The metrics label of a request: its operationId, "docs", or "unmatched" (no route)."""
    if resolved:
        # Connexion resolves `operationId` with its router controller (timedb.handlers.x.get_y)
        return _OPERATIONS.get(resolved) or _OPERATIONS.setdefault(resolved, resolved.rpartition(".")[2])
    return "docs" if path.startswith(DOC_PAGES) else "unmatched"


_OPERATIONS: dict[str, str] = {}


class RequestObserver:
    """Request id, metrics and the access log line of every HTTP request."""

    def __init__(self, app: Any, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        ctx = RequestContext(request_id.from_headers(scope["headers"]))
        token = request_id.begin(ctx)
        # routing copies the scope; a dict that exists before is shared with the copy, and
        # Connexion writes the operation into it
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        echo = (request_id.HEADER, ctx.request_id.encode("ascii"))
        status = 0

        async def send_(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self.app(scope, receive, send_)
        except BaseException:
            status = status or 500  # (a response already started keeps the status it was sent with)
            raise
        finally:
            seconds = time.perf_counter() - start
            routing = extensions.get(ROUTING)
            operation = operation_name(routing.get("operation_id") if routing else None, scope["path"])
            metrics.observe_request(operation, status, seconds, scope.get("state", {}).get("pool"))
            if self.access_log:
                self._log(scope, ctx, operation, status, seconds)
            request_id.end(token)

    @staticmethod
    def _log(scope: Any, ctx: RequestContext, operation: str, status: int, seconds: float) -> None:
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "operation": operation,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if ctx.rows is not None:
            fields["rows"] = ctx.rows
        fields["client"] = f"{client[0]}:{client[1]}" if client else None
        access.info(
            "%s %s %d", scope["method"], scope["path"], status, extra={"request_id": ctx.request_id, "access": fields}
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, msg, request_id, then the access line's fields
    (or the exception's traceback), then the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is None:
            rid = request_id.current_id()
        if rid is not None:
            out["request_id"] = rid
        fields = getattr(record, "access", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        out["logger"] = record.name
        return orjson.dumps(out).decode()


def configure(log_format: str) -> None:
    """Set up the log lines of the process for TIMEDB_LOG_FORMAT (text or json)."""
    if log_format == "json":
        _log_json()
    else:
        _log_like_uvicorn()


def _log_json() -> None:
    """timedb's and uvicorn's error lines as JSON on stderr; timedb's access line replaces
    uvicorn's (off), so each request is one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    for name in ("timedb", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").disabled = True
    access.disabled = False


def _log_like_uvicorn() -> None:
    """Give the `timedb` logger a handler in uvicorn's format, unless logging is configured
    (a --log-config, gunicorn's logger, a root handler): its aborted-response and 5xx lines
    are part of what an operator needs to see. Lines logged during a request end with its id."""
    if not any(isinstance(f, RequestIdFilter) for f in log.filters):
        log.addFilter(RequestIdFilter())  # (for formats of a logging configuration: %(request_id)s)
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:%(padding)s %(name)s: %(message)s%(request_suffix)s"))
    handler.addFilter(_Padding())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class _Padding(logging.Filter):
    """uvicorn's column: 'INFO:     ', 'WARNING:  '; and the request id, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.padding = " " * max(0, 8 - len(record.levelname))
        rid = getattr(record, "request_id", None) or request_id.current_id()
        record.request_suffix = f" [request {rid}]" if rid else ""
        return True
