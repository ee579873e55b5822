"""The benchmark's smoke run (seconds, no timing assertions) keeps bench/run.py from rotting."""

import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.bench


def test_bench_smoke(server_dsn, tmp_path):
    # TMPDIR: the servers' logs (bench/run.py, bench/cases/auth.py) go to pytest's tmp_path, not /tmp
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--dsn", server_dsn],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "insert" in proc.stdout
    assert list(tmp_path.glob("timedb-bench-server-*.log")), "the server log was not put in TMPDIR"
