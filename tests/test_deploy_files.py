"""The deployment files say what the README promises (the Dockerfile cannot be built here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.processes import ROOT
from timedb.cli import GRACEFUL_SHUTDOWN

DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def _cmd() -> list[str]:
    match = re.search(r"^CMD \[(.*)\]$", DOCKERFILE, re.MULTILINE)
    assert match, "no exec-form CMD in the Dockerfile"
    return [part.strip().strip('"') for part in match.group(1).split(",")]


def test_docker_runs_timedb_api_as_non_root_with_a_shutdown_limit():
    cmd = _cmd()
    assert cmd[:2] == ["timedb", "api"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    limit = int(cmd[cmd.index("--timeout-graceful-shutdown") + 1])
    stop = int(re.search(r"--stop-timeout (\d+)", DOCKERFILE).group(1))  # the documented docker run
    assert stop > limit
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_systemd_unit_waits_longer_than_the_graceful_shutdown():
    start = README.index("ExecStart=/usr/local/bin/timedb api")  # (the server's unit, not retention's)
    unit = README[README.rindex("[Service]", 0, start) : README.index("[Install]", start)]
    limit = int(re.search(r"--timeout-graceful-shutdown (\d+)", unit).group(1))
    assert int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1)) > limit
    assert "ExecStart=/usr/local/bin/timedb api" in unit


def test_the_cli_default_shutdown_limit_is_the_documented_one():
    assert f"[--timeout-graceful-shutdown {GRACEFUL_SHUTDOWN}]" in README
    assert f"`--timeout-graceful-shutdown` ({GRACEFUL_SHUTDOWN} s)" in README


def test_gunicorn_is_documented_with_timedb_worker():
    assert "-k timedb.workers.UvicornWorker" in README


def test_every_pip_install_of_timedb_is_from_the_checkout():
    """`pip install 'timedb[gunicorn]'` installs an unrelated package of that name from the index
    (issue 12): the README and the server's messages install extras from the checkout."""
    sources = [README, DOCKERFILE, *((ROOT / "timedb").joinpath(p).read_text() for p in ("cli.py", "embedded.py"))]
    # what pip is asked to install: the argument after `pip install` and its options (a lock file,
    # `-r requirements/X.txt`, names versions, not what to install)
    targets = [
        m.group(1)
        for text in sources
        for m in re.finditer(r"pip install (?:-[-\w]+(?:=\S+)? )*['\"]?([^\s'\"`]+)", re.sub(r"-r \S+ ?", "", text))
    ]
    checkout = [t for t in targets if t.startswith((".", "/"))]  # a path: the checkout
    assert len(checkout) >= 4, targets
    # a name on the index (other tools, e.g. pre-commit) is never timedb's
    assert not [t for t in targets if t not in checkout and re.match(r"timedb\b", t)], targets


def test_every_make_target_names_what_exists():
    """The task runner (issue 13): `make help` lists each target, and each one's commands name
    files, folders and tools that exist (checked with `make -n`, which runs nothing)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        import pytest

        pytest.skip("make is not installed")
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    targets = [line.split("\t")[0] for line in listed.splitlines()]
    assert {"serve", "test-fast", "test-all", "lint", "bench", "bench-smoke", "docs-check"} <= set(targets)
    for target in targets:
        commands = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for word in commands.replace("\\\n", " ").split():
            if "/" in word and re.fullmatch(r"[\w./-]+", word):  # (a path, not a sed expression)
                assert (ROOT / word).exists() or Path(word).exists(), (target, word)


def _pins(lock: str) -> dict[str, str]:
    """name -> version of a lock file (requirements/<lock>.txt, `name==version [; marker]` lines)."""
    from packaging.utils import canonicalize_name

    text = (ROOT / "requirements" / f"{lock}.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", text, re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def _wanted(extras: list[str]) -> list[Any]:
    """pyproject.toml's requirements for the server with these extras (the test extra names others)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted, todo = [Requirement(r) for r in project["dependencies"]], list(extras)
    while todo:
        for req in map(Requirement, project["optional-dependencies"][todo.pop()]):
            if req.name == "timedb":
                todo.extend(req.extras)
            else:
                wanted.append(req)
    return wanted


def test_the_lock_files_pin_what_pyproject_asks_for():
    """scripts/serve, scripts/test, CI and the Dockerfile install requirements/*.txt (issue 13):
    each pins every requirement of pyproject.toml at a version it allows (else: `make lock`)."""
    from packaging.utils import canonicalize_name

    for lock, extras in {"server": [], "embedded": ["embedded"], "test": ["test"]}.items():
        pins = _pins(lock)
        for req in _wanted(extras):
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is missing from requirements/{lock}.txt: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (lock, str(req), pins[name])
