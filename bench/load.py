"""Request loops: wrk (compiled) when installed, else Python threads (flagged as such)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.httpclient import HOST, Client, Request
from bench.procstat import children_cpu

LUA = Path(__file__).with_name("requests.lua")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def write_lines(lines: list[str]) -> str:
    """A request file for requests.lua: `METHOD PATH [BODY]` per line."""
    fd, path = tempfile.mkstemp(prefix="timedb-bench-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        for line in lines:
            assert "\n" not in line
            f.write(line + "\n")
    return path


def wrk(
    port: int, lines: list[str], connections: int, duration: float, authorization: str | None = None
) -> dict[str, Any]:
    """Run wrk (one thread) for `duration` seconds over the requests; every reply must be 2xx."""
    path = write_lines(lines)
    try:
        c0 = children_cpu()
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "120s",
                "-s",
                str(LUA),
                f"http://{HOST}:{port}",
                "--",
                path,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_AUTHORIZATION": authorization or ""},
        ).stdout
        cpu = children_cpu() - c0
    finally:
        os.unlink(path)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON ") :])
    errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["status_errors"] + r["timeouts"]
    if errors or not r["requests"]:
        raise RuntimeError(f"wrk saw errors or no replies: {r}\n{out}")
    seconds = r["duration_us"] / 1e6
    return {
        "requests": r["requests"],
        "seconds": seconds,
        "client_cpu_s": cpu,
        "lat_p50_ms": r["lat_p50_us"] / 1e3,
        "lat_p99_ms": r["lat_p99_us"] / 1e3,
        "lat_max_ms": r["lat_max_us"] / 1e3,
        "client": "wrk",
    }


def in_threads(n: int, work: Callable[[int], None]) -> float:
    """Seconds to run work(0), ..., work(n - 1) in n threads; the first error of any is raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def python_loop(
    port: int, lines: list[str], connections: int, duration: float, authorization: str | None = None
) -> dict[str, Any]:
    """The same request loop in Python threads (GIL-bound: only for machines without wrk)."""
    reqs = []
    for line in lines:
        method, path, *rest = line.split(" ", 2)
        reqs.append(Request(method, path, rest[0].encode() if rest else None, authorization=authorization))
    counts = [0] * connections
    lat: list[float] = []
    deadline = time.perf_counter() + duration
    c0 = time.process_time()

    def worker(i: int) -> None:
        with Client(port) as client:
            j = i
            while time.perf_counter() < deadline:
                reply = client.send(reqs[j % len(reqs)], keep=False)
                if reply.status >= 300:
                    raise RuntimeError(f"request failed: HTTP {reply.status}: {reply.body[:300]!r}")
                counts[i] += 1
                lat.append(reply.wall)
                j += connections

    seconds = in_threads(connections, worker)
    lat.sort()
    return {
        "requests": sum(counts),
        "seconds": seconds,
        "client_cpu_s": time.process_time() - c0,
        "lat_p50_ms": lat[len(lat) // 2] * 1e3,
        "lat_p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
        "lat_max_ms": lat[-1] * 1e3,
        "client": "python",
    }


def run(
    port: int, lines: list[str], connections: int, duration: float, client: str, authorization: str | None = None
) -> dict[str, Any]:
    if client == "wrk":
        return wrk(port, lines, connections, duration, authorization)
    return python_loop(port, lines, connections, duration, authorization)
