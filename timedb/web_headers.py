"""Browser-facing headers: CORS (TIMEDB_CORS_ORIGINS) and security headers on HTML pages."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources
from typing import Any

from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIConfig
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.templating import Jinja2Templates

from timedb.settings import Settings

# beyond the CORS-safelisted ones: what a browser script may send, and may read in an answer
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "OPTIONS")
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID")
CORS_EXPOSED_HEADERS = ("Link", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate", "X-Request-ID")

# every response: a browser never guesses a type (a JSON or CSV body is never run as HTML)
ALL_RESPONSES = {"X-Content-Type-Options": "nosniff"}
NOSNIFF = (b"x-content-type-options", b"nosniff")
# HTML pages only (with a CSP): no framing (clickjacking), no Referer from the doc pages
HTML_PAGES = {"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
# no network outside this server, no framing, no <base> or plugin tricks; inline scripts
# (Swagger UI and ReDoc each start from one) are allowed by their hashes, never by
# 'unsafe-inline'. Measured in headless Chromium: Swagger UI needs its stylesheet, one inline
# <style> and data: images; ReDoc inserts <style> elements at run time (so 'unsafe-inline'),
# uses data: images and runs its search index in a worker made from a blob: URL.
BASE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
SWAGGER_POLICY = (
    BASE_POLICY + "; script-src 'self' {scripts}; style-src 'self' {styles}; img-src 'self' data:; connect-src 'self'"
)
REDOC_POLICY = (
    BASE_POLICY + "; script-src 'self' {scripts}; style-src 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:"
)

# the web UI (/ui/): its own files only, no inline script or style at all (uPlot sets styles
# through the DOM, which CSP allows), and the API of this server
UI_POLICY = BASE_POLICY + "; script-src 'self'; style-src 'self'; connect-src 'self'"


def inline_hashes(html: str, tag: str) -> str:
    """CSP sources ('sha256-...') allowing exactly the inline <script> or <style> elements of a page."""
    pattern = rf"<{tag}(?![^>]*\bsrc=)[^>]*>(.*?)</{tag}>"
    bodies = re.findall(pattern, html, flags=re.DOTALL | re.IGNORECASE)
    digests = (hashlib.sha256(body.encode()).digest() for body in bodies)
    return " ".join(f"'sha256-{base64.b64encode(d).decode()}'" for d in digests)


@cache
def redoc_policy() -> str:
    html = resources.files("timedb").joinpath("static", "redoc", "index.html").read_text(encoding="utf-8")
    return REDOC_POLICY.format(scripts=inline_hashes(html, "script"))


class SecurityHeaders:
    """Add nosniff to every response, and a CSP and anti-framing headers to HTML pages; only
    the headers of `http.response.start` change, bodies stream through untouched."""

    def __init__(self, app: Any, swagger: SwaggerUIConfig) -> None:
        self.app = app
        self.docs_path = swagger.swagger_ui_path.rstrip("/")
        self.docs_pages = {self.docs_path + "/", self.docs_path + "/index.html"}
        self.templates = Jinja2Templates(directory=str(swagger.swagger_ui_template_dir))
        self.swagger = swagger
        self.swagger_policies: dict[str, str] = {}  # by root path (the ASGI server's setting)

    def swagger_policy(self, root_path: str) -> str:
        """The CSP for Swagger UI's page, rendered as Connexion renders it (its inline start
        script names the spec URL, which includes the root path)."""
        if root_path in self.swagger_policies:
            return self.swagger_policies[root_path]
        context = {
            "openapi_spec_url": root_path + self.swagger.openapi_spec_path,
            **self.swagger.swagger_ui_template_arguments,
        }
        if self.swagger.swagger_ui_config:
            context["configUrl"] = "swagger-ui-config.json"
        html = self.templates.get_template("index.j2").render(context)
        policy = SWAGGER_POLICY.format(scripts=inline_hashes(html, "script"), styles=inline_hashes(html, "style"))
        if len(self.swagger_policies) < 8:
            self.swagger_policies[root_path] = policy
        return policy

    def policy(self, scope: Any) -> str:
        root_path = scope.get("root_path", "")
        path = scope["path"][len(root_path) :] if scope["path"].startswith(root_path) else scope["path"]
        if path == "/redoc":
            return redoc_policy()
        if path == "/ui/":
            return UI_POLICY
        if path in self.docs_pages:
            return self.swagger_policy(root_path.rstrip("/"))
        return BASE_POLICY  # any other HTML (e.g. Swagger UI's unused oauth2-redirect.html)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_(message: Any) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", ()))
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in raw)
                if not html and not any(k.lower() == NOSNIFF[0] for k, _ in raw):
                    # (the API's answers, by far the most: one header appended, no parsing)
                    message = {**message, "headers": [*raw, NOSNIFF]}
                else:
                    message.setdefault("headers", [])
                    headers = MutableHeaders(scope=message)
                    headers.update(ALL_RESPONSES)
                    if html:
                        headers.update(HTML_PAGES)
                        headers["content-security-policy"] = self.policy(scope)
            await send(message)

        await self.app(scope, receive, send_)


def install(app: Any, settings: Settings) -> None:
    """Add the middleware for these settings to the Connexion app."""
    # both sit outside Connexion's exception handling, routing and security: error answers get
    # the headers too, and a CORS preflight (which carries no token) is answered before security
    swagger = SwaggerUIConfig(app.middleware.options.swagger_ui_options, oas_version=(3, 0, 0))
    app.add_middleware(SecurityHeaders, position=MiddlewarePosition.BEFORE_EXCEPTION, swagger=swagger)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            allow_origins=["*"] if "*" in settings.cors_origins else list(settings.cors_origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )
