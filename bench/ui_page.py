"""What bench/ui_render.py and bench/ui_screenshots.py share: a server on a fresh database, and
headless Chromium showing a view of the web UI (tests/cdp.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.httpclient import HOST
from bench.server import Database, Server, free_port
from tests.cdp import Browser

IDLE = "document.body.getAttribute('aria-busy') === 'false'"


@contextmanager
def serving(admin_dsn: str) -> Iterator[str]:
    """A timedb server (one uvicorn worker, production settings) on a fresh database of the DSN's
    server, both gone afterwards; yields its base URL."""
    database = Database(admin_dsn)
    database.create()
    handle, log = tempfile.mkstemp(prefix="timedb-ui-server-", suffix=".log")
    os.close(handle)
    server = Server(database.dsn, free_port(), log)
    try:
        server.start()
        yield f"http://{HOST}:{server.port}"
    finally:
        server.stop()
        database.drop()
        Path(log).unlink(missing_ok=True)


def view_url(base: str, **state: Any) -> str:
    """The URL of a view of the page (its state is the hash)."""
    return f"{base}/ui/#{urlencode({k: v for k, v in state.items() if v is not None})}"


def show(page: Browser, url: str) -> dict[str, str]:
    """Open a view and wait until it is drawn (or says why not); the status line's numbers."""
    page.goto(url)
    drawn = "document.getElementById('status').dataset.points || !document.getElementById('message').hidden"
    page.wait_for(f"location.href === {url!r} && {IDLE} && ({drawn})", timeout=60)
    status: dict[str, str] = page.evaluate("({...document.getElementById('status').dataset})")
    return status
