"""Real server processes, started as the user's guide says (timedb api, uvicorn, gunicorn, --embedded).

Every process is bounded by timeouts and killed at teardown; embedded PostgreSQL servers
started here are stopped at teardown too (found by their data directory).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import free_port, output_of, server_env, start_process, start_server, stop_process

pytestmark = pytest.mark.processes

BIN = Path(sys.executable).parent
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


def exe(name: str) -> list[str]:
    """The console script from this venv (what the guide runs), else `python -m`."""
    path = BIN / name
    if path.exists():
        return [str(path)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"timedb": "timedb", "uvicorn": "uvicorn", "gunicorn": "gunicorn"}[name]
    return [sys.executable, "-m", module]


def run_briefly(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command that must exit by itself (a bound, not a speed test: subprocess.TimeoutExpired
    when it keeps running)."""
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- timedb api -------------------------------------------------------------------------------


def test_timedb_api_serves_and_stops_on_sigterm(make_database, procs, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_process(
        [*exe("timedb"), "api", "--port", str(port)], server_env(make_database()), url + "/healthz", cwd=tmp_path
    )
    procs.append(proc)
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as c:
        root = c.get("/")
        assert root.status_code == 200
        assert root.json()["name"] == "TimeDB API"
        docs = c.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        assert str(docs.url).endswith("/docs/")
        assert c.get("/docs/").status_code == 200
        redoc = c.get("/redoc")
        assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
        assert c.get("/readyz").json() == {"status": "ready"}
    out = stop_process(proc)
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, out)
    assert f"http://127.0.0.1:{port}/" in out
    assert f"http://127.0.0.1:{port}/docs" in out
    assert f"http://127.0.0.1:{port}/redoc" in out
    assert "Traceback" not in out


def test_timedb_api_host_and_port_options(make_database, procs, tmp_path):
    port = free_port()
    url = f"http://localhost:{port}"
    proc = start_process(
        [*exe("timedb"), "api", "--host", "0.0.0.0", "--port", str(port)],
        server_env(make_database()),
        url + "/healthz",
        cwd=tmp_path,
    )
    procs.append(proc)
    assert httpx.get(url + "/", timeout=30).status_code == 200
    out = stop_process(proc)
    assert f"http://0.0.0.0:{port}/" in out


MISSING_DSN_COMMANDS = {
    "uvicorn": ["uvicorn", "timedb.api:app", "--host", "127.0.0.1", "--port", "{port}"],
    "timedb api": ["timedb", "api", "--port", "{port}"],
    "gunicorn": [
        "gunicorn",
        "timedb.api:app",
        "-w",
        "2",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        "127.0.0.1:{port}",
    ],
}


@pytest.mark.parametrize("name", list(MISSING_DSN_COMMANDS))
def test_no_dsn_exits_with_one_clear_line(name, tmp_path):
    """Neither TIMEDB_DSN nor DATABASE_URL, no .env: fail fast with a single line, no traceback."""
    port = "0"  # (never bound: the command fails first)
    first, *rest = MISSING_DSN_COMMANDS[name]
    args = [*exe(first), *(a.replace("{port}", port) for a in rest)]
    try:
        proc = run_briefly(args, server_env(None, HOME=str(tmp_path)), cwd=tmp_path, timeout=20)
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(
            f"{name} did not exit within 20 s without a DSN (restarting failed workers forever?); "
            f"{out.count('No database configured')} failure messages; last output:\n{out[-1500:]}"
        )
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    if name == "gunicorn":
        # gunicorn adds its own lines around the worker failure; the cause must still be there.
        # Its arbiter may log a traceback of its own when both workers fail at once (CI saw one
        # from gunicorn/arbiter.py under load): no frame of timedb's may appear
        assert not re.search(r'File "[^"]*/timedb/', proc.stderr + proc.stdout), proc.stderr
        assert "TIMEDB_DSN" in proc.stderr and "--embedded" in proc.stderr, proc.stderr
        return
    assert "Traceback" not in proc.stderr + proc.stdout
    err = lines(proc.stderr)
    assert len(err) == 1, f"expected one line on stderr, got: {err}"
    for word in ("TIMEDB_DSN", "DATABASE_URL", "--embedded"):
        assert word in err[0], err[0]
    assert proc.stdout.strip() == ""


def test_pool_sizes_that_cannot_work_exit_with_one_line(tmp_path):
    proc = run_briefly(
        [*exe("uvicorn"), "timedb.api:app", "--port", "0"],
        server_env(UNREACHABLE, TIMEDB_POOL_MIN_SIZE="20", TIMEDB_POOL_MAX_SIZE="10"),
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    err = lines(proc.stderr)
    assert len(err) == 1 and "TIMEDB_POOL_MIN_SIZE (20)" in err[0] and "TIMEDB_POOL_MAX_SIZE (10)" in err[0], err


def test_timedb_api_unreachable_database_exits_fast(tmp_path):
    proc = run_briefly([*exe("timedb"), "api", "--port", "0"], server_env(UNREACHABLE), cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    err = lines(proc.stderr)
    assert len(err) == 1, err
    assert err[0].startswith("Error: cannot connect to the database"), err
    assert "127.0.0.1" in err[0]


def test_uvicorn_unreachable_database_exits_fast(tmp_path):
    proc = run_briefly([*exe("uvicorn"), "timedb.api:app", "--port", "0"], server_env(UNREACHABLE), cwd=tmp_path)
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert "cannot connect to the database" in output, output


def test_gunicorn_unreachable_database_halts(tmp_path):
    # one worker: with several, the master may kill a sibling mid-import when the first
    # fails, and that sibling's interrupted import prints a traceback of gunicorn's own
    args = [
        *exe("gunicorn"),
        "timedb.api:app",
        "-w",
        "1",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        "127.0.0.1:0",
    ]
    try:
        proc = run_briefly(args, server_env(UNREACHABLE, HOME=str(tmp_path)), cwd=tmp_path, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("gunicorn kept running with an unreachable database")
    assert proc.returncode != 0
    assert "cannot connect to the database" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_timedb_api_warns_when_tables_are_missing(make_database, procs, tmp_path):
    proc, url = start_server(
        [*exe("timedb"), "api", "--port", "0"], server_env(make_database(with_tables=False)), cwd=tmp_path
    )
    procs.append(proc)
    assert httpx.get(url + "/readyz", timeout=30).status_code == 503
    out = stop_process(proc)
    assert "timedb create tables" in out


# -- uvicorn ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["TIMEDB_DSN", "DATABASE_URL"])
def test_uvicorn_reads_dotenv_in_cwd(make_database, procs, tmp_path, key):
    dsn = make_database()
    (tmp_path / ".env").write_text(f"# local settings\n{key}={dsn}\n")
    proc, url = start_server(
        [*exe("uvicorn"), "timedb.api:app", "--host", "127.0.0.1", "--port", "0"], server_env(None), cwd=tmp_path
    )
    procs.append(proc)
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/readyz").json() == {"status": "ready"}
        created = c.post("/series", json={"name": "from-dotenv", "unit": "MW"})
        assert created.status_code == 200, created.text
    out = stop_process(proc)
    assert "Traceback" not in out
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM series_table WHERE name = 'from-dotenv'").fetchone()[0] == 1


# -- gunicorn (the guide's production command) -----------------------------------------------


def exercise(url: str) -> None:
    """GET /, create a series, write and read a value, on several connections (both workers)."""
    for _ in range(4):
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/").status_code == 200
    with httpx.Client(base_url=url, timeout=30) as c:
        created = c.post("/series", json={"name": "gunicorn", "unit": "MW", "labels": {"w": "1"}})
        assert created.status_code == 200, created.text
        sid = created.json()["series_id"]
        ins = c.post("/values", json={"series_id": sid, "data": [{"valid_time": "2025-01-01T00:00:00Z", "value": 1.5}]})
        assert ins.status_code == 200, ins.text
    with httpx.Client(base_url=url, timeout=30) as c:
        got = c.get("/values", params={"series_id": sid})
        assert got.status_code == 200, got.text
        assert [(r["valid_time"], r["value"]) for r in got.json()["data"]] == [("2025-01-01T00:00:00+00:00", 1.5)]
        assert c.get("/series/count", params={"name": "gunicorn"}).json() == {"count": 1}


@pytest.mark.parametrize("worker", ["uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker"])
def test_gunicorn_with_uvicorn_workers(make_database, procs, tmp_path, worker):
    # HOME: gunicorn >= 23 puts a control socket in ~/.gunicorn; keep concurrent runs apart
    env = server_env(make_database(), HOME=str(tmp_path))
    proc, url = start_server(
        [*exe("gunicorn"), "timedb.api:app", "-w", "2", "-k", worker, "--bind", "127.0.0.1:0"], env, cwd=tmp_path
    )
    procs.append(proc)
    exercise(url)
    out = stop_process(proc)
    assert proc.returncode == 0, (proc.returncode, out)
    assert "Traceback" not in out
    assert "Booting worker" in out


# -- embedded PostgreSQL -------------------------------------------------------------------------


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """Running postgres server processes whose command line names data_dir."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if cmd and Path(cmd[0]).name == "postgres" and str(data_dir) in cmd:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
    return found


def wait_postgres_gone(data_dir: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not postmasters(data_dir):
            return True
        time.sleep(0.2)
    return False


def shutdown_postgres(data_dir: Path) -> None:
    """Fast-shutdown whatever postgres a test left running on data_dir."""
    for p in postmasters(data_dir):
        try:
            p.send_signal(signal.SIGINT)  # fast shutdown
            p.wait(10)
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            p.kill()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # never under a home directory: as root the wheel chmods every parent folder
    parent = Path(tempfile.mkdtemp(prefix="timedb-emb-test-", dir="/tmp"))
    path = parent / "pgdata"
    yield path
    shutdown_postgres(path)
    shutil.rmtree(parent, ignore_errors=True)


def start_embedded(data_dir: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    args = [*exe("timedb"), "api", "--embedded", "--data-dir", str(data_dir), "--port", "0"]
    return start_server(args, server_env(None), "/readyz", cwd=cwd, timeout=60)


def write_value(url: str, value: float) -> int:
    with httpx.Client(base_url=url, timeout=30) as c:
        created = c.post("/series", json={"name": "embedded", "unit": "MW"})
        assert created.status_code == 200, created.text
        sid = created.json()["series_id"]
        ins = c.post(
            "/values", json={"series_id": sid, "data": [{"valid_time": "2025-01-01T00:00:00Z", "value": value}]}
        )
        assert ins.status_code == 200, ins.text
    return sid


def read_values(url: str, sid: int) -> list[float]:
    resp = httpx.get(url + "/values", params={"series_id": sid}, timeout=30)
    assert resp.status_code == 200, resp.text
    return [r["value"] for r in resp.json()["data"]]


def signal_and_wait(proc: subprocess.Popen, sig: int) -> str:
    """Everything the server printed, once it exited after sig."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"timedb did not exit after signal {sig}: {output_of(proc)}")
    return output_of(proc)


def test_embedded_serves_and_sigterm_stops_postgres(data_dir, procs, tmp_path):
    proc, url = start_embedded(data_dir, tmp_path)
    procs.append(proc)
    assert postmasters(data_dir), "no postgres running on the data dir"
    sid = write_value(url, 7.0)
    assert read_values(url, sid) == [7.0]
    out = signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, out)
    assert f"Embedded PostgreSQL in {data_dir}" in out
    assert "Traceback" not in out
    assert wait_postgres_gone(data_dir), f"postgres still running on {data_dir} after SIGTERM:\n{out}"


def test_embedded_ctrl_c_stops_postgres(data_dir, procs, tmp_path):
    proc, url = start_embedded(data_dir, tmp_path)
    procs.append(proc)
    assert httpx.get(url + "/", timeout=30).status_code == 200
    out = signal_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 0, (proc.returncode, out)
    assert "Traceback" not in out
    assert wait_postgres_gone(data_dir), f"postgres still running on {data_dir} after SIGINT:\n{out}"


def test_embedded_restart_keeps_data(data_dir, procs, tmp_path):
    proc, url = start_embedded(data_dir, tmp_path)
    procs.append(proc)
    sid = write_value(url, 3.25)
    signal_and_wait(proc, signal.SIGTERM)
    shutdown_postgres(data_dir)  # whatever the stop did, the next run starts postgres afresh
    assert wait_postgres_gone(data_dir)
    proc2, url2 = start_embedded(data_dir, tmp_path)
    procs.append(proc2)
    assert read_values(url2, sid) == [3.25]
    signal_and_wait(proc2, signal.SIGINT)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_embedded_recovers_from_a_killed_run(data_dir, procs, tmp_path, stop):
    """SIGKILL leaves postgres running; the next run reuses it and, when stopped, stops it."""
    proc, url = start_embedded(data_dir, tmp_path)
    procs.append(proc)
    sid = write_value(url, 1.0)
    proc.kill()
    proc.wait(timeout=10)
    assert postmasters(data_dir), "postgres should outlive a SIGKILLed timedb"
    proc2, url2 = start_embedded(data_dir, tmp_path)
    procs.append(proc2)
    assert read_values(url2, sid) == [1.0]
    out = signal_and_wait(proc2, stop)
    assert "Traceback" not in out
    assert wait_postgres_gone(data_dir), f"postgres still running on {data_dir} after {stop!r}:\n{out}"


def test_embedded_data_dir_must_be_a_directory(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = run_briefly(
        [*exe("timedb"), "api", "--embedded", "--data-dir", str(a_file), "--port", "0"],
        server_env(None),
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "--data-dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_process_left_behind():
    """Sanity: no timedb server started by this module is still running."""
    me = os.getpid()
    # the session's live_server fixture (`python -m uvicorn`) legitimately outlives this module
    leftovers = [
        p
        for p in psutil.Process(me).children(recursive=True)
        if "timedb" in (cmd := " ".join(p.cmdline() if p.is_running() else [])) and "-m uvicorn" not in cmd
    ]
    assert not leftovers, leftovers
