"""Shared fixtures for tests/ and contract-tests/: a real PostgreSQL and the real app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers import LOCAL, TableEmptier
from tests.processes import server_env, start_server, stop_process
from timedb.app import create_app
from timedb.db.schema import create_tables
from timedb.embedded import embedded_postgres
from timedb.settings import Settings

# the tiers a run selects from (a bare `pytest` is the fast tier)
pytest_plugins = ["tests.tiers"]

# TIMEDB_TEST_PGBOUNCER=1: the app under test reaches its database through a PgBouncer in
# transaction mode (started for the session; `./scripts/test` runs tests/api that way too)
THROUGH_PGBOUNCER = os.environ.get("TIMEDB_TEST_PGBOUNCER", "") not in ("", "0")


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server: TIMEDB_TEST_DSN, or the embedded one (`timedb api --embedded`'s)."""
    dsn = os.environ.get("TIMEDB_TEST_DSN")
    if dsn:
        yield dsn
        return
    # PgBouncer needs a TCP address: a throwaway cluster has one; TIMEDB_TEST_PG_BIN names the
    # server binaries of another PostgreSQL version (./scripts/test: Debian's, the oldest here)
    if THROUGH_PGBOUNCER or os.environ.get("TIMEDB_TEST_PG_BIN"):
        from tests.clusters import Cluster

        with Cluster(tmp_path_factory.mktemp("pg"), max_connections=100) as cluster:
            yield cluster.dsn
        return
    yield from _embedded_for_this_run()


def _embedded_for_this_run() -> Iterator[str]:
    """One embedded PostgreSQL for the run, shared by pytest-xdist's workers: timedb.embedded
    counts its users, and the last one stops it (then its folder goes)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    # never under a home directory: as root the wheel chmods every parent folder
    parent = Path("/tmp", f"timedb-test-pg-{run[:16]}")  # noqa: S108 (a random name, shared by the workers)
    with embedded_postgres(parent / "pgdata") as server:
        yield server.dsn
    if not server.left_running_for:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(server_dsn: str) -> Iterator:
    """Factory for fresh databases on the test server (dropped at session end); those with the
    tables are copies of a template made once per session (~2x faster than creating them)."""
    created: list[str] = []
    template: list[str] = []

    def create(name: str, *options: str) -> None:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(" ".join([f'CREATE DATABASE "{name}"', *options]))
            # commits need not wait for the disk in a throwaway database (the fault tests that
            # kill PostgreSQL use clusters of their own, with the defaults)
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        created.append(name)

    def make(with_tables: bool = True) -> str:
        if with_tables and not template:
            template.append(f"timedb_template_{uuid.uuid4().hex[:12]}")
            create(template[0])
            create_tables(make_conninfo(server_dsn, dbname=template[0]))
        name = f"timedb_test_{uuid.uuid4().hex[:12]}"
        create(name, f'TEMPLATE "{template[0]}"' if with_tables else "")
        return make_conninfo(server_dsn, dbname=name)

    yield make
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_dsn(make_database) -> str:
    """The session's database, with the timedb tables."""
    return make_database()


@pytest.fixture(scope="session")
def emptier(db_dsn: str) -> Iterator[TableEmptier]:
    emptier = TableEmptier(db_dsn)
    yield emptier
    emptier.close()


@pytest.fixture
def clean_db(db_dsn: str, emptier: TableEmptier) -> str:
    """Empty every timedb table (ids restart) before a test."""
    emptier()
    return db_dsn


@pytest.fixture(scope="session")
def app_dsn(db_dsn: str, server_dsn: str, tmp_path_factory) -> Iterator[str]:
    """The DSN the app under test uses: the session's database, through PgBouncer if asked."""
    if not THROUGH_PGBOUNCER:
        yield db_dsn
        return
    from tests.clusters import PgBouncer, pgbouncer_available

    if not pgbouncer_available():
        pytest.exit("TIMEDB_TEST_PGBOUNCER is set but pgbouncer is not installed", returncode=4)
    with PgBouncer(tmp_path_factory.mktemp("bouncer"), server_dsn, pool_mode="transaction", pool_size=4) as bouncer:
        yield bouncer.dsn_for(str(conninfo_to_dict(db_dsn)["dbname"]))


@pytest.fixture(scope="session")
def app(app_dsn: str):
    """The real app with response validation on."""
    return create_app(Settings(dsn=app_dsn, validate_responses=True))


@pytest.fixture(scope="session")
def session_client(app):
    with app.test_client(**LOCAL) as client:
        yield client


@pytest.fixture
def client(session_client, clean_db):
    """A test client on an empty database."""
    return session_client


@pytest.fixture(scope="session")
def live_server(app_dsn: str) -> Iterator[str]:
    """A real uvicorn process serving the app; yields its base URL."""
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"],
        server_env(app_dsn, TIMEDB_VALIDATE_RESPONSES="1"),
    )
    yield url
    stop_process(proc)


@pytest.fixture
def live(live_server: str, clean_db: str) -> Iterator[httpx.Client]:
    """An HTTP client for the live server, on an empty database."""
    with httpx.Client(base_url=live_server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def chromium() -> str:
    """Headless Chromium's path (tests/test_docs_*.py); skips when it is not installed."""
    from tests.browser import chromium_path

    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the JS doc UIs cannot be rendered")
    return path


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Processes a test started; any still running at teardown is killed."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                pass
