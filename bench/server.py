"""The system under test: a fresh database on the DSN's server, and uvicorn workers serving timedb."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.httpclient import HOST, Client
from timedb.db.schema import create_tables

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Database:
    """A fresh database on the DSN's server, dropped afterwards."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin = admin_dsn
        self.name = f"timedb_bench_{secrets.token_hex(4)}"
        self.dsn = make_conninfo(admin_dsn, dbname=self.name)

    def create(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        create_tables(self.dsn)

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


class Server:
    """One uvicorn worker serving timedb.api:app, as `timedb api` does (without the access log)."""

    def __init__(self, dsn: str, port: int, log_path: str, env: dict[str, str] | None = None) -> None:
        self.dsn, self.port, self.log_path, self.env = dsn, port, log_path, env or {}

    def start(self) -> None:
        env = {**os.environ, "TIMEDB_DSN": self.dsn, **self.env}
        env.pop("TIMEDB_VALIDATE_RESPONSES", None)  # production default: off
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "timedb.api:app",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with Client(self.port, timeout=5) as c:
                    if c.request("GET", "/readyz").status == 200:
                        return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def postgres_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])
