"""create_app(settings): the Connexion AsyncApp with its pool, errors and doc pages."""

from __future__ import annotations

import copy
import logging
import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.to_thread

with warnings.catch_warnings():
    # connexion imports starlette.testclient, which warns about httpx on every start
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from connexion import AsyncApp
    from connexion.middleware import MiddlewarePosition
    from connexion.options import SwaggerUIOptions
import yaml
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from timedb import access_log, auth, metrics, spec_document, web_headers
from timedb.db.pool import check_database, make_pool, open_pool, redact
from timedb.db.replica import Replica
from timedb.errors import ConfigError, TimedbError
from timedb.handlers.streaming import install_quiet_abort
from timedb.limits import BodyLimits
from timedb.problems import CONNEXION_ERRORS, render_connexion_problem, render_problem, render_unexpected
from timedb.settings import Settings
from timedb.validation import validator_map

log = logging.getLogger("timedb")


def spec_path() -> Path:
    """openapi/timedb.yaml: packaged in wheels, at the repository top in a checkout."""
    packaged = resources.files("timedb").joinpath("openapi", "timedb.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "openapi" / "timedb.yaml"


@cache
def _parsed_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster than pure Python
    spec: dict[str, Any] = yaml.load(spec_path().read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    return spec


def spec_dict() -> dict[str, Any]:
    """The spec as a dict of its own (parsed once per process; Connexion may change what it gets)."""
    return copy.deepcopy(_parsed_spec())


# seconds the server waits at start for its first database connection
STARTUP_TIMEOUT = 10.0


class StartupError(RuntimeError):
    """The server cannot start (e.g. the database is unreachable)."""


class QuietStartupFailure:
    """Report a StartupError to the ASGI server as its one-line message, not a traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                text = message.get("message", "")
                marker = f"{__name__}.StartupError: "
                if marker in text:
                    message = {**message, "message": text.split(marker, 1)[1].strip()}
            await send(message)

        await self.app(scope, receive, send_)


def make_lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        pool = make_pool(settings)
        try:
            tables = await anyio.to_thread.run_sync(check_database, settings.dsn)
            await anyio.to_thread.run_sync(open_pool, pool, STARTUP_TIMEOUT)
        except TimedbError as exc:
            pool.close()
            where = redact(settings.dsn)
            raise StartupError(f"timedb: cannot connect to the database at {where}: {exc.detail}") from None
        if not tables:
            log.warning(
                "The database at %s has no timedb tables: run `timedb create tables` "
                "(until then requests that need them answer 503).",
                redact(settings.dsn),
            )
        try:
            replica = await anyio.to_thread.run_sync(start_replica, settings)
        except StartupError:
            await anyio.to_thread.run_sync(pool.close)
            raise
        metrics.refresh_pool(pool)  # (in multiprocess mode a scrape shows this worker's pool at once)
        tokens, listener = auth.start(pool, settings)
        try:
            yield {"pool": pool, "replica": replica, "settings": settings, "tokens": tokens}
        finally:
            if listener is not None:
                await anyio.to_thread.run_sync(listener.stop)
            if replica is not None:
                await anyio.to_thread.run_sync(replica.close)
            await anyio.to_thread.run_sync(pool.close)

    return lifespan


def start_replica(settings: Settings) -> Replica | None:
    """The read replica of TIMEDB_READ_DSN, checked once; None when none is configured. An
    unreachable replica does not stop the start (reads use the primary until it answers); a
    malformed DSN does."""
    if settings.read_dsn is None:
        return None
    try:
        replica = Replica(settings)
    except ConfigError as exc:
        raise StartupError(f"timedb: {exc}") from None
    replica.start()
    return replica


@cache
def _static(*path: str) -> bytes:
    return resources.files("timedb").joinpath("static", *path).read_bytes()


async def redoc_page(_request: Request) -> Response:
    """ReDoc, served from the package (no CDN)."""
    return Response(_static("redoc", "index.html"), media_type="text/html")


async def redoc_bundle(_request: Request) -> Response:
    return Response(
        _static("redoc", "redoc.standalone.js"),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


# the web UI's files (timedb/static/ui) by their path under /ui/, with their media types
_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
UI_FILES = {
    "": "text/html; charset=utf-8",  # index.html
    "ui.css": _CSS,
    **dict.fromkeys(["main.js", "api.js", "page.js", "browse.js", "view.js", "chart.js", "csv.js"], _JS),
    "vendor/uplot/uPlot.iife.min.js": _JS,
    "vendor/uplot/uPlot.min.css": _CSS,
}


def ui_file(name: str, media_type: str) -> Any:
    """The endpoint of one file of the web UI (no-cache: a new version of the server is seen at once)."""

    async def endpoint(_request: Request) -> Response:
        body = _static("ui", *(name or "index.html").split("/"))
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return endpoint


async def ui_redirect(request: Request) -> Response:
    """/ui -> /ui/ (the page names its files and the API relative to itself)."""
    return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/ui/", status_code=307)


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class AllowHeader:
    """Starlette lists only the first matching route's methods in a 405's Allow header
    (Connexion adds one route per operation); set it from the spec instead."""

    def __init__(self, app: Any) -> None:
        self.app = app
        spec = _parsed_spec()
        self.allowed: dict[str, bytes] = {}
        self.templated: list[tuple[re.Pattern[str], bytes]] = []  # /series/{series_id}
        for path, item in spec["paths"].items():
            methods = {m.upper() for m in item if m in HTTP_METHODS}
            if "GET" in methods:
                methods.add("HEAD")
            allow = ", ".join(sorted(methods)).encode()
            if "{" in path:
                pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^}/]+\}", path))
                self.templated.append((re.compile(pattern), allow))
            else:
                self.allowed[path] = allow

    def _allow(self, path: str) -> bytes | None:
        if path in self.allowed:
            return self.allowed[path]
        return next((allow for pattern, allow in self.templated if pattern.fullmatch(path)), None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        allow = self._allow(scope.get("path", "")) if scope["type"] == "http" else None
        if allow is None:
            await self.app(scope, receive, send)
            return

        async def send_(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, send_)


def create_app(settings: Settings) -> AsyncApp:
    """The timedb ASGI application for these settings (connects only at startup)."""
    app = AsyncApp(
        __name__,
        lifespan=make_lifespan(settings),
        validator_map=validator_map(settings.max_body_bytes, settings.client_timeout),
        security_map=auth.SECURITY_MAP,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/docs", spec_path="/openapi.json"),
        # outermost: request id, metrics and access log cover every answer (timedb.access_log)
        middlewares=[
            partial(access_log.RequestObserver, access_log=settings.log_format == "json"),
            *spec_document.middlewares(),
        ],
    )
    app.add_middleware(QuietStartupFailure, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(AllowHeader, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(BodyLimits, position=MiddlewarePosition.BEFORE_VALIDATION, settings=settings)
    web_headers.install(app, settings)
    app.add_url_rule("/redoc", "redoc", redoc_page)
    app.add_url_rule("/redoc-static/redoc.standalone.js", "redoc_bundle", redoc_bundle)
    app.add_url_rule("/ui", "ui", ui_redirect)
    for name, media_type in UI_FILES.items():
        app.add_url_rule(f"/ui/{name}", f"ui/{name}", ui_file(name, media_type))
    app.add_api(
        spec_dict(),
        base_path="",
        strict_validation=True,
        validate_responses=settings.validate_responses,
    )
    app.add_error_handler(TimedbError, render_counted_problem)
    for connexion_error in CONNEXION_ERRORS:
        app.add_error_handler(connexion_error, render_connexion_problem)
    app.add_error_handler(Exception, render_unexpected)
    install_quiet_abort()
    access_log.configure(settings.log_format)
    return app


def render_counted_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """render_problem, counting the 5xx ones (timedb_database_errors_total)."""
    if isinstance(exc, TimedbError) and exc.status >= 500:
        metrics.server_error(exc.type)
    return render_problem(request, exc)
