"""Translate psycopg errors into timedb errors, at the data-layer boundary."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool
from psycopg import errors as pg

from timedb import errors

# libpq quotes a malformed connection string whole in its messages: hide passwords in them
_URI_PASSWORD = re.compile(r"(://[^:/?#@\s\"']*):[^@\s\"']*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s\"']*)", re.IGNORECASE)
# ... and any percent-encoded token it cannot decode (which may be the password)
_BAD_TOKEN = re.compile(r'(percent-encoded token: )"[^"]*"')


def first_line(exc: BaseException) -> str:
    """The first line of a driver message (libpq adds hint lines), or the class name; any
    password it quotes (from a malformed DSN) is masked."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    text = _URI_PASSWORD.sub(r"\1:***@", lines[0])
    return _BAD_TOKEN.sub(r'\1"***"', _KEYWORD_PASSWORD.sub(r"\1***", text))


# driver errors -> the problem a request gets, the first match winning (the OperationalError
# subclasses come before OperationalError: they are answers of a reachable database)
TRANSLATIONS: list[tuple[tuple[type[BaseException], ...], type[errors.TimedbError], str]] = [
    ((pg.UniqueViolation, pg.ExclusionViolation), errors.Conflict, "The request conflicts with stored data."),
    ((pg.ForeignKeyViolation,), errors.NotFound, "A referenced record does not exist."),
    ((pg.DataError,), errors.Unprocessable, "A value is out of range for the database."),
    # e.g. a name and labels too large for the index
    (
        (pg.ProgramLimitExceeded,),
        errors.Unprocessable,
        "A value is too large for the database (e.g. name and labels together).",
    ),
    (
        (pg.LockNotAvailable,),
        errors.LockTimeout,
        "Waited longer than the server allows (TIMEDB_LOCK_TIMEOUT) for data that another request is changing; retry.",
    ),
    (
        (pg.QueryCanceled,),
        errors.QueryTimeout,
        "The database work for this request took longer than the server allows (TIMEDB_STATEMENT_TIMEOUT); "
        "narrow the request (e.g. a shorter time window) or retry later.",
    ),
    (
        (pg.SerializationFailure, pg.DeadlockDetected),
        errors.ConcurrentChange,
        "A concurrent change interfered with this request; retry.",
    ),
    # named prepared statements through a pooler in transaction mode (PgBouncer < 1.21)
    (
        (pg.InvalidSqlStatementName, pg.DuplicatePreparedStatement),
        errors.ServiceUnavailable,
        "The database connection does not keep prepared statements (a pooler in transaction mode?): "
        "unset TIMEDB_PREPARE_THRESHOLD or set it to none.",
    ),
    (
        (psycopg_pool.PoolTimeout, psycopg.OperationalError),
        errors.ServiceUnavailable,
        "The database is not reachable; retry later.",
    ),
    # e.g. the session ended by idle_in_transaction_session_timeout
    ((psycopg.InternalError,), errors.ServiceUnavailable, "The database could not complete the request; retry later."),
]


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors as TimedbError subclasses (no driver text for 5xx)."""
    try:
        yield
    except errors.TimedbError:
        raise
    except pg.UndefinedTable:
        raise errors.SchemaMissing() from None
    except (pg.CheckViolation, pg.NotNullViolation) as exc:
        constraint = exc.diag.constraint_name or ""
        raise errors.Unprocessable(CHECK_MESSAGES.get(constraint, "A value is out of range.")) from exc
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        for kinds, problem, message in TRANSLATIONS:
            if isinstance(exc, kinds):
                raise problem(message) from exc
        raise


CHECK_MESSAGES = {
    "series_name_not_blank": "name must not be blank.",
    "series_valid_retention": "retention must be one of short, medium, long, forever.",
    "flat_interval": "valid_time_end must be later than valid_time.",
    "overlapping_interval": "valid_time_end must be later than valid_time.",
    "flat_value_finite": "value must be a finite number.",
    "overlapping_value_finite": "value must be a finite number.",
}
