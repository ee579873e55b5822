"""Fast request/response body validation for Connexion: orjson + jsonschema-rs.

Connexion's stock validator parses JSON twice with the stdlib and validates with
python-jsonschema (seconds for a 100,000-point body). These validators parse once
with orjson, validate with the Rust jsonschema-rs against the same spec schema,
and leave the parsed body in the request scope for the handler.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import anyio
import jsonschema_rs
import msgspec
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import NonConformingResponseBody
from connexion.validators import (
    VALIDATOR_MAP,
    AbstractRequestBodyValidator,
    AbstractResponseBodyValidator,
    ParameterValidator,
)
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from timedb.bulk_formats import MEDIA_TYPES as RAW_MEDIA_TYPES
from timedb.bulk_formats import RawBody
from timedb.errors import (
    InvalidInput,
    PayloadTooLarge,
    RequestTimeout,
    SchemaViolation,
    Unprocessable,
    error_entry,
    json_pointer,
)
from timedb.points import SLICED, non_finite
from timedb.settings import MAX_BODY_BYTES

# where the validator leaves the parsed body and the Idempotency-Key fingerprint in the scope
BODY_KEY = "timedb_body"
FINGERPRINT_KEY = "timedb_fingerprint"
IDEMPOTENCY_HEADER = "idempotency-key"


def to_json_schema(node: Any) -> Any:
    """Turn an OpenAPI 3.0 schema into JSON Schema: `nullable: true` becomes anyOf null."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_json_schema(v)
        for k, v in node.items()
        if k not in ("nullable", "example", "examples", "discriminator", "xml", "externalDocs")
    }
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


_compiled: dict[str, jsonschema_rs.Draft4Validator] = {}


_by_identity: dict[tuple[int, str | None], tuple[dict[str, Any], jsonschema_rs.Draft4Validator]] = {}

# free-form JSON (batch_params) may nest at most this deep (PostgreSQL's jsonb and the
# JSON encoders have recursion limits; no real parameter set is deeper)
MAX_DEPTH = 32


def too_deep(value: Any, limit: int) -> bool:
    """True when objects and arrays in value nest more than `limit` levels."""
    level = [value]
    for _ in range(limit + 1):
        level = [
            child
            for node in level
            if isinstance(node, (dict, list))
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return True


class MaxDepth:
    """The spec's `x-max-depth: N` keyword: objects and arrays nested at most N levels."""

    def __init__(self, _parent: dict[str, Any], value: int, _path: Any) -> None:
        self.limit = value

    def validate(self, instance: Any) -> None:
        if too_deep(instance, self.limit):
            raise ValueError(f"nests deeper than {self.limit} levels")


def compile_schema(schema: dict[str, Any], without: str | None = None) -> jsonschema_rs.Draft4Validator:
    """A cached jsonschema-rs validator for an (already dereferenced) OpenAPI schema,
    optionally without one of its properties (validated separately)."""
    # Connexion builds a validator per request with the same schema object (which carries every
    # component of the spec): look it up by identity before serialising it for the content key
    hit = _by_identity.get((id(schema), without))
    if hit is not None and hit[0] is schema:
        return hit[1]
    converted = to_json_schema(_without(schema, without) if without else schema)
    key = orjson.dumps(converted, option=orjson.OPT_SORT_KEYS).decode()
    if key not in _compiled:
        _compiled[key] = jsonschema_rs.Draft4Validator(
            converted, validate_formats=False, keywords={"x-max-depth": MaxDepth}
        )
    _by_identity[(id(schema), without)] = (schema, _compiled[key])  # holds the schema: its id stays unique
    return _compiled[key]


# at most this many entries in a 400's `errors` list
MAX_ERRORS = 20


def _pointer(error: Any) -> str:
    """Where an error is: its instance's pointer, or the member that is missing or unexpected."""
    parts = list(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        parts.append(kind.property)
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties) and len(kind.unexpected) == 1:
        parts.append(kind.unexpected[0])
    return json_pointer(parts)


def _message(error: Any) -> str:
    if (
        isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Pattern)
        and isinstance(error.instance, str)
        and "\x00" in error.instance
    ):
        return NUL_MESSAGE
    message: str = error.message
    return message[:300] + "..." if len(message) > 300 else message


def body_errors(validator: jsonschema_rs.Draft4Validator, instance: Any) -> list[dict[str, Any]]:
    """Each validation error of a JSON body as an `errors` entry (at most MAX_ERRORS)."""
    errors: list[dict[str, Any]] = []
    try:
        for error in validator.iter_errors(instance):
            errors.append(error_entry(_message(error), body=_pointer(error)))
            if len(errors) == MAX_ERRORS:
                break
    except ValueError:  # jsonschema-rs gives up on instances nested hundreds of levels deep
        members = instance.items() if isinstance(instance, dict) else ()
        deep = next((name for name, value in members if too_deep(value, MAX_DEPTH)), None)
        return [
            error_entry(
                f"nests deeper than {MAX_DEPTH} levels" if deep else "The request body nests too deeply.",
                body=json_pointer([deep] if deep else []),
            )
        ]
    return errors


def first_error(validator: jsonschema_rs.Draft4Validator, instance: Any) -> str | None:
    """A readable message for the first validation error, or None."""
    errors = body_errors(validator, instance)
    return _located(errors[0]) if errors else None


def _located(entry: dict[str, Any]) -> str:
    """An `errors` entry of the body as one line: the message and where."""
    return f"{entry['message']} (at {entry['pointer']})" if entry.get("pointer") else entry["message"]


def invalid_body(errors: list[dict[str, Any]]) -> InvalidInput:
    return SchemaViolation(_located(errors[0]), errors=errors)


NUL_MESSAGE = "must not contain the NUL character (U+0000): PostgreSQL text cannot hold it"


def nul_errors(raw: bytes | bytearray | str, value: Any) -> list[dict[str, Any]]:
    """`errors` entries (at most MAX_ERRORS) for the NULs in value, parsed from the JSON text raw:
    JSON can only hold a NUL escaped, so raw is searched first and the walk is rare."""
    found = _ESCAPED_NUL.decode() in raw if isinstance(raw, str) else _ESCAPED_NUL in raw
    if not found:
        return []
    return [error_entry(NUL_MESSAGE, body=p) for p in islice(nul_pointers(value), MAX_ERRORS)]


def nul_pointers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[str]:
    """The JSON pointers of the keys and strings in value that hold a NUL, in document order."""
    if isinstance(value, str):
        if "\x00" in value:
            yield json_pointer(path)
    elif isinstance(value, dict):
        for key, member in value.items():
            if "\x00" in key:
                yield json_pointer((*path, key))
            else:
                yield from nul_pointers(member, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from nul_pointers(item, (*path, i))


def _parse_error(raw: bytes | bytearray, exc: Exception) -> Exception:
    if not raw.isascii():  # (ASCII is UTF-8: no decoded copy of a large body)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return SchemaViolation("The request body is not valid UTF-8.", body="")
    reason = str(exc).lower()
    if non_finite(raw) or "infinity" in reason or "out of range" in reason:
        return Unprocessable("Numbers must be finite: NaN, Infinity and out-of-range numbers are not allowed.")
    return SchemaViolation(f"The request body is not valid JSON: {exc}", body="")


def _without(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """The object schema without one property."""
    out = {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items() if k != field}}
    required = [r for r in schema.get("required", []) if r != field]
    if required:
        out["required"] = required
    else:
        out.pop("required", None)  # draft 4 wants a non-empty list
    return out


class FastJSONBodyValidator(AbstractRequestBodyValidator):  # type: ignore[misc]
    """Parse with orjson, validate with jsonschema-rs, stash the body in the scope.

    A schema marked `x-timedb-sliced: <field>` (POST /values) keeps that array as the raw
    body bytes, validated slice by slice (timedb.points), so a large body is never held as
    Python objects; the rest of the body is validated against the schema as usual.
    """

    max_body_bytes = MAX_BODY_BYTES
    client_timeout = 30.0

    def __init__(
        self,
        *,
        schema: dict[str, Any],
        required: bool = False,
        nullable: bool = False,
        encoding: str,
        strict_validation: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            schema=schema, required=required, nullable=nullable, encoding=encoding, strict_validation=strict_validation
        )
        self._sliced: str | None = schema.get("x-timedb-sliced")
        self._rs = compile_schema(schema, without=self._sliced)

    async def _read(self, receive: Receive, scope: Scope) -> bytearray:
        """The whole body (never more than max_body_bytes), waiting at most client_timeout
        for each part; with an Idempotency-Key, its fingerprint goes to the scope."""
        raw = bytearray()
        digest = None
        if IDEMPOTENCY_HEADER in Headers(scope=scope):
            digest = hashlib.sha256(f"{scope['method']} {scope['path']}\n".encode())
        more_body = True
        while more_body:
            try:
                with anyio.fail_after(self.client_timeout or None):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {self.client_timeout:g} s "
                    "(TIMEDB_CLIENT_TIMEOUT); send it without pauses."
                ) from None
            if message["type"] == "http.disconnect":
                raise RequestTimeout("The client went away before sending the whole body.")
            chunk = message.get("body", b"")
            if len(raw) + len(chunk) > self.max_body_bytes:
                raise PayloadTooLarge(f"The request body exceeds {self.max_body_bytes} bytes.")
            raw += chunk
            if digest is not None:
                digest.update(chunk)
            more_body = message.get("more_body", False)
        if digest is not None:
            scope.setdefault("state", {})[FINGERPRINT_KEY] = digest.digest()
        return raw

    def _parse(self, raw: bytearray) -> Any:
        if not raw or raw.isspace():  # (strip() would copy a large body)
            return None
        if self._sliced is None:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _parse_error(raw, exc) from None
        # top-level members as raw JSON; all but the sliced array are small and parsed here
        try:
            members = _MEMBERS.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if _OBJECT_START.match(raw) is None:
                return _orjson_or_error(raw)  # not an object: the schema says so
            raise _parse_error(raw, exc) from None
        except RecursionError:
            raise SchemaViolation("The request body nests too deeply.", body="") from None
        body: dict[str, Any] = {}
        for name, value in members.items():
            if name == self._sliced:
                body[name] = SLICED[name](memoryview(value))
                continue
            try:
                body[name] = orjson.loads(memoryview(value))
            except orjson.JSONDecodeError as exc:
                raise _parse_error(raw, exc) from None
        return body

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        """Read, parse and validate the body (with or without Content-Length: Connexion's base
        class takes a missing Content-Length for a missing body)."""
        raw = await self._read(receive, scope)
        body = self._parse(raw)
        self._validate(body, raw)
        scope.setdefault("state", {})[BODY_KEY] = body
        # the handlers read the parsed body from the scope: nothing downstream reads it again
        return self._insert_messages(receive, messages=[{"type": "http.request", "body": b""}]), scope

    def _validate(self, body: Any, raw: bytearray) -> None:
        if body is None:
            raise SchemaViolation("The request body must not be empty.", body="")
        sliced = body.pop(self._sliced, None) if self._sliced and isinstance(body, dict) else None
        errors = nul_errors(raw, body)
        if errors:  # (a rule: the spec's patterns say it of its text fields, prose of keys and free JSON)
            raise InvalidInput(_located(errors[0]), errors=errors)
        errors = body_errors(self._rs, body)
        if errors:
            raise invalid_body(errors)
        if self._sliced:
            if sliced is None:
                raise SchemaViolation(f'"{self._sliced}" is a required property', body=f"/{self._sliced}")
            sliced.validate()
            body[self._sliced] = sliced


def _orjson_or_error(raw: bytearray) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _parse_error(raw, exc) from None


_ESCAPED_NUL = b"\\u0000"

# a JSON object's members, each kept as its raw text (zero-copy views into the body)
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_OBJECT_START = re.compile(rb"\s*\{")


class RawBodyValidator(FastJSONBodyValidator):
    """Bodies of other media types (NDJSON, CSV, Arrow): read once, with the JSON bodies'
    size limit and client timeout, and left in the scope as bytes (`RawBody`) for the handler,
    which parses them (in its worker thread, not on the event loop)."""

    media_type = "application/octet-stream"

    async def _read(self, receive: Receive, scope: Scope) -> bytearray:
        raw = await super()._read(receive, scope)
        state = scope.get("state", {})
        if FINGERPRINT_KEY in state:  # these bodies take their metadata as query parameters
            state[FINGERPRINT_KEY] = hashlib.sha256(
                self.media_type.encode() + b"?" + scope.get("query_string", b"") + b"\n" + state[FINGERPRINT_KEY]
            ).digest()
        return raw

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        raw = await self._read(receive, scope)
        if not raw or raw.isspace():
            raise InvalidInput("The request body must not be empty: it holds the rows.", body="")
        scope.setdefault("state", {})[BODY_KEY] = RawBody(self.media_type, raw)
        return self._insert_messages(receive, messages=[{"type": "http.request", "body": b""}]), scope


class FastJSONResponseValidator(AbstractResponseBodyValidator):  # type: ignore[misc]
    """Validate buffered JSON responses; pass streamed ones (no Content-Length) through."""

    def __init__(self, scope: Scope, *, schema: dict[str, Any], nullable: bool = False, encoding: str) -> None:
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
                        detail=f"Response body does not conform to specification: {problem}"
                    )
            while messages:
                await send(messages.pop(0))

        return send_


class NamedParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter validator, reporting every faulty parameter: a one-line detail that
    names the first, and an `errors` entry per parameter (Connexion's own detail is the raw
    jsonschema report of the first: the schema dump, no parameter name)."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        error = ParameterValidator.validate_parameter(parameter_type, value, param, param_name)
        if error is None:
            return None
        name = param.get("name", param_name)
        schema = param.get("schema", param)
        first = error.strip().splitlines()[0]
        if isinstance(value, str) and "\x00" in value:
            first = NUL_MESSAGE
        elif "does not match" in first:
            example = schema.get("example") or param.get("example")
            first = f"{value!r} is not in the expected form" + (f" (e.g. {example})" if example else "")
        return f"{parameter_type} parameter {name}: {first}"

    def validate_request(self, request: Any) -> None:
        errors: list[dict[str, Any]] = []
        details: list[str] = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(request, security_params=self.security_query_params)
            for name in sorted(extra)[:MAX_ERRORS]:
                shown = name if len(name) <= 100 else name[:100] + "..."
                details.append(
                    f"query parameter {shown!r} is not a parameter of this operation "
                    "(GET /openapi.json or /docs list them)"
                )
                errors.append(error_entry("not a parameter of this operation", query=shown))
        checks = (
            ("query", self.validate_query_parameter),
            ("path", self.validate_path_parameter),
            ("header", self.validate_header_parameter),
            ("cookie", self.validate_cookie_parameter),
        )
        for where, check in checks:
            for param in self.parameters.get(where, []):
                message = check(param, request)
                if message:
                    details.append(message)
                    errors.append(error_entry(message.split(": ", 1)[-1], **{_WHERE[where]: param["name"]}))
        if errors:
            raise SchemaViolation(details[0], errors=errors[:MAX_ERRORS])


# where a parameter is, as an InvalidInput keyword (a cookie counts as a header)
_WHERE = {"query": "query", "path": "path", "header": "header", "cookie": "header"}


def validator_map(max_body_bytes: int, client_timeout: float) -> dict[str, Any]:
    """Connexion's validator_map with the fast JSON validators (MediaTypeDict, or it is ignored)."""
    body_cls: Callable[..., Any] = type(
        "FastJSONBodyValidator",
        (FastJSONBodyValidator,),
        {"max_body_bytes": max_body_bytes, "client_timeout": client_timeout},
    )
    limits = {"max_body_bytes": max_body_bytes, "client_timeout": client_timeout}
    # exact media types: more specific than */*json, which would parse NDJSON as JSON
    raw = {
        media_type: type("RawBodyValidator", (RawBodyValidator,), {**limits, "media_type": media_type})
        for media_type in RAW_MEDIA_TYPES
    }
    body = MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": body_cls, **raw})
    response = MediaTypeDict({**VALIDATOR_MAP["response"], "*/*json": FastJSONResponseValidator})
    return {"body": body, "response": response, "parameter": NamedParameterValidator}
