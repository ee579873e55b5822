"""Contract-test fixtures: the real app on its own, seeded PostgreSQL database."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest contract-tests` alone does not import tests/
    sys.path.insert(0, str(ROOT))

from contract_seed import HOURS, seed  # noqa: E402

from tests.helpers import make_partitions  # noqa: E402
from tests.processes import server_env, start_server, stop_process  # noqa: E402
from timedb.db.schema import TABLES  # noqa: E402


@dataclass
class Target:
    """Where the contract tests send requests: kwargs for `case.call`, and a session to seed with."""

    call_kwargs: dict[str, Any]
    session: requests.Session
    base_url: str
    dsn: str

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.base_url + path, json=body, timeout=60)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.session.put(self.base_url + path, json=body, timeout=60)

    def reset(self) -> None:
        """Back to the seeded state, ids included (each stateful scenario starts from it)."""
        kept = ("timedb_settings", "api_tokens")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(t for t in TABLES if t not in kept)} RESTART IDENTITY")
        seed(self.post, self.put)


def admin_token(dsn: str) -> dict[str, str]:
    """The header of an admin token: the contract tests run with TIMEDB_AUTH=tokens, so
    Schemathesis also checks that requests without it are refused."""
    from timedb.db import tokens
    from timedb.db.commands import using

    secret = using(dsn, lambda conn: tokens.create(conn, "contract-tests", "admin", {}, None))
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="session")
def contract_target(make_database) -> Iterator[Target]:
    """A real uvicorn on a fresh, seeded database, requiring tokens (TIMEDB_AUTH=tokens).

    Over HTTP, not in-process: Schemathesis' `ignored_auth` check sends its own probes without
    the token to the base URL, which an in-process (ASGI) target cannot receive."""
    dsn = make_database()
    headers = admin_token(dsn)
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"],
        server_env(dsn, TIMEDB_VALIDATE_RESPONSES="1", TIMEDB_AUTH="tokens"),
    )
    try:
        with requests.Session() as session:
            session.headers.update(headers)
            target = Target({"base_url": url, "headers": headers}, session, url, dsn)
            # the seed's month has its partitions before the first write, which would otherwise
            # make them and run again, spending the batch ids the seed expects
            make_partitions(dsn, *sorted({vt[:7] for vt in HOURS}))
            seed(target.post, target.put)
            yield target
    finally:
        output = stop_process(proc)
        assert "Traceback (most recent call last)" not in output, output[-3000:]


@pytest.fixture(scope="session")
def contract_stats() -> Iterator[dict[tuple[str, str, int], int]]:
    """Counts of (operation, generation mode, status); printed with TIMEDB_CONTRACT_STATS=1."""
    counts: dict[tuple[str, str, int], int] = {}
    yield counts
    if os.environ.get("TIMEDB_CONTRACT_STATS"):
        for (label, mode, status), n in sorted(counts.items()):
            print(f"{label:22} {mode:9} {status} x{n}", file=sys.stderr)
