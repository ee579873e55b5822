"""Domain errors: each class carries its HTTP status, title and problem type."""

from __future__ import annotations

import re
from typing import Any


class ConfigError(Exception):
    """The server is not configured to start."""


class TimedbError(Exception):
    """A timedb error. A subclass names what differs from its parent in its class line:
    `class NotFound(TimedbError, status=404, title="Not Found", type="/problems/not-found")`."""

    status = 500
    title = "Internal Server Error"
    type = "/problems/internal"
    close_connection = False  # True: the body was not read to its end; the connection ends
    retry_after: int | None = None  # seconds, sent as Retry-After (503s)

    def __init_subclass__(
        cls,
        *,
        status: int | None = None,
        title: str | None = None,
        type: str | None = None,
        retry_after: int | None = None,
        close_connection: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        given = {
            "status": status,
            "title": title,
            "type": type,
            "retry_after": retry_after,
            "close_connection": close_connection,
        }
        for name, value in given.items():
            if value is not None:
                setattr(cls, name, value)

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.extra = extra
        self.headers: dict[str, str] = {"Connection": "close"} if self.close_connection else {}
        super().__init__(self.detail)


class InvalidInput(TimedbError, status=400, title="Bad Request", type="/problems/invalid-input"):
    """The request is malformed.

    Say where with one keyword: `query="tz"`, `path="series_id"`, `header="Idempotency-Key"`
    or `body="/data/3/value"` (a JSON pointer); it becomes the problem's `errors` entry
    (unless `errors` lists several). Without one, a body path in the detail is used: a
    leading `updates[2].valid_time:` or a trailing `(at /data/3/value)`.
    """

    def __init__(
        self,
        detail: str | None = None,
        *,
        query: str | None = None,
        path: str | None = None,
        header: str | None = None,
        body: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, **extra)
        if "errors" not in self.extra:
            if (query, path, header, body) == (None, None, None, None):
                body = body_path(self.detail)
            self.extra["errors"] = [error_entry(self.detail, query=query, path=path, header=header, body=body)]

    def in_body(self, prefix: str = "") -> InvalidInput:
        """This error with its query parameters moved into the JSON body (under prefix): the
        read parameters of GET /values are members of POST /values/query's body."""
        for entry in self.extra["errors"]:
            if entry.get("in") == "query":
                entry.update({"in": "body", "pointer": f"{prefix}/{entry.pop('name')}"})
        return self


class SchemaViolation(InvalidInput, type="/problems/schema-violation"):
    """The request does not match the spec: a parameter's or the body's schema (types, required
    members, unknown members, patterns: a NUL character), or a body that is not JSON."""


class AmbiguousSeries(InvalidInput, type="/problems/ambiguous-series"):
    """The filters match more than one series."""


class Unprocessable(TimedbError, status=422, title="Unprocessable Content", type="/problems/unprocessable"):
    """The request is well-formed but its content is invalid."""


class DuplicateValidTime(Unprocessable, type="/problems/duplicate-valid-time"):
    """A valid_time appears more than once in one request."""


class NotFound(TimedbError, status=404, title="Not Found", type="/problems/not-found"):
    """The resource does not exist."""


class SeriesNotFound(NotFound, type="/problems/series-not-found"):
    """No series matches the filters."""


class BatchNotFound(NotFound, type="/problems/batch-not-found"):
    """The batch does not exist."""


class PointNotFound(NotFound, type="/problems/point-not-found"):
    """No stored value exists for this point."""


class Unauthorized(TimedbError, status=401, title="Unauthorized", type="/problems/unauthorized"):
    """The request needs a valid access token (Authorization: Bearer tdb_...)."""

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="timedb"'


class Forbidden(TimedbError, status=403, title="Forbidden", type="/problems/forbidden"):
    """The access token does not allow this request."""


class NotAcceptable(TimedbError, status=406, title="Not Acceptable", type="/problems/not-acceptable"):
    """None of the available media types satisfies the Accept header."""


class Conflict(TimedbError, status=409, title="Conflict", type="/problems/conflict"):
    """The request conflicts with stored data."""


class SeriesConflict(Conflict, type="/problems/series-conflict"):
    """A series with this name and labels exists with other attributes."""


class ImmutableField(Conflict, type="/problems/immutable-field"):
    """A field that cannot change after the series was created was given another value."""


class VersionConflict(Conflict, type="/problems/version-conflict"):
    """A version for this valid_time and known_time is already stored."""


class PayloadTooLarge(
    TimedbError, status=413, title="Content Too Large", type="/problems/payload-too-large", close_connection=True
):
    """The request body is larger than the server accepts."""


class ServiceUnavailable(
    TimedbError, status=503, title="Service Unavailable", type="/problems/service-unavailable", retry_after=5
):
    """The database is not available; retry later."""

    def __init__(self, detail: str | None = None, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after or self.retry_after)


class SchemaMissing(ServiceUnavailable, type="/problems/schema-missing"):
    """The timedb tables do not exist: run `timedb create tables`."""


class ServerBusy(ServiceUnavailable, type="/problems/server-busy", retry_after=1):
    """Every database connection of this server is in use; retry shortly."""


class QueryTimeout(ServiceUnavailable, type="/problems/query-timeout"):
    """The request needed more database time than the server allows; narrow it or retry later."""


class LockTimeout(ServiceUnavailable, type="/problems/lock-timeout", retry_after=1):
    """The request waited too long for data another request is changing; retry."""


class ConcurrentChange(ServiceUnavailable, type="/problems/concurrent-change", retry_after=1):
    """A concurrent change interfered with this request; retry."""


class RequestTimeout(
    TimedbError, status=408, title="Request Timeout", type="/problems/request-timeout", close_connection=True
):
    """The client did not send the request in time."""


class IdempotencyKeyReused(Unprocessable, type="/problems/idempotency-key-reused"):
    """This Idempotency-Key was already used for a different request."""


def items_detail(errors: list[dict[str, Any]], total: int, what: str) -> str:
    """The detail of a problem about items of a request: how many, and the first one."""
    return (
        f"{what}: {len(errors)} of {total}; nothing was created (each one is listed in "
        f"errors). The first: {errors[0]['message']}"
    )


def error_entry(
    message: str,
    *,
    query: str | None = None,
    path: str | None = None,
    header: str | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """One `errors` entry of a problem: where (a parameter's name or a JSON pointer) and what."""
    if body is not None:
        return {"in": "body", "pointer": body, "message": message.removesuffix(f" (at {body})")}
    for where, name in (("query", query), ("path", path), ("header", header)):
        if name is not None:
            prefix = f"{name}: "
            return {"in": where, "name": name, "message": message.removeprefix(prefix)}
    return {"message": message}


_LEADING_PATH = re.compile(r"^([A-Za-z_]+(?:\[\d+\])(?:\.[A-Za-z_]+|\[\d+\])*)(?::| )")
_TRAILING_POINTER = re.compile(r"\(at (/[^)]*)\)\.?$")


def body_path(detail: str) -> str | None:
    """The JSON pointer a detail names: `data[3].value: ...` or `... (at /data/3/value)`."""
    trailing = _TRAILING_POINTER.search(detail)
    if trailing:
        return trailing.group(1)
    leading = _LEADING_PATH.match(detail)
    if leading:
        return "/" + re.sub(r"\[(\d+)\]", r"/\1", leading.group(1)).replace(".", "/")
    return None


def json_pointer(parts: Any) -> str:
    """An RFC 6901 pointer to a place in a JSON document, from its keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
