"""Translate psycopg errors into timedb errors, at the data-layer boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool
from psycopg import errors as pg

from timedb import errors


def first_line(exc: BaseException) -> str:
    """The first line of a driver message (libpq adds hint lines), or the class name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors as TimedbError subclasses (no driver text for 5xx)."""
    try:
        yield
    except errors.TimedbError:
        raise
    except pg.UndefinedTable:
        raise errors.SchemaMissing() from None
    except (pg.UniqueViolation, pg.ExclusionViolation) as exc:
        raise errors.Conflict("The request conflicts with stored data.") from exc
    except pg.ForeignKeyViolation as exc:
        raise errors.NotFound("A referenced record does not exist.") from exc
    except (pg.CheckViolation, pg.NotNullViolation) as exc:
        constraint = exc.diag.constraint_name or ""
        raise errors.Unprocessable(CHECK_MESSAGES.get(constraint, "A value is out of range.")) from exc
    except pg.DataError as exc:
        raise errors.Unprocessable("A value is out of range for the database.") from exc
    except pg.QueryCanceled as exc:
        raise errors.ServiceUnavailable("The database cancelled the query (timeout).") from exc
    except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
        raise errors.ServiceUnavailable("The database is not reachable; retry later.") from exc
    except psycopg.errors.SerializationFailure as exc:
        raise errors.ServiceUnavailable("A concurrent change interfered; retry.", retry_after=1) from exc


CHECK_MESSAGES = {
    "series_name_not_blank": "name must not be blank.",
    "series_valid_retention": "retention must be one of short, medium, long.",
    "flat_interval": "valid_time_end must be later than valid_time.",
    "overlapping_interval": "valid_time_end must be later than valid_time.",
    "flat_value_finite": "value must be a finite number.",
    "overlapping_value_finite": "value must be a finite number.",
}
