"""Fast request/response body validation for Connexion: orjson + jsonschema-rs.

Connexion's stock validator parses JSON twice with the stdlib and validates with
python-jsonschema (seconds for a 100,000-point body). These validators parse once
with orjson, validate with the Rust jsonschema-rs against the same spec schema,
and leave the parsed body in the request scope for the handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import jsonschema_rs
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, NonConformingResponseBody
from connexion.validators import (
    VALIDATOR_MAP,
    AbstractRequestBodyValidator,
    AbstractResponseBodyValidator,
)
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from timedb.errors import PayloadTooLarge, Unprocessable

BODY_KEY = "timedb_body"


def to_json_schema(node: Any) -> Any:
    """Turn an OpenAPI 3.0 schema into JSON Schema: `nullable: true` becomes anyOf null."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if k not in ("nullable", "example", "examples", "discriminator", "xml", "externalDocs")}
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


_compiled: dict[str, jsonschema_rs.Draft4Validator] = {}


_by_identity: dict[int, tuple[dict[str, Any], jsonschema_rs.Draft4Validator]] = {}


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Draft4Validator:
    """A cached jsonschema-rs validator for an (already dereferenced) OpenAPI schema."""
    # Connexion builds a validator per request with the same schema object (which carries every
    # component of the spec): look it up by identity before serialising it for the content key
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
    if key not in _compiled:
        _compiled[key] = jsonschema_rs.Draft4Validator(to_json_schema(schema), validate_formats=False)
    _by_identity[id(schema)] = (schema, _compiled[key])  # holds the schema, so its id stays unique
    return _compiled[key]


def first_error(validator: jsonschema_rs.Draft4Validator, instance: Any) -> str | None:
    """A readable message for the first validation error, or None."""
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.instance_path)
        message = error.message
        if len(message) > 300:
            message = message[:300] + "..."
        return f"{message} (at /{path})" if path else message
    return None


def _parse_error(raw: bytes, exc: Exception) -> Exception:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return cast(Exception, BadRequestProblem(detail="The request body is not valid UTF-8."))
    try:
        json.loads(text)  # the stdlib accepts NaN, Infinity and 1e400 where orjson does not
    except (ValueError, RecursionError):
        return cast(Exception, BadRequestProblem(detail=f"The request body is not valid JSON: {exc}"))
    return Unprocessable("Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed.")


class FastJSONBodyValidator(AbstractRequestBodyValidator):  # type: ignore[misc]
    """Parse with orjson, validate with jsonschema-rs, stash the body in the scope."""

    max_body_bytes = 256 * 1024 * 1024

    def __init__(self, *, schema: dict[str, Any], required: bool = False, nullable: bool = False,
                 encoding: str, strict_validation: bool, **kwargs: Any) -> None:
        super().__init__(schema=schema, required=required, nullable=nullable, encoding=encoding,
                         strict_validation=strict_validation)
        self._rs = compile_schema(schema)

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        size = 0
        chunks = []
        async for chunk in stream:
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"The request body exceeds {self.max_body_bytes} bytes.")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _parse_error(raw, exc) from None
        scope.setdefault("state", {})[BODY_KEY] = body
        return body

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        """Read and validate the body, with or without Content-Length (chunked bodies too:
        Connexion's base class takes a missing Content-Length for a missing body)."""
        messages: list[Message] = []

        async def stream() -> AsyncGenerator[bytes, None]:
            more_body = True
            while more_body:
                message = await receive()
                messages.append(message)
                more_body = message.get("more_body", False)
                yield message.get("body", b"")

        self._validate(await self._parse(stream(), scope=scope))
        return self._insert_messages(receive, messages=messages), scope

    def _validate(self, body: Any) -> None:
        if body is None:
            raise BadRequestProblem(detail="The request body must not be empty.")
        message = first_error(self._rs, body)
        if message is not None:
            raise BadRequestProblem(detail=message)


class FastJSONResponseValidator(AbstractResponseBodyValidator):  # type: ignore[misc]
    """Validate buffered JSON responses; pass streamed ones (no Content-Length) through."""

    def __init__(self, scope: Scope, *, schema: dict[str, Any], nullable: bool = False,
                 encoding: str) -> None:
        super().__init__(scope, schema=schema, nullable=nullable, encoding=encoding)
        self._rs = compile_schema(schema)

    def wrap_send(self, send: Send) -> Send:
        messages: list[Message] = []
        streamed = False

        async def send_(message: Message) -> None:
            nonlocal streamed
            if message["type"] == "http.response.start":
                streamed = "content-length" not in Headers(raw=message.get("headers", []))
            if streamed:
                await send(message)
                return
            messages.append(message)
            if message["type"] == "http.response.start" or message.get("more_body", False):
                return
            raw = b"".join(m.get("body", b"") for m in messages)
            if raw:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise NonConformingResponseBody(detail=f"Response is not JSON: {exc}") from None
                problem = first_error(self._rs, body)
                if problem is not None:
                    raise NonConformingResponseBody(
                        detail=f"Response body does not conform to specification: {problem}")
            while messages:
                await send(messages.pop(0))

        return send_


def validator_map(max_body_bytes: int) -> dict[str, Any]:
    """Connexion's validator_map with the fast JSON validators (MediaTypeDict, or it is ignored)."""
    body_cls: Callable[..., Any] = type(
        "FastJSONBodyValidator", (FastJSONBodyValidator,), {"max_body_bytes": max_body_bytes})
    body = MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": body_cls})
    response = MediaTypeDict({**VALIDATOR_MAP["response"], "*/*json": FastJSONResponseValidator})
    return {"body": body, "response": response}
