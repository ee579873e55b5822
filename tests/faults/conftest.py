"""Fault tests: real server processes, real PostgreSQL (killable clusters), misbehaving clients.

Every wait is bounded, every process is stopped at teardown, and traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.clusters import Cluster, PgBouncer, pgbouncer_available
from tests.processes import server_env, start_server

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is a fault test (marker `faults`, the slow tier)."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


BIN = Path(sys.executable).parent
TIMEDB = [str(BIN / "timedb")] if (BIN / "timedb").exists() else [sys.executable, "-m", "timedb"]


@dataclass
class Server:
    """A timedb server process started by a test."""

    url: str
    proc: subprocess.Popen
    dsn: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log(self) -> str:
        """Everything the process printed so far."""
        log = self.proc.log  # type: ignore[attr-defined]
        log.flush()
        log.seek(0)
        return log.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Send sig and wait for the exit (kill after timeout); returns the seconds it took."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                pytest.fail(f"the server did not exit within {timeout} s of signal {sig}:\n{self.log()[-3000:]}")
        return time.monotonic() - t0


@pytest.fixture
def serve(make_database) -> Iterator[Callable[..., Server]]:
    """Start a timedb server as a real process: `timedb api` by default, on a fresh database.

    serve(dsn=None, command=None, **env): command is the argv before `--port N` (default
    `timedb api`); env entries are set for the process (e.g. TIMEDB_CLIENT_TIMEOUT="2").
    """
    started: list[Server] = []

    def start(dsn: str | None = None, command: list[str] | None = None, port_arg: bool = True, **env: str) -> Server:
        dsn = dsn or make_database()
        # port 0, read back from the server's output: no free-port race
        args = list(command or [*TIMEDB, "api"])
        args = [*args, "--port", "0"] if port_arg else [a.replace("{port}", "0") for a in args]
        proc, url = start_server(args, server_env(dsn, **env), cwd=Path(tempfile.gettempdir()))
        server = Server(url, proc, dsn, env)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.alive():
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A PostgreSQL server of the test's own, which it may kill, stop and restart."""
    with Cluster(tmp_path / "pg") as c:
        yield c


@pytest.fixture
def cluster_db(cluster: Cluster) -> str:
    """A database with the timedb tables on the test's own cluster."""
    from timedb.db.schema import create_tables

    dsn = cluster.database()
    create_tables(dsn)
    return dsn


@pytest.fixture
def bouncer(tmp_path: Path, server_dsn: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test server (skips if not installed)."""
    if not pgbouncer_available():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    with PgBouncer(tmp_path / "bouncer", server_dsn, pool_mode="transaction", pool_size=2) as b:
        yield b


def seed_series(dsn: str, rows: int, *, overlapping: bool = False, name: str = "big", revisions: int = 1) -> int:
    """A series holding `rows` valid_times (x revisions), one per minute from 2020-01-01, value = i
    (+ revision), loaded with one INSERT ... SELECT (fast); returns its id."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        sid = conn.execute(
            "INSERT INTO series_table (name, unit, overlapping) VALUES (%s, 'MW', %s) RETURNING series_id",
            (name, overlapping),
        ).fetchone()[0]
        # the months the rows span get their partitions first (a direct INSERT does not make them)
        conn.execute(
            "SELECT timedb_ensure_partitions(%s::regclass, array(SELECT '2020-01-01+00'::timestamptz"
            " + m * interval '1 month' FROM generate_series(0, %s / 40000) AS m))",
            ("overlapping" if overlapping else "flat", rows),
        )
        if overlapping:
            for r in range(revisions):
                batch = conn.execute(
                    "INSERT INTO batches_table (series_id, known_time) VALUES (%s, '2019-12-01'::timestamptz"
                    " + %s * interval '1 hour') RETURNING batch_id",
                    (sid, r),
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value) "
                    "SELECT %s, %s, '2020-01-01'::timestamptz + i * interval '1 minute', "
                    "'2019-12-01'::timestamptz + %s * interval '1 hour', i + %s "
                    "FROM generate_series(0, %s - 1) i",
                    (batch, sid, r, r, rows),
                )
        else:
            conn.execute(
                "INSERT INTO flat (series_id, valid_time, value) "
                "SELECT %s, '2020-01-01'::timestamptz + i * interval '1 minute', i FROM generate_series(0, %s - 1) i",
                (sid, rows),
            )
        conn.execute("ANALYZE flat; ANALYZE overlapping")
    return int(sid)


def backends(dsn: str, *, application_name: str = "timedb") -> list[dict[str, Any]]:
    """The sessions of the server under test on dsn's database (state, wait event, query)."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(
            "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            (dbname, application_name),
        ).fetchall()


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll check() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s (last: {last!r})")
