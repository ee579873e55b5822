"""The benchmark's smoke run (seconds, no timing assertions) keeps bench/run.py from rotting."""

import subprocess
import sys

from tests.conftest import ROOT


def test_bench_smoke(server_dsn):
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--dsn", server_dsn],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "insert" in proc.stdout
