"""Configuration, read once from the environment and ./.env."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from timedb.errors import ConfigError

MISSING_DSN = (
    "No database configured: set TIMEDB_DSN (or DATABASE_URL), "
    "or run `timedb api --embedded` to use a built-in PostgreSQL."
)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a .env file: KEY=VALUE lines, optional quotes, # comments."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key:
            values[key] = value
    return values


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
    if raw in ("none", "off", "disable", "disabled"):
        return None
    if not raw:
        return 5
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"TIMEDB_PREPARE_THRESHOLD must be an integer or 'none', got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, fixed at start."""

    dsn: str
    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_timeout: float = 10.0
    max_body_bytes: int = 256 * 1024 * 1024
    validate_responses: bool = False
    # None disables server-side prepared statements (PgBouncer in transaction mode)
    prepare_threshold: int | None = 5

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read TIMEDB_DSN, else DATABASE_URL (environment first, then ./.env)."""
        env = environment() if env is None else env
        dsn = (env.get("TIMEDB_DSN") or env.get("DATABASE_URL") or "").strip()
        if not dsn:
            raise ConfigError(MISSING_DSN)
        return cls(
            dsn=dsn,
            pool_min_size=_int(env, "TIMEDB_POOL_MIN_SIZE", 2),
            pool_max_size=_int(env, "TIMEDB_POOL_MAX_SIZE", 10),
            max_body_bytes=_int(env, "TIMEDB_MAX_BODY_BYTES", 256 * 1024 * 1024),
            prepare_threshold=_threshold(env.get("TIMEDB_PREPARE_THRESHOLD", "")),
            validate_responses=env.get("TIMEDB_VALIDATE_RESPONSES", "").lower()
            in {"1", "true", "yes", "on"},
        )
