"""openapi/timedb.yaml passes two maintained OpenAPI linters without a warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

pytestmark = pytest.mark.contract

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "timedb.yaml"


def test_openapi_spec_validator():
    spec, _ = read_from_filename(str(SPEC))
    validate(spec)


def test_redocly_lint_recommended_rules():
    """Redocly CLI's `recommended` ruleset (npm `@redocly/cli`; runs offline); skipped where it is not installed."""
    redocly = os.environ.get("REDOCLY") or shutil.which("redocly")
    if redocly is None:
        pytest.skip("redocly not installed (npm install -g @redocly/cli)")
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    proc = subprocess.run(
        [redocly, "lint", "--format=json", str(SPEC)], capture_output=True, text=True, env=env, timeout=300
    )
    report = json.loads(proc.stdout)
    problems = [
        (p["ruleId"], p["severity"], p["message"], [loc.get("pointer") for loc in p["location"]])
        for p in report["problems"]
    ]
    assert report["totals"]["errors"] == report["totals"]["warnings"] == 0, problems
