"""Helpers for tests that run servers as real processes (the fixtures live in ../conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = _output(proc)
            raise RuntimeError(f"server exited with {proc.returncode}: {out}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def start_process(args: list[str], env: dict[str, str], url: str, cwd: Path | None = None) -> subprocess.Popen:
    """Start a server process and wait until it answers at url."""
    # output goes to a file: an undrained pipe fills up and blocks a chatty server
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(args, env=env, cwd=cwd or ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log  # type: ignore[attr-defined]
    try:
        wait_http(url, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _output(proc: subprocess.Popen) -> str:
    log = getattr(proc, "log", None)
    if log is not None:
        log.seek(0)
        return log.read()
    return proc.stdout.read() if proc.stdout else ""


def stop_process(proc: subprocess.Popen) -> str:
    """Terminate (then kill) a server process; returns everything it printed."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return _output(proc)


def server_env(dsn: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIMEDB_DSN", "DATABASE_URL")}
    if dsn is not None:
        env["TIMEDB_DSN"] = dsn
    env.update(extra)
    return env


