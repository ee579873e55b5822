"""CPU and memory readings from /proc (Linux), so the report can show who used the cores."""

from __future__ import annotations

import os
import resource
import threading
import time

MB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # without guest time, which is counted in user already
    return total - idle, total


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def children_cpu() -> float:
    """CPU seconds used by this process's waited-for children (e.g. wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def reset_peak(pid: int) -> bool:
    """Reset VmHWM (peak RSS) of a process; needs Linux >= 4.0 and permission."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Usage:
    """CPU used by the machine, the server and the load client between start() and stop()."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def start(self) -> Usage:
        self.t0 = time.perf_counter()
        self.m0 = machine_ticks()
        self.s0 = process_cpu(self.pid)
        self.c0 = time.process_time() + children_cpu()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        m1 = machine_ticks()
        busy = (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1])
        return {
            "wall_s": wall,
            "machine_busy": busy,  # fraction of all cores
            "server_cores": (process_cpu(self.pid) - self.s0) / wall,
            "bench_cores": (time.process_time() + children_cpu() - self.c0) / wall,
        }


class PeakRss:
    """Peak RSS of a process during a block: VmHWM after a reset, and 5 ms sampling as a check."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples_peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.base = rss_bytes(self.pid)
        self.hwm_reset = reset_peak(self.pid)
        self.samples_peak = self.base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.samples_peak = max(self.samples_peak, rss_bytes(self.pid))
            except OSError:
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = status_kb(self.pid, "VmHWM") * 1024 if self.hwm_reset else 0
        self.peak = max(self.samples_peak, hwm)
        self.growth = self.peak - self.base
