"""Every example of the README that talks to a server runs as written, in README order, against
one real server on one clean database (issue 12: the correction example used ids that the
examples before it had not made).

The shell blocks run in bash (curl made to fail on an error answer; `timedb` on PATH with the
server's database), the Python blocks with pandas, Polars, pyarrow and requests; only the
server's address is replaced. Blocks for other machines (`timedb.example.com`) and the one that
posts a file the reader supplies (`@forecast.json`) are left out, by the rule below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.processes

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> list[tuple[int, str, str]]:
    """(line, language, code) of each runnable example, in README order."""
    text = README.read_text()
    found = []
    for match in re.finditer(r"```(sh|python)\n(.*?)```", text, flags=re.S):
        code = match.group(2)
        if "localhost:8000" in code and "@forecast.json" not in code:
            found.append((text[: match.start()].count("\n") + 1, match.group(1), code))
    return found


def test_the_rule_finds_the_examples_of_each_section():
    lines = README.read_text().splitlines()
    sections = []
    for line, _, _ in examples():
        sections.append(next(h for h in reversed(lines[:line]) if h.startswith("## ")))
    assert sections == [
        "## Endpoints",
        "## Endpoints",
        "## Bulk loads and units",
        "## Bulk loads and units",
        "## Backtesting",
        "## Backtesting",
        "## Access control",
    ]


def test_every_example_runs_as_written_in_order(live, db_dsn):
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    base = str(live.base_url).rstrip("/")
    env = {**os.environ, "TIMEDB_DSN": db_dsn, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        for line, language, code in examples():
            code = code.replace("http://localhost:8000", base).replace("localhost:8000", base)
            if language == "sh":
                args = ["bash", "-euo", "pipefail", "-c", code.replace("curl ", "curl -sS --fail-with-body ")]
            else:
                args = [sys.executable, "-c", code]
            done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
            assert done.returncode == 0, f"README line {line}:\n{done.stdout}\n{done.stderr}"
    finally:  # the access-control example leaves a token: the next test's server must stay open
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE api_tokens")

    # what the examples mean: the correction of the version known at 2025-01-01 stored 150 at
    # 2025-01-02 with its details
    # (read in the database: the access-control example has just made tokens necessary)
    with psycopg.connect(db_dsn) as conn:
        corrected = conn.execute(
            "SELECT value, annotation, changed_by, tags FROM overlapping WHERE series_id = 1"
            " AND known_time = '2025-01-01T00:00:00Z'"
            " AND valid_time = '2025-01-02T00:00:00Z' ORDER BY change_time"
        ).fetchall()
    assert corrected == [(101.5, None, None, None), (150.0, "Corrected reading", "user@example.com", ["reviewed"])]
