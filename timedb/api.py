"""The ASGI application: `uvicorn timedb.api:app`, `gunicorn timedb.api:app -k ...`."""

from __future__ import annotations

import sys

from timedb.app import create_app
from timedb.errors import ConfigError
from timedb.settings import Settings

try:
    settings = Settings.from_env()
except ConfigError as exc:
    # one clear line and a non-zero exit instead of a traceback from the server's importer
    print(f"timedb: {exc}", file=sys.stderr)
    # 4: gunicorn stops instead of restarting workers that cannot boot
    raise SystemExit(4) from None

app = create_app(settings)
