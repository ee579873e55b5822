"""Limits on request bodies, applied before a byte of the body is read."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.datastructures import Headers

from timedb.errors import PayloadTooLarge, ServerBusy
from timedb.settings import Settings

# bodies above this size (or of unknown size) take turns: parsing one costs about its size
LARGE_BODY_BYTES = 1 << 20
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimits:
    """413 at once for a body that declares more than TIMEDB_MAX_BODY_BYTES; at most
    TIMEDB_MAX_LARGE_BODIES large bodies per process are read and handled at a time."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.max_bytes = settings.max_body_bytes
        self.slots = max(settings.max_large_bodies, 1)
        self.wait = settings.pool_timeout
        self._limiter: anyio.CapacityLimiter | None = None  # made on the server's event loop

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise PayloadTooLarge(
                f"The request body ({length} bytes) exceeds the server's limit of "
                f"{self.max_bytes} bytes (TIMEDB_MAX_BODY_BYTES)."
            )
        if length.isdigit() and int(length) <= LARGE_BODY_BYTES:
            await self.app(scope, receive, send)
            return
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        limiter = self._limiter
        try:
            with anyio.fail_after(self.wait):
                await limiter.acquire()
        except TimeoutError:
            raise ServerBusy(f"{self.slots} large request bodies are being handled; retry shortly.") from None
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.release()
