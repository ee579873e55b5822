"""Access control: bearer tokens with scopes and label scopes, enforced by Connexion.

The spec declares `bearerAuth` (http bearer) and, per operation, the scope it needs
(`security: [{bearerAuth: [write]}]`). Connexion passes scopes to its own handlers only for
OAuth2, so `TokenSecurity` (registered for the bearer scheme through Connexion's security_map)
reads them from the spec itself and raises the 401/403 problems. Modes (TIMEDB_AUTH):

- `tokens`: every protected operation needs a token;
- `none`: no checks;
- unset (`auto`): while no token exists, loopback clients are served and others refused
  with a 403 that says how to create a token; once one exists, tokens are required.

The active tokens are kept in memory (`TokenCache`), reloaded when the database notifies a
change (timedb.db.tokens.Listener); while that listener is not connected, every check asks
the database, so a revoked token never works longer than a notification takes.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import anyio.to_thread
from connexion.security import BearerSecurityHandler

from timedb.db import caller, tenant
from timedb.db import tokens as store
from timedb.db.pool import Connection, Pool, connection
from timedb.errors import Forbidden, Unauthorized
from timedb.settings import Settings

log = logging.getLogger("timedb")

RANK = {"read": 1, "write": 2, "admin": 3}
# what an open server (TIMEDB_AUTH=none, or loopback while no token exists) grants
OPEN: dict[str, Any] = {"sub": None, "scope": "admin", "labels": {}}
# database look-ups per second for secrets the in-memory copy does not know (a token created
# a moment ago, before its notification); beyond that, unknown secrets are refused at once
MISS_LOOKUPS_PER_SECOND = 20
# the copy is used while the listener's last heartbeat is this recent (seconds); older, each
# request asks the database: a listener whose connection died silently lets nothing through
FRESH = 2.5 * store.HEARTBEAT

PROTECTED = (
    "This server has no access tokens yet, so it answers only clients on its own machine "
    "(loopback). Create a token on the server: `timedb tokens create NAME --scope read|write|admin`, "
    "then send it as `Authorization: Bearer <token>`; or set TIMEDB_AUTH=none to serve every "
    "client without tokens."
)
REBOUND = (
    "This server has no access tokens yet, so it answers only requests from its own machine that name it "
    "as localhost, 127.0.0.1 or [::1] (the Host header); this one names another host (a page of another "
    "site, or a proxy on this machine). Create a token with `timedb tokens create NAME --scope "
    "read|write|admin` and send it as `Authorization: Bearer <token>`."
)
MISSING = (
    "This request needs an access token: send `Authorization: Bearer <token>` "
    "(tokens are made with `timedb tokens create NAME --scope read|write|admin`)."
)
INVALID = "The access token is not valid: unknown, revoked or expired."


class TokenCache:
    """The active tokens of the database, by secret hash, kept current by notifications."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.by_hash: dict[bytes, store.Token] = {}
        self.loaded = False  # the copy is complete and a listener keeps it so ...
        self.fresh_until = 0.0  # ... as long as its connection answered recently (monotonic)
        self.used: dict[bytes, datetime] = {}
        self.lock = threading.Lock()
        self.window = (0.0, 0)  # (second, database look-ups of unknown secrets in it)

    # --- kept current by the listener thread

    @property
    def synced(self) -> bool:
        return self.loaded and time.monotonic() < self.fresh_until

    def reload(self, conn: Connection) -> None:
        found = store.active(conn)
        self.by_hash = {t.secret_hash: t for t in found or []}
        self.loaded = True
        self.alive()

    def alive(self) -> None:
        self.fresh_until = time.monotonic() + FRESH

    def lost(self) -> None:
        self.loaded = False

    def flush(self, conn: Connection) -> None:
        with self.lock:
            used, self.used = self.used, {}
        store.mark_used(conn, used)  # (a failure here is a lost connection: the listener's to handle)

    # --- asked by requests

    def touch(self, token: store.Token) -> None:
        with self.lock:
            self.used[token.secret_hash] = datetime.now(UTC)

    def any_active_in_memory(self) -> bool | None:
        """Whether an active token exists, from the copy; None when the copy is not trusted."""
        if not self.synced:
            return None
        if not self.by_hash:
            return False
        now = datetime.now(UTC)
        return any(t.expires_at is None or t.expires_at > now for t in self.by_hash.values())

    async def any_active_in_database(self) -> bool:
        return bool(await anyio.to_thread.run_sync(self._any_in_database))

    async def lookup(self, secret: str) -> store.Token | None:
        digest = store.digest(secret)
        token = self.by_hash.get(digest) if self.synced else None
        if token is None and (not self.synced or self._may_look_up()):
            token = await anyio.to_thread.run_sync(self._find_in_database, digest)
        if token is None or not hmac.compare_digest(token.secret_hash, digest):
            return None
        if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
            return None
        return token

    def _may_look_up(self) -> bool:
        second = float(int(time.monotonic()))
        with self.lock:
            start, count = self.window
            if start != second:
                start, count = second, 0
            self.window = (start, count + 1)
            return count < MISS_LOOKUPS_PER_SECOND

    def _find_in_database(self, digest: bytes) -> store.Token | None:
        with connection(self.pool) as conn:
            return store.find(conn, digest)

    def _any_in_database(self) -> bool:
        with connection(self.pool) as conn:
            return bool(store.active(conn))


def start(pool: Pool, settings: Settings) -> tuple[TokenCache, store.Listener | None]:
    """The token cache of a server process and the listener that keeps it current."""
    cache = TokenCache(pool)
    if settings.auth == "none":
        return cache, None
    listener = store.Listener(settings.dsn, changed=cache.reload, lost=cache.lost, flush=cache.flush, alive=cache.alive)
    listener.start()
    return cache, listener


@lru_cache(maxsize=1024)
def names_this_machine(host: str | None) -> bool:
    """The Host header names the loopback interface (localhost, 127.x.x.x, [::1]), with any
    port. A page of another site that reaches the server through DNS rebinding sends its own
    name instead, and a local proxy that forwards a public name is no local client either."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback(client: Any) -> bool:
    return bool(client) and _loopback_address(str(client[0]))


@lru_cache(maxsize=1024)
def _loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def authorize(request: Any, needed: str) -> dict[str, Any]:
    """The caller of a protected operation (token_info), or a 401/403 problem."""
    state = request.scope.get("state", {})
    settings: Settings = state["settings"]
    tenant.set_current(None)
    caller.set_name(None)
    if settings.auth == "none":
        return OPEN
    cache: TokenCache = state["tokens"]
    header = request.headers.get("authorization")
    if not header:
        active = cache.any_active_in_memory() if settings.auth == "auto" else True
        if active is None:
            active = await cache.any_active_in_database()
        if not active:
            if is_loopback(request.scope.get("client")):
                if names_this_machine(request.headers.get("host")):
                    return OPEN
                raise Forbidden(REBOUND)
            raise Forbidden(PROTECTED)
        raise Unauthorized(MISSING)
    kind, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if kind.lower() != "bearer" or not secret:
        raise Unauthorized("Send the token as `Authorization: Bearer <token>`.")
    token = await cache.lookup(secret)
    if token is None:
        raise Unauthorized(INVALID)
    if RANK[token.scope] < RANK[needed]:
        raise Forbidden(
            f"This operation needs a token with scope {needed}; the token {token.name!r} has scope {token.scope}."
        )
    tenant.set_current(token.labels or None)
    caller.set_name(token.name)
    cache.touch(token)
    return {"sub": token.name, "scope": token.scope, "labels": token.labels}


class TokenSecurity(BearerSecurityHandler):  # type: ignore[misc]
    """Connexion's handler for the bearer scheme, with the operation's scope and our modes."""

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: list[str]) -> Any:
        needed = max(required_scopes or ["read"], key=lambda s: RANK.get(s, 3))

        async def verify(request: Any) -> dict[str, Any]:
            return await authorize(request, needed)

        return verify


SECURITY_MAP = {"bearer": TokenSecurity}
