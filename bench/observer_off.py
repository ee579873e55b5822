"""The app with timedb.access_log.RequestObserver passing requests through untouched: the
"without" side of bench/observer.sh (request ids, metrics and access lines cost per request)."""

from typing import Any

from timedb import access_log


async def _passthrough(self: access_log.RequestObserver, scope: Any, receive: Any, send: Any) -> None:
    await self.app(scope, receive, send)


access_log.RequestObserver.__call__ = _passthrough  # type: ignore[method-assign]

from timedb.api import app  # noqa: E402

__all__ = ["app"]
