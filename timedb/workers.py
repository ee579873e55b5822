"""A gunicorn worker: `gunicorn timedb.api:app -k timedb.workers.UvicornWorker`.

uvicorn-worker's UvicornWorker with timedb's client timeouts (timedb.server) and a bounded
graceful shutdown: gunicorn's --graceful-timeout is not passed on to uvicorn, whose worker
would otherwise wait for ever for a stalled client and be killed without cleaning up.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker as _UvicornWorker

from timedb.server import HttpProtocol


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]
    """uvicorn_worker.UvicornWorker with timedb's HTTP protocol and shutdown limit."""

    CONFIG_KWARGS = {"loop": "auto", "http": HttpProtocol}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # finish (cancel what is left and close the pool) before the master's SIGKILL
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout) - 2)
