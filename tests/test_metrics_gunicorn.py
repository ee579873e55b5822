"""GET /metrics under gunicorn (issue 12): the numbers of every worker, merged with no setting;
a dead worker's gauges dropped; the metrics directory removed when gunicorn stops."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import server_env, start_server, stop_process

pytestmark = pytest.mark.processes

BIN = Path(sys.executable).parent
GUNICORN = [str(BIN / "gunicorn")] if (BIN / "gunicorn").exists() else [sys.executable, "-m", "gunicorn"]
WORKERS = 2
POOL = 2  # connections per worker (min = max)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with httpx.Client(timeout=30) as c:  # (a new connection: any worker may answer)
        resp = c.get(url + "/metrics")
    assert resp.status_code == 200, resp.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def health_count(found: dict) -> float:
    return found.get(("timedb_requests_total", (("operation", "get_health"), ("status", "200"))), 0.0)


def read_count(found: dict) -> float:
    return found.get(("timedb_requests_total", (("operation", "read_values"), ("status", "200"))), 0.0)


def log_of(proc: subprocess.Popen) -> str:
    log = proc.log  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return log.read()


def eventually(check: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def gunicorn(make_database) -> Iterator[tuple[str, subprocess.Popen]]:
    env = server_env(
        make_database(), TIMEDB_POOL_MIN_SIZE=str(POOL), TIMEDB_POOL_MAX_SIZE=str(POOL), TIMEDB_LOG_FORMAT="json"
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc, url = start_server(
        [
            *GUNICORN,
            "timedb.api:app",
            "-k",
            "timedb.workers.UvicornWorker",
            "-w",
            str(WORKERS),
            "--bind",
            "127.0.0.1:0",
            "--graceful-timeout",
            "5",
        ],
        env,
    )
    yield url, proc
    if proc.poll() is None:
        stop_process(proc)


def test_workers_metrics_are_merged(gunicorn):
    url, proc = gunicorn
    # every worker counts its pool from its start: merged, the pools of both
    found = eventually(lambda: (s := samples(url))[("timedb_pool_size", ())] == WORKERS * POOL and s)
    assert found, samples(url)
    before = health_count(found)
    for _ in range(30):
        with httpx.Client(timeout=30) as c:  # (new connections: spread over the workers)
            assert c.get(url + "/healthz").status_code == 200
    # whichever worker answers the scrape, it counts the requests of both
    for _ in range(6):
        assert health_count(samples(url)) == before + 30
    # json access lines, one per request, from both workers
    lines = [json.loads(line) for line in log_of(proc).splitlines() if line.startswith('{"ts"')]
    health = [line for line in lines if line.get("logger") == "timedb.access" and line["path"] == "/healthz"]
    assert len(health) >= 30


def test_a_client_gone_mid_stream_is_recorded(gunicorn):
    url, proc = gunicorn
    with httpx.Client(base_url=url, timeout=60) as c:
        sid = c.post("/series", json={"name": "gone", "unit": "MW"}).json()["series_id"]
        data = [
            {"valid_time": f"2025-{1 + d // 28:02d}-{1 + d % 28:02d}T{h:02d}:{m:02d}:00Z", "value": float(m)}
            for d in range(12 * 28)
            for h in range(24)
            for m in range(0, 60, 15)
        ]  # 32,256 rows
        assert c.post("/values", json={"series_id": sid, "data": data}).status_code == 200
    before = read_count(samples(url))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (the server cannot send it all at once)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.sendall(f"GET /values?series_id={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: gone-1\r\n\r\n".encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and b"x-request-id: gone-1" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()  # (streamed)
    sock.close()
    assert eventually(lambda: read_count(samples(url)) == before + 1), (before, read_count(samples(url)))
    lines = [json.loads(line) for line in log_of(proc).splitlines() if line.startswith('{"ts"')]
    gone = [line for line in lines if line.get("request_id") == "gone-1" and line["logger"] == "timedb.access"]
    assert len(gone) == 1 and gone[0]["status"] == 200, gone
    # (really mid-stream: timedb.handlers.streaming noted it, in the request's JSON line)
    assert [line for line in lines if line.get("request_id") == "gone-1" and "went away" in line["msg"]]
    assert "Traceback" not in log_of(proc)


def test_a_dead_workers_gauges_are_dropped(gunicorn):
    url, proc = gunicorn
    before = health_count(samples(url))
    victim = psutil.Process(proc.pid).children()[0].pid
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        pids = [c.pid for c in psutil.Process(proc.pid).children()]
        return len(pids) == WORKERS and victim not in pids

    assert eventually(replaced)
    # the new worker's pool counts, the dead one's no more (counters keep what it counted)
    found = eventually(lambda: (s := samples(url))[("timedb_pool_size", ())] == WORKERS * POOL and s)
    assert found, samples(url)
    assert health_count(found) == before


def test_the_metrics_directory_is_removed_at_exit(gunicorn):
    _url, proc = gunicorn
    match = re.search(r"Metrics of all workers are merged in (\S+) \(PROMETHEUS_MULTIPROC_DIR\)", log_of(proc))
    assert match, log_of(proc)[-2000:]
    path = Path(match.group(1))
    assert path.is_dir() and any(path.glob("counter_*.db"))
    stop_process(proc)
    assert not path.exists()
