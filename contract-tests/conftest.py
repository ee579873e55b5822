"""Contract-test fixtures: the real app on its own seeded PostgreSQL database."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest contract-tests` alone does not load tests/
    sys.path.insert(0, str(ROOT))

from tests.conftest import *  # noqa: E402,F403  (server_dsn, make_database, ...)
