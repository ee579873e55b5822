"""Test tiers (README "Development"): which tests a run selects.

A bare `pytest` runs the fast tier: unit, data-layer and in-process API tests, with a sample of
each large parameter grid. Tests of the other kinds carry a marker and run when asked:
`pytest --tier all` (what `./scripts/test` and CI run), `pytest -m browser`, or by naming their
files or node ids (whatever is named runs, whatever its kind).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

# marker: what a test of that kind does (pyproject.toml registers them with the same text)
KINDS = {
    "processes": "starts server processes, CLI commands or PostgreSQL clusters",
    "browser": "renders pages in headless Chromium",
    "client": "generates and uses a client from the spec",
    "contract": "Schemathesis and the spec's linters",
    "bench": "the benchmark's smoke run",
    "faults": "fault tests (tests/faults): killed processes and databases, misbehaving clients",
    "grid": "a large parameter grid: the fast tier runs a sample of its cases, the full tier all",
}
# folders whose every test is of one kind (their modules say so too): the fast tier does not even
# collect them (Schemathesis takes ~9 s to build its cases)
FOLDERS = {"contract-tests": "contract", "tests/faults": "faults"}
# fixtures that start a server process: a test using one is of kind `processes`
PROCESS_FIXTURES = {"live_server", "live", "procs", "cors_server"}
# cases of a `grid` test the fast tier keeps: the first, the middle and the last
GRID_SAMPLE = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=("fast", "all"),
        default=None,
        help="fast: unit, data-layer and in-process API tests, a sample of each grid (the default of "
        "a bare `pytest`); all: every test (the default when paths, node ids or -m are given)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # a folder given as an argument (testpaths) is collected whatever pytest_ignore_collect says
    if _tier(config) == "fast":
        config.args = [arg for arg in config.args if not _skipped_folder(config, Path(config.rootpath, arg))]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return True if _tier(config) == "fast" and _skipped_folder(config, collection_path) else None


def _skipped_folder(config: pytest.Config, path: Path) -> bool:
    path = path.resolve()
    return path.is_relative_to(config.rootpath) and path.relative_to(config.rootpath).as_posix() in FOLDERS


@pytest.hookimpl(trylast=True)  # (after the folders' own conftest files marked their tests)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.processes)
    if _tier(config) != "fast":
        return
    drop: list[pytest.Item] = []
    grids: dict[tuple[str, str], list[pytest.Item]] = defaultdict(list)
    for item in items:
        kinds = {m.name for m in item.iter_markers()} & KINDS.keys()
        if kinds == {"grid"}:
            grids[(item.path.as_posix(), getattr(item, "originalname", item.name))].append(item)
        elif kinds:
            drop.append(item)
    for cases in grids.values():
        picks = {0, len(cases) // 2, len(cases) - 1} if len(cases) > GRID_SAMPLE else set(range(len(cases)))
        drop.extend(case for i, case in enumerate(cases) if i not in picks)
    dropped = set(map(id, drop))
    keep = [item for item in items if id(item) not in dropped]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _tier(config: pytest.Config) -> str:
    chosen = config.getoption("--tier")
    if chosen:
        return str(chosen)
    named = config.args_source != pytest.Config.ArgsSource.TESTPATHS
    return "all" if named or config.option.markexpr else "fast"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject.toml): one worker per core, but none when particular tests are named
    (path::test): starting workers would take longer than the tests."""
    return 0 if any("::" in str(arg) for arg in config.args) else None


def pytest_report_header(config: pytest.Config) -> str:
    if _tier(config) == "fast":
        return "tier: fast (pytest --tier all runs every test; README 'Development')"
    return "tier: all"
