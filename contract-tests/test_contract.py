"""Schemathesis against the real app and PostgreSQL: every check, positive and negative, stateless and stateful.

The default run is small and deterministic (CI); TIMEDB_FUZZ_EXAMPLES=N makes it a deep, randomised one.
See contract-tests/README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from contract_seed import refused_by_documented_rule, steer_to_seed

pytestmark = pytest.mark.contract

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "openapi" / "timedb.yaml"
DEEP = int(os.environ.get("TIMEDB_FUZZ_EXAMPLES", "0"))

config = schemathesis.Config.from_path(HERE / "schemathesis.toml")
if DEEP:
    config.projects.default.generation.update(max_examples=DEEP, deterministic=False)
schema = schemathesis.openapi.from_path(SPEC, config=config)


@schemathesis.serializer("application/x-ndjson", "application/vnd.apache.arrow.stream")
def text_or_bytes(ctx, value):
    """NDJSON and Arrow request bodies (POST /values/bulk): bytes as they are, text as UTF-8
    (lone surrogates kept: invalid UTF-8 is a case too), anything else as JSON text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@schemathesis.check
def problems_say_what_to_fix(ctx, response, case):
    """Every 400 is a timedb problem type whose `errors` says where each fault is (issue 12)."""
    if response.status_code != 400:
        return None
    problem = json.loads(response.content)
    assert problem.get("type", "").startswith("/problems/"), f"a 400 of type {problem.get('type')!r}"
    errors = problem.get("errors")
    assert errors, "a 400 without `errors`"
    for error in errors:
        assert error.get("in") in ("query", "path", "header", "body"), f"an error that says not where: {error}"
        assert ("pointer" if error["in"] == "body" else "name") in error, f"an error that says not where: {error}"
    assert "\n" not in problem.get("detail", ""), "a detail of more than one line"
    return None


schema.hook("map_case")(steer_to_seed)
schema.hook("filter_failure")(refused_by_documented_rule)


def record(stats, case, response):
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    key = (case.operation.label, mode, response.status_code)
    stats[key] = stats.get(key, 0) + 1


@schema.parametrize()
def test_operation(case, contract_target, contract_stats):
    """Every operation, positive and negative data, all checks."""
    response = case.call_and_validate(**contract_target.call_kwargs)
    record(contract_stats, case, response)


def test_stateful_links(contract_target, contract_stats):
    """Sequences built from the spec's OpenAPI links: create a series, insert into it, read and correct it."""

    class Workflow(schema.as_state_machine()):
        def setup(self):
            # the same steps must meet the same data, or Hypothesis reports flaky generation
            contract_target.reset()

        def get_call_kwargs(self, case):
            return dict(contract_target.call_kwargs)

        def after_call(self, response, case):
            record(contract_stats, case, response)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=DEEP // 10 or 150,
            stateful_step_count=10,
            deadline=None,
            derandomize=not DEEP,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
