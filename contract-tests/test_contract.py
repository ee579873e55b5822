from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from schemathesis.python import asgi

from timedb.app import create_app
from timedb.settings import Settings

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "openapi" / "timedb.yaml"
config = schemathesis.Config.from_path(HERE / "schemathesis.toml")
schema = schemathesis.openapi.from_path(SPEC, config=config)


@pytest.fixture(scope="module")
def contract_app(make_database):
    app = create_app(Settings(dsn=make_database(), validate_responses=True))
    yield app
    asgi.shutdown_lifespans()


@schema.parametrize()
def test_api(case, contract_app):
    case.call_and_validate(app=contract_app)
