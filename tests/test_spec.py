"""The OpenAPI contract (openapi/timedb.yaml) is complete, valid and wired to the handlers."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import LOCAL

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "openapi" / "timedb.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
CONTROLLERS = ("timedb.handlers.root", "timedb.handlers.series", "timedb.handlers.values")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items() if method in METHODS
    ]


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow local $refs until a non-reference node."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def test_spec_file_is_openapi_3_0(spec):
    assert str(spec["openapi"]).startswith("3.0."), spec["openapi"]


def test_the_served_spec_is_the_repository_one(client, spec):
    """GET /openapi.json serves openapi/timedb.yaml (packaged in wheels: the same file), only its
    `servers` entry set from the root path. (Validation by openapi-spec-validator and Redocly:
    contract-tests/test_spec_lint.py.)"""
    served = client.get("/openapi.json").json()
    assert served["servers"] == [{"url": "/"}]
    assert served["info"] == json.loads(json.dumps(spec["info"]))

    def operations(document: dict[str, Any]) -> dict[tuple[str, str], str]:
        return {
            (path, method): op["operationId"]
            for path, item in document["paths"].items()
            for method, op in item.items()
            if isinstance(op, dict) and "operationId" in op
        }

    # (Connexion serves some references resolved: compare what they cannot change)
    assert operations(served) == operations(spec)
    assert set(served["components"]["schemas"]) == set(spec["components"]["schemas"])


def test_spec_version_matches_package(spec):
    import timedb

    assert spec["info"]["version"] == timedb.__version__


def test_operation_ids_unique_and_complete(spec):
    ops = operations(spec)
    assert ops
    ids = [op.get("operationId") for _, _, op in ops]
    missing = [f"{m.upper()} {p}" for p, m, op in ops if not op.get("operationId")]
    assert not missing, f"operations without operationId: {missing}"
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {ids}"


@pytest.mark.parametrize("field", ["summary", "x-openapi-router-controller", "tags"])
def test_every_operation_has(spec, field):
    missing = [f"{m.upper()} {p}" for p, m, op in operations(spec) if not op.get(field)]
    assert not missing, f"operations without {field}: {missing}"


def test_every_operation_id_resolves_to_a_function(spec):
    for path, method, op in operations(spec):
        controller = op["x-openapi-router-controller"]
        module = importlib.import_module(controller)
        func = getattr(module, op["operationId"], None)
        assert callable(func), f"{method.upper()} {path}: {controller}.{op['operationId']} does not exist"
        assert func.__module__ == controller, (path, method, func.__module__)


def test_every_public_handler_is_an_operation(spec):
    routed = {(op["x-openapi-router-controller"], op["operationId"]) for _, _, op in operations(spec)}
    for name in CONTROLLERS:
        module = importlib.import_module(name)
        public = {
            fname
            for fname, f in inspect.getmembers(module, inspect.isfunction)
            if f.__module__ == name and not fname.startswith("_")
        }
        assert public, name
        unrouted = {f for f in public if (name, f) not in routed}
        assert not unrouted, f"public functions of {name} that no operation routes to: {sorted(unrouted)}"


def test_handler_signatures_accept_every_parameter(spec):
    """Connexion passes query parameters as keyword arguments: each must be accepted, none required extra."""
    for path, method, op in operations(spec):
        func = getattr(importlib.import_module(op["x-openapi-router-controller"]), op["operationId"])
        sig = inspect.signature(func)
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        params = [resolve(spec, p) for p in spec["paths"][path].get("parameters", []) + op.get("parameters", [])]
        names = {p["name"] for p in params if p["in"] in ("query", "path")}
        if not has_kwargs:
            unknown = names - set(sig.parameters)
            assert not unknown, f"{method.upper()} {path}: handler ignores parameters {sorted(unknown)}"
        required = {
            n
            for n, p in sig.parameters.items()
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        spec_required = {p["name"] for p in params if p.get("required")}
        assert required <= spec_required, f"{method.upper()} {path}: handler requires {sorted(required)}"


def test_every_operation_has_a_default_problem_response(spec):
    for path, method, op in operations(spec):
        responses = op["responses"]
        assert "default" in responses, f"{method.upper()} {path} has no default response"
        default = resolve(spec, responses["default"])
        assert list(default.get("content", {})) == [PROBLEM], (path, method)
        schema = resolve(spec, default["content"][PROBLEM]["schema"])
        assert schema is resolve(spec, {"$ref": "#/components/schemas/Problem"}), (path, method)


def test_every_error_response_is_problem_json(spec):
    for path, method, op in operations(spec):
        codes = [c for c in op["responses"] if not str(c).startswith("2")]
        assert any(str(c).startswith("4") for c in codes) or path in ("/", "/healthz", "/readyz"), (path, method)
        for code in codes:
            response = resolve(spec, op["responses"][code])
            assert response.get("description"), (path, method, code)
            assert list(response.get("content", {})) == [PROBLEM], (path, method, code)


def test_every_success_response_is_json(spec):
    """(but the Prometheus metrics, whose format is text)"""
    for path, method, op in operations(spec):
        ok = [c for c in op["responses"] if str(c).startswith("2")]
        assert ok, (path, method)
        if path == "/metrics":
            assert list(resolve(spec, op["responses"]["200"])["content"]) == ["text/plain"]
            continue
        for code in ok:
            assert "application/json" in resolve(spec, op["responses"][code]).get("content", {}), (path, method)


def _object_schemas(spec: dict[str, Any], schema: Any, seen: set[int]) -> list[tuple[str, dict[str, Any]]]:
    """Every object schema with declared properties reachable from schema (refs resolved)."""
    name = schema.get("$ref", "(inline)") if isinstance(schema, dict) else "(inline)"
    schema = resolve(spec, schema)
    if not isinstance(schema, dict) or id(schema) in seen:
        return []
    seen.add(id(schema))
    found = [(name, schema)] if "properties" in schema else []
    for sub in (schema.get("properties") or {}).values():
        found += _object_schemas(spec, sub, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _object_schemas(spec, schema[key], seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            found += _object_schemas(spec, sub, seen)
    return found


def test_request_bodies_reject_unknown_fields(spec):
    bodies = 0
    for path, method, op in operations(spec):
        if "requestBody" not in op:
            continue
        body = resolve(spec, op["requestBody"])
        assert body.get("required") is True, (path, method)
        for media, content in body["content"].items():
            bodies += 1
            top = resolve(spec, content["schema"])
            assert top.get("additionalProperties") is False, (path, method, media)
            for name, schema in _object_schemas(spec, content["schema"], set()):
                assert schema.get("additionalProperties") is False, (path, method, name)
    assert bodies >= 3  # POST /series, POST /values, PUT /values


def test_required_properties_are_declared(spec):
    """A `required` name missing from `properties` is undocumented in Swagger UI / ReDoc."""
    problems = []
    for name, schema in spec["components"]["schemas"].items():
        props = schema.get("properties")
        if props is None:
            continue
        undeclared = set(schema.get("required", [])) - set(props)
        if undeclared:
            problems.append(f"{name}: {sorted(undeclared)}")
    assert not problems, "required but not in properties: " + "; ".join(problems)


def test_links_name_existing_operations(spec):
    ids = {op["operationId"] for _, _, op in operations(spec)}
    for path, method, op in operations(spec):
        for code, response in op["responses"].items():
            for link_name, link in (resolve(spec, response).get("links") or {}).items():
                assert link.get("operationId") in ids, (path, method, code, link_name)


def test_examples_validate_against_their_schemas(spec):
    """Request-body examples must be valid requests (they are what Swagger UI pre-fills)."""
    from openapi_schema_validator import OAS30Validator

    for path, method, op in operations(spec):
        body = op.get("requestBody")
        if not body:
            continue
        for media, content in resolve(spec, body)["content"].items():
            schema = {**content["schema"], "components": spec["components"]}
            validator = OAS30Validator(schema)
            for ex_name, example in (content.get("examples") or {}).items():
                errors = [e.message for e in validator.iter_errors(resolve(spec, example)["value"])]
                assert not errors, (path, method, media, ex_name, errors)


# -- response validation is on in the tests -------------------------------------------------


def test_app_fixture_validates_responses(app):
    """conftest's `app` builds the app with validate_responses=True."""
    apis = app.middleware.apis
    assert apis, "no API registered"
    assert all(api.kwargs.get("validate_responses") is True for api in apis)


def test_validate_responses_env_switch():
    from timedb.settings import Settings

    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_VALIDATE_RESPONSES": "1"}).validate_responses is True
    assert Settings.from_env({"TIMEDB_DSN": "x"}).validate_responses is False


@pytest.mark.parametrize("validate", [True, False])
def test_a_response_outside_the_spec_is_caught(db_dsn, monkeypatch, validate):
    """With validate_responses a handler answering outside its schema gives a 500 problem, not bad data."""
    import timedb.handlers.root as root
    from timedb.app import create_app
    from timedb.settings import Settings

    def bad_health():
        return {"status": "not-an-allowed-value"}, 200, {"Content-Type": "application/json"}

    monkeypatch.setattr(root, "get_health", bad_health)
    app = create_app(Settings(dsn=db_dsn, validate_responses=validate))
    with app.test_client(**LOCAL) as client:
        resp = client.get("/healthz")
    if validate:
        assert resp.status_code == 500, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert "not-an-allowed-value" not in resp.text or resp.json()["status"] == 500
    else:
        assert resp.status_code == 200
        assert resp.json() == {"status": "not-an-allowed-value"}
