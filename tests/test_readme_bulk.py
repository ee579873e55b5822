"""The README's "Bulk loads and units" examples run as written, in order, against a real server.

The curl commands run in a shell and the Python block runs with pandas, Polars, pyarrow and
requests, with only the server's address replaced. The stored values are then read back and
compared with what the examples mean: kW sent into MW series, one run sent three times.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str, language: str) -> list[str]:
    """The fenced code blocks of one README section, in order."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else None]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_bulk_examples_run_as_written(live):
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    base = str(live.base_url).rstrip("/")
    (shell,) = section_blocks("Bulk loads and units", "sh")
    (python,) = section_blocks("Bulk loads and units", "python")
    commands = shell.replace("localhost:8000", base)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands.replace("curl ", "curl -sS --fail-with-body ")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # the curl block: two series (ids 1 and 2 on a clean database), 101500 kW and 42000 kW
    series = live.get("/series", params={"name": "wind_power"}).json()
    assert sorted((s["series_id"], s["labels"]["site"], s["unit"]) for s in series) == [
        (1, "Gotland", "MW"),
        (2, "Lillgrund", "MW"),
    ]
    first = live.get("/values", params={"series_id": 2}).json()["data"]
    assert [(r["valid_time"], r["value"]) for r in first] == [("2025-01-02T00:00:00+00:00", 42.0)]

    namespace: dict = {}
    exec(compile(python.replace("http://localhost:8000", base), "README.md", "exec"), namespace)
    arrow = namespace["r"].json()  # the Arrow request's answer: the run was stored by the CSV one
    assert (arrow["rows_inserted"], arrow["rows_skipped"]) == (0, 3)

    # the Python block: the same run three times; stored once, skipped twice
    rows = live.get("/values", params={"series_id": 1, "versions": "true"}).json()["data"]
    run = [(r["valid_time"], r["known_time"], r["value"]) for r in rows if r["known_time"].startswith("2025-01-01T06")]
    assert sorted(run) == [
        ("2025-01-02T00:00:00+00:00", "2025-01-01T06:00:00+00:00", 101.5),
        ("2025-01-02T01:00:00+00:00", "2025-01-01T06:00:00+00:00", 99.0),
    ]
    latest = live.get("/values", params={"series_id": 2}).json()["data"]
    assert [(r["valid_time"], r["value"]) for r in latest] == [("2025-01-02T00:00:00+00:00", 42.0)]
