"""First-run rough edges (issue 12): the scripts' install stamp, a busy port, a shared embedded PostgreSQL."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, server_env, start_server, stop_process
from tests.test_processes import (
    exe,
    lines,
    postmasters,
    read_values,
    run_briefly,
    shutdown_postgres,
    signal_and_wait,
    start_embedded,
    wait_postgres_gone,
    write_value,
)

pytestmark = pytest.mark.processes

# -- ./scripts/serve and ./scripts/test: install once, then only when pyproject.toml changes -------

# what the scripts need from the system, besides the stubs below
TOOLS = ("bash", "env", "dirname", "id", "cat", "cksum", "rm", "md5sum", "cut", "cp")
# the python stub's `-m pip install` puts a `timedb` stub into the venv, as the real one does
PIP_MAKES_TIMEDB = 'case "$*" in "-m pip install"*) cp "$0" "${0%/*}/timedb";; esac\n'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts and pyproject.toml, a fake virtualenv, and a PATH of stubs.

    Every stub (the venv's python, timedb, ruff, mypy, pytest; chromium, pgbouncer and npm on
    PATH) appends its name and arguments to calls.log and succeeds; no real tool runs.
    """
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", repo / "requirements")
    log = tmp_path / "calls.log"
    stub = f'#!/bin/sh\necho "${{0##*/}} $*" >> {log}\n'
    venv_bin = tmp_path / "venv" / "bin"
    system = tmp_path / "system"
    for folder, names in (
        (venv_bin, ("python", "timedb", "ruff", "mypy", "pytest")),
        (system, ("chromium", "pgbouncer", "npm")),
    ):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(stub + (PIP_MAKES_TIMEDB if name == "python" else ""))
            (folder / name).chmod(0o755)
    for tool in TOOLS:  # only these: a real redocly, apt-get or pip must not be found
        found = shutil.which(tool)
        assert found, tool
        (system / tool).symlink_to(found)
    return repo


def run_script(repo: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run scripts/<name>; returns the process and the stub calls it made."""
    log = repo.parent / "calls.log"
    log.unlink(missing_ok=True)
    env = {"PATH": str(repo.parent / "system"), "TIMEDB_VENV": str(repo.parent / "venv"), "HOME": str(repo.parent)}
    proc = subprocess.run(
        [str(repo / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc, [line.rstrip() for line in log.read_text().splitlines()] if log.exists() else []


def pip_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip install")]


def locked_install(extra: str) -> list[str]:
    """The pip commands of an install from the lock file requirements/<extra>.txt."""
    return [
        "python -m pip install -q --upgrade pip",
        f"python -m pip install -q -r requirements/{extra}.txt",
        "python -m pip install -q --no-deps -e .",
    ]


def test_serve_installs_on_the_first_run_only(checkout):
    proc, calls = run_script(checkout, "serve", "--port", "8080")
    assert pip_installs(calls) == locked_install("embedded")
    assert lines(proc.stderr) == [
        "installing timedb and its embedded PostgreSQL (first run, ~1 min)...",
        "starting the server...",
    ]
    assert calls[-1] == "timedb api --embedded --port 8080"

    proc, calls = run_script(checkout, "serve")
    assert pip_installs(calls) == [], "the second start ran pip again"
    assert lines(proc.stderr) == ["starting the server..."]
    assert calls == ["timedb api --embedded"]


def test_serve_reinstalls_when_pyproject_or_the_lock_changes_or_timedb_is_missing(checkout):
    run_script(checkout, "serve")
    for changed in ("pyproject.toml", "requirements/embedded.txt"):
        with (checkout / changed).open("a") as f:
            f.write("\n# a new dependency, say\n")
        proc, calls = run_script(checkout, "serve")
        assert pip_installs(calls) == locked_install("embedded")
        assert "pyproject.toml or requirements/embedded.txt changed" in proc.stderr
        assert pip_installs(run_script(checkout, "serve")[1]) == []

    (checkout.parent / "venv" / "bin" / "timedb").unlink()
    proc, calls = run_script(checkout, "serve")
    assert pip_installs(calls) == locked_install("embedded")
    assert "timedb command is missing" in proc.stderr


def test_test_script_installs_once_and_its_install_serves_serve_too(checkout):
    proc, calls = run_script(checkout, "test", "-q")
    assert pip_installs(calls) == locked_install("test")
    assert "installing timedb and its test tools (first run, ~2 min)..." in lines(proc.stderr)
    assert [c for c in calls if c.split()[0] in ("ruff", "mypy", "pytest")] == [
        "ruff check timedb tests contract-tests bench conftest.py",
        "ruff format --check timedb tests contract-tests bench conftest.py",
        "mypy",
        "pytest --tier all -q",
    ]

    proc, calls = run_script(checkout, "test", "-q")
    assert pip_installs(calls) == [], "the second run ran pip again"
    assert "installing timedb" not in proc.stderr
    # the test extra includes the embedded one: serve needs no install of its own
    assert pip_installs(run_script(checkout, "serve")[1]) == []


def test_test_script_says_before_installing_an_npm_tool_globally(checkout):
    proc, calls = run_script(checkout, "test", "-q")
    assert "npm install -g -s @redocly/cli@2.77.0" in calls
    notices = [line for line in lines(proc.stderr) if "redocly" in line.lower()]
    assert len(notices) == 1, proc.stderr
    assert "globally" in notices[0] and "npm install -g" in notices[0] and "lint" in notices[0], notices[0]


# -- timedb api: everything that can fail at start fails before a URL is printed ----------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server listens on (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_one_line_and_no_url(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert lines(proc.stderr) == [expected], proc.stderr
    assert "http://" not in proc.stdout + proc.stderr, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_busy_port_is_one_line_and_no_url(make_database, busy_port, tmp_path):
    proc = run_briefly([*exe("timedb"), "api", "--port", str(busy_port)], server_env(make_database()), cwd=tmp_path)
    assert_one_line_and_no_url(
        proc, f"Error: port {busy_port} on 127.0.0.1 is in use (another server?); choose another with --port."
    )
    assert proc.stdout == ""


def test_busy_port_with_embedded_starts_no_postgres(busy_port, embedded_dir, tmp_path):
    proc = run_briefly(
        [*exe("timedb"), "api", "--embedded", "--data-dir", str(embedded_dir), "--port", str(busy_port)],
        server_env(None),
        cwd=tmp_path,
    )
    assert_one_line_and_no_url(
        proc, f"Error: port {busy_port} on 127.0.0.1 is in use (another server?); choose another with --port."
    )
    assert not embedded_dir.exists(), "PostgreSQL was set up for a server that cannot listen"


def test_pool_sizes_that_cannot_work_fail_before_any_url(make_database, tmp_path):
    proc = run_briefly(
        [*exe("timedb"), "api", "--port", "0"],  # (never bound: the settings fail first)
        server_env(make_database(), TIMEDB_POOL_MIN_SIZE="20", TIMEDB_POOL_MAX_SIZE="10"),
        cwd=tmp_path,
    )
    assert_one_line_and_no_url(
        proc,
        "Error: TIMEDB_POOL_MIN_SIZE (20) must lie between 0 and TIMEDB_POOL_MAX_SIZE (10), which must be at least 1",
    )


# -- two servers on one embedded data directory -------------------------------------------------------


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory for embedded PostgreSQL (not created); postgres on it is stopped at teardown."""
    path = tmp_path / "pg" / "pgdata"  # under /tmp, never a home directory (the wheel chmods parents as root)
    path.parent.mkdir()
    yield path
    shutdown_postgres(path)


@pytest.mark.parametrize("first_to_stop", ["starter", "joiner"])
def test_two_servers_on_one_data_dir_say_what_happens_to_postgres(embedded_dir, procs, tmp_path, first_to_stop):
    """The last timedb process using the embedded PostgreSQL stops it; the others say they left it running."""
    starter, url1 = start_embedded(embedded_dir, tmp_path)
    procs.append(starter)
    joiner, url2 = start_embedded(embedded_dir, tmp_path)
    procs.append(joiner)
    sid = write_value(url1, 2.5)
    first, other, other_url = (starter, joiner, url2) if first_to_stop == "starter" else (joiner, starter, url1)

    out = signal_and_wait(first, signal.SIGTERM)
    if first is joiner:
        assert f"already running, shared with timedb process {starter.pid}" in out, out
    assert "Embedded PostgreSQL stopped." not in out, out
    assert f"Embedded PostgreSQL left running: timedb process {other.pid} still uses it." in out, out
    assert postmasters(embedded_dir), "postgres stopped under the other server"
    assert read_values(other_url, sid) == [2.5]

    out = signal_and_wait(other, signal.SIGTERM)
    if other is joiner:
        assert f"already running, shared with timedb process {starter.pid}" in out, out
    assert "Embedded PostgreSQL stopped." in out, out
    assert wait_postgres_gone(embedded_dir), out


def test_a_database_without_tables_is_a_warning_at_start(make_database):
    """The server starts (its probes say not ready) and says at once what to run."""
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"], server_env(make_database(with_tables=False))
    )
    assert httpx.get(url + "/readyz").status_code == 503
    out = stop_process(proc)
    assert "no timedb tables: run `timedb create tables`" in out, out
