"""The served spec (/openapi.json, /openapi.yaml) with a usable `servers` entry.

Connexion serves the spec with `servers: [{url: <root path>}]`; with no root path that is
`[{url: ''}]`, an empty entry in Swagger UI's server list. This serves `/` instead (and the
root path when there is one, e.g. behind a proxy: `--root-path /timedb`).
"""

from __future__ import annotations

from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIAPI, SwaggerUIMiddleware
from starlette.requests import Request


class _SpecAPI(SwaggerUIAPI):  # type: ignore[misc]
    def _spec_for_prefix(self, request: Request) -> dict[str, Any]:
        base_path = self._base_path_for_prefix(request)
        spec: dict[str, Any] = self.specification.with_base_path(base_path).spec
        return spec if base_path else {**spec, "servers": [{"url": "/"}]}


class SpecAndDocs(SwaggerUIMiddleware):  # type: ignore[misc]
    """Connexion's SwaggerUIMiddleware serving the spec through _SpecAPI."""

    def add_api(
        self, specification: Any, base_path: str | None = None, arguments: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        api = _SpecAPI(specification, base_path=base_path, arguments=arguments, default=self.default_fn, **kwargs)
        self.router.mount(api.base_path, app=api.router)


def middlewares() -> list[Any]:
    """Connexion's middleware stack with SpecAndDocs in place of SwaggerUIMiddleware."""
    from connexion.middleware.main import ConnexionMiddleware

    return [SpecAndDocs if m is SwaggerUIMiddleware else m for m in ConnexionMiddleware.default_middlewares]
