"""Domain errors: each class carries its HTTP status, title and problem type."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """The server is not configured to start."""


class TimedbError(Exception):
    """A timedb error."""

    status = 500
    title = "Internal Server Error"
    type = "/problems/internal"
    close_connection = False  # True: the body was not read to its end; the connection ends

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.extra = extra
        self.headers: dict[str, str] = {"Connection": "close"} if self.close_connection else {}
        super().__init__(self.detail)


class InvalidInput(TimedbError):
    """The request is malformed."""

    status = 400
    title = "Bad Request"
    type = "/problems/invalid-input"


class AmbiguousSeries(InvalidInput):
    """The filters match more than one series."""

    type = "/problems/ambiguous-series"


class Unprocessable(TimedbError):
    """The request is well-formed but its content is invalid."""

    status = 422
    title = "Unprocessable Content"
    type = "/problems/unprocessable"


class DuplicateValidTime(Unprocessable):
    """A valid_time appears more than once in one request."""

    type = "/problems/duplicate-valid-time"


class NotFound(TimedbError):
    """The resource does not exist."""

    status = 404
    title = "Not Found"
    type = "/problems/not-found"


class SeriesNotFound(NotFound):
    """No series matches the filters."""

    type = "/problems/series-not-found"


class BatchNotFound(NotFound):
    """The batch does not exist."""

    type = "/problems/batch-not-found"


class PointNotFound(NotFound):
    """No stored value exists for this point."""

    type = "/problems/point-not-found"


class Unauthorized(TimedbError):
    """The request needs a valid access token (Authorization: Bearer tdb_...)."""

    status = 401
    title = "Unauthorized"
    type = "/problems/unauthorized"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="timedb"'


class Forbidden(TimedbError):
    """The access token does not allow this request."""

    status = 403
    title = "Forbidden"
    type = "/problems/forbidden"


class NotAcceptable(TimedbError):
    """None of the available media types satisfies the Accept header."""

    status = 406
    title = "Not Acceptable"
    type = "/problems/not-acceptable"


class Conflict(TimedbError):
    """The request conflicts with stored data."""

    status = 409
    title = "Conflict"
    type = "/problems/conflict"


class SeriesConflict(Conflict):
    """A series with this name and labels exists with other attributes."""

    type = "/problems/series-conflict"


class ImmutableField(Conflict):
    """A field that cannot change after the series was created was given another value."""

    type = "/problems/immutable-field"


class VersionConflict(Conflict):
    """A version for this valid_time and known_time is already stored."""

    type = "/problems/version-conflict"


class PayloadTooLarge(TimedbError):
    """The request body is larger than the server accepts."""

    status = 413
    title = "Content Too Large"
    type = "/problems/payload-too-large"
    close_connection = True


class ServiceUnavailable(TimedbError):
    """The database is not available; retry later."""

    status = 503
    title = "Service Unavailable"
    type = "/problems/service-unavailable"
    retry_after = 5  # seconds, sent as Retry-After

    def __init__(self, detail: str | None = None, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after or self.retry_after)


class SchemaMissing(ServiceUnavailable):
    """The timedb tables do not exist: run `timedb create tables`."""

    type = "/problems/schema-missing"


class ServerBusy(ServiceUnavailable):
    """Every database connection of this server is in use; retry shortly."""

    type = "/problems/server-busy"
    retry_after = 1


class QueryTimeout(ServiceUnavailable):
    """The request needed more database time than the server allows; narrow it or retry later."""

    type = "/problems/query-timeout"


class LockTimeout(ServiceUnavailable):
    """The request waited too long for data another request is changing; retry."""

    type = "/problems/lock-timeout"
    retry_after = 1


class ConcurrentChange(ServiceUnavailable):
    """A concurrent change interfered with this request; retry."""

    type = "/problems/concurrent-change"
    retry_after = 1


class RequestTimeout(TimedbError):
    """The client did not send the request in time."""

    status = 408
    title = "Request Timeout"
    type = "/problems/request-timeout"
    close_connection = True


class IdempotencyKeyReused(Unprocessable):
    """This Idempotency-Key was already used for a different request."""

    type = "/problems/idempotency-key-reused"


def items_detail(errors: list[dict[str, Any]], total: int, what: str) -> str:
    """The detail of a problem about items of a request: how many, and the first one."""
    return (f"{what}: {len(errors)} of {total}; nothing was created (each one is listed in "
            f"errors). The first: {errors[0]['message']}")
