"""Helpers for tests that run servers as real processes (the fixtures live in ../conftest.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
            out = output_of(proc)
            raise RuntimeError(f"server exited with {proc.returncode}: {out}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


@contextmanager
def _spawned(args: list[str], env: dict[str, str], cwd: Path | None) -> Iterator[subprocess.Popen]:
    """A server process whose output goes to a file (an undrained pipe fills up and blocks a
    chatty server); killed if what the with block does to start it fails."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(args, env=env, cwd=cwd or ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def start_process(args: list[str], env: dict[str, str], url: str, cwd: Path | None = None) -> subprocess.Popen:
    """Start a server process and wait until it answers at url."""
    with _spawned(args, env, cwd) as proc:
        wait_http(url, proc)
    return proc


# the address a server prints once it listens: uvicorn, and gunicorn's master
_LISTENING = re.compile(r"(?:Uvicorn running on|Listening at:) (http://[^\s/]+)")


def start_server(
    args: list[str], env: dict[str, str], path: str = "/healthz", cwd: Path | None = None, timeout: float = 30
) -> tuple[subprocess.Popen, str]:
    """Start a server told to listen on port 0 (`--port 0`, `--bind 127.0.0.1:0`), read the
    port it got back from its output, and wait until it answers at path; returns (process,
    base URL). No free-port race: the port is never released between choosing and binding it."""
    with _spawned(args, env, cwd) as proc:
        deadline = time.monotonic() + timeout
        while (found := _LISTENING.search(output_of(proc))) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {output_of(proc)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not say where it listens within {timeout}s: {output_of(proc)}")
            time.sleep(0.05)
        url = found.group(1)
        wait_http(url + path, proc, timeout=max(1.0, deadline - time.monotonic()))
    return proc, url


def output_of(proc: subprocess.Popen) -> str:
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
    return output_of(proc)


def server_env(dsn: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIMEDB_DSN", "DATABASE_URL")}
    if dsn is not None:
        env["TIMEDB_DSN"] = dsn
    env.update(extra)
    return env
