"""A gunicorn worker: `gunicorn timedb.api:app -k timedb.workers.UvicornWorker`.

uvicorn-worker's UvicornWorker with timedb's client timeouts (timedb.server) and a bounded
graceful shutdown: gunicorn's --graceful-timeout is not passed on to uvicorn, whose worker
would otherwise wait for ever for a stalled client and be killed without cleaning up.

It also makes GET /metrics cover every worker with no setting: when gunicorn's master loads
this class it creates a temporary PROMETHEUS_MULTIPROC_DIR (unless one is set), which the
workers inherit and write their metrics to; the master drops a dead worker's gauges and
removes the directory when it exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

from uvicorn_worker import UvicornWorker as _UvicornWorker

from timedb.server import HttpProtocol

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR: the one set, else a new temporary one removed at exit.

    Must run before prometheus_client is imported (timedb.metrics), which reads it once."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        return given
    path = tempfile.mkdtemp(prefix="timedb-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(_remove_in, os.getpid(), path)
    return path


def _remove_in(pid: int, path: str) -> None:
    # (forked workers inherit this exit handler: only the process that made the directory acts)
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int) -> None:
    """Drop the gauges of a worker that exited (its counters and histograms stay counted)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def _child_exit_marking(user_hook: Any) -> Any:
    def child_exit(server: Any, worker: Any) -> None:
        try:
            user_hook(server, worker)
        finally:
            mark_dead(worker.pid)

    child_exit.timedb_marks_dead = True  # type: ignore[attr-defined]
    return child_exit


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]
    """uvicorn_worker.UvicornWorker with timedb's HTTP protocol and shutdown limit."""

    CONFIG_KWARGS = {"loop": "auto", "http": HttpProtocol}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # finish (cancel what is left and close the pool) before the master's SIGKILL
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout) - 2)

    @staticmethod
    def setup() -> None:
        """Called by gunicorn's master when it loads the worker class (before any app import,
        also with --preload)."""
        prepare_metrics_dir()

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Called by gunicorn's master at start: mark each worker that exits as dead."""
        setting = cfg.settings["child_exit"]
        if not getattr(setting.get(), "timedb_marks_dead", False):
            setting.value = _child_exit_marking(setting.get())
        log.info("Metrics of all workers are merged in %s (%s)", os.environ.get(MULTIPROC_ENV), MULTIPROC_ENV)

    def run(self) -> None:
        try:
            super().run()
        finally:
            mark_dead(os.getpid())
