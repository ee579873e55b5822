"""Configuration, read once from the environment and ./.env."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from timedb.errors import ConfigError

# the largest request body by default (TIMEDB_MAX_BODY_BYTES)
MAX_BODY_BYTES = 256 * 1024 * 1024

MISSING_DSN = (
    "No database configured: set TIMEDB_DSN (or DATABASE_URL), "
    "or run `timedb api --embedded` to use a built-in PostgreSQL."
)


def read_dotenv(path: Path) -> dict[str, str]:
    """A .env file's KEY=VALUE lines, parsed by python-dotenv (quotes, `export`, escapes, and
    `# comments` after a value, which a hand parser used to keep in the value); no variable is
    expanded, and a file that cannot be read counts as empty."""
    from dotenv import dotenv_values

    try:
        with path.open(encoding="utf-8") as stream:
            values = dotenv_values(stream=stream, interpolate=False)
    except (OSError, UnicodeDecodeError):
        return {}
    return {key: value for key, value in values.items() if value is not None}


def configured_dsn(env: dict[str, str]) -> str | None:
    """The database to use: TIMEDB_DSN, else DATABASE_URL (the one place that says so)."""
    return (env.get("TIMEDB_DSN") or env.get("DATABASE_URL") or "").strip() or None


def environment(cwd: Path | None = None) -> dict[str, str]:
    """Real environment variables over those of ./.env (which never override)."""
    merged = read_dotenv((cwd or Path.cwd()) / ".env")
    merged.update(os.environ)
    return merged


def _int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None


def _threshold(raw: str) -> int | None:
    raw = raw.strip().lower()
    if not raw:
        return Settings.prepare_threshold
    if raw in ("none", "off", "disable", "disabled"):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"TIMEDB_PREPARE_THRESHOLD must be an integer or 'none', got {raw!r}") from None


_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|h|d)?\s*$", re.IGNORECASE)


def read_duration(env: dict[str, str], key: str, default: float) -> float:
    """Seconds from '30s', '500ms', '2min', '1h', '1d' or a plain number of seconds; 0 disables."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    match = _DURATION.match(raw)
    if match is None:
        raise ConfigError(f"{key} must be a duration such as 30s, 500ms, 2min or 1h, got {raw!r}")
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, fixed at start."""

    dsn: str
    pool_min_size: int = 2
    pool_max_size: int = 10
    # seconds a request waits for a pooled connection before a 503 "server busy"
    pool_timeout: float = 5.0
    # requests allowed to queue for a connection; more get a 503 at once (0: unbounded)
    pool_max_waiting: int = 20
    max_body_bytes: int = MAX_BODY_BYTES
    # bodies larger than LARGE_BODY_BYTES (or of unknown length) parsed at the same time
    max_large_bodies: int = 2
    validate_responses: bool = False
    # server-side prepared statements after this many executions of a query (None: never);
    # kept off on connections that go through a pooler (timedb.db.pool.Pool._configure)
    prepare_threshold: int | None = 5
    # limits on database work, in seconds (0 disables): per statement (per chunk of a
    # streamed read) and per lock wait
    statement_timeout: float = 30.0
    lock_timeout: float = 5.0
    # seconds a client may take to send the next part of a request or accept the next
    # part of a response before the server gives up on it
    client_timeout: float = 30.0
    # how long an Idempotency-Key is remembered
    idempotency_ttl: float = 86400.0
    # access control (timedb.auth): "tokens" (required), "none" (off) or "auto" (TIMEDB_AUTH
    # unset: loopback clients only while no token exists, tokens required once one does)
    auth: str = "auto"
    # origins allowed to call the API from a browser (CORS); empty: no CORS headers
    cors_origins: tuple[str, ...] = ()
    # "text": log lines as uvicorn prints them; "json": one JSON object per line on stderr,
    # with an access line per request (timedb.access_log)
    log_format: str = "text"
    # a read replica (streaming standby) for reads that need not see the latest write
    # (timedb.db.replica); None: every request uses the primary, dsn
    read_dsn: str | None = None
    # seconds of replay lag beyond which reads skip the replica as if it were down (0: no limit)
    read_max_lag: float = 0.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read TIMEDB_DSN, else DATABASE_URL (environment first, then ./.env)."""
        env = environment() if env is None else env
        dsn = configured_dsn(env)
        if not dsn:
            raise ConfigError(MISSING_DSN)
        d = cls(dsn="")
        settings = cls(
            dsn=dsn,
            pool_min_size=_int(env, "TIMEDB_POOL_MIN_SIZE", d.pool_min_size),
            pool_max_size=_int(env, "TIMEDB_POOL_MAX_SIZE", d.pool_max_size),
            pool_timeout=read_duration(env, "TIMEDB_POOL_TIMEOUT", d.pool_timeout),
            pool_max_waiting=_int(env, "TIMEDB_POOL_MAX_WAITING", d.pool_max_waiting),
            max_body_bytes=_int(env, "TIMEDB_MAX_BODY_BYTES", d.max_body_bytes),
            max_large_bodies=_int(env, "TIMEDB_MAX_LARGE_BODIES", d.max_large_bodies),
            prepare_threshold=_threshold(env.get("TIMEDB_PREPARE_THRESHOLD", "")),
            validate_responses=env.get("TIMEDB_VALIDATE_RESPONSES", "").lower() in {"1", "true", "yes", "on"},
            statement_timeout=read_duration(env, "TIMEDB_STATEMENT_TIMEOUT", d.statement_timeout),
            lock_timeout=read_duration(env, "TIMEDB_LOCK_TIMEOUT", d.lock_timeout),
            client_timeout=read_duration(env, "TIMEDB_CLIENT_TIMEOUT", d.client_timeout),
            idempotency_ttl=read_duration(env, "TIMEDB_IDEMPOTENCY_TTL", d.idempotency_ttl),
            auth=_choice(env, "TIMEDB_AUTH", AUTH_MODES, unset="auto"),
            cors_origins=tuple(o.strip() for o in env.get("TIMEDB_CORS_ORIGINS", "").split(",") if o.strip()),
            log_format=_choice(env, "TIMEDB_LOG_FORMAT", LOG_FORMATS, unset="text"),
            read_dsn=env.get("TIMEDB_READ_DSN", "").strip() or None,
            read_max_lag=read_duration(env, "TIMEDB_READ_MAX_LAG", d.read_max_lag),
        )
        if not 0 <= settings.pool_min_size <= settings.pool_max_size or settings.pool_max_size < 1:
            raise ConfigError(
                f"TIMEDB_POOL_MIN_SIZE ({settings.pool_min_size}) must lie between 0 and "
                f"TIMEDB_POOL_MAX_SIZE ({settings.pool_max_size}), which must be at least 1"
            )
        return settings


AUTH_MODES = ("tokens", "none")
LOG_FORMATS = ("text", "json")


def _choice(env: dict[str, str], key: str, allowed: tuple[str, ...], unset: str) -> str:
    """One of `allowed` (case-insensitive), or `unset` when the variable is empty or absent."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return unset
    if raw not in allowed:
        either = " or ".join(repr(a) for a in allowed) + ("" if unset in allowed else " (or unset)")
        raise ConfigError(f"{key} must be {either}, got {raw!r}")
    return raw
