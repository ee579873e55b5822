"""What the `timedb` commands share: the DSN lookup, confirmation, errors as exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click

from timedb.errors import TimedbError
from timedb.settings import configured_dsn, environment

T = TypeVar("T")

DSN_OPTION = click.option("--dsn", "-d", help="Connection string (default: TIMEDB_DSN, then DATABASE_URL).")
SCHEMA_OPTION = click.option("--schema", "-s", help="PostgreSQL schema holding the tables.")


def dsn(dsn: str | None) -> str:
    """--dsn, else TIMEDB_DSN / DATABASE_URL (environment, then ./.env); exit 2 if none."""
    value = dsn or configured_dsn(environment())
    if not value:
        click.echo("Error: No DSN provided. Use --dsn or set TIMEDB_DSN / DATABASE_URL.", err=True)
        sys.exit(2)
    return value


def short(dsn: str) -> str:
    from timedb.db.pool import redact

    text = redact(dsn)
    return text if len(text) <= 60 else text[:57] + "..."


def confirmed(question: str) -> bool:
    """Ask (default No); a No, or no answer at all (stdin closed: click's Abort), prints
    `Aborted.` and is a user abort: exit code 0, as the README says."""
    try:
        if click.confirm(question, default=False):
            return True
    except click.Abort:
        click.echo()
    click.echo("Aborted.")
    return False


def call(action: Callable[[], T]) -> T:
    """A library call's result; TimedbError becomes `Error: ...` and exit 1."""
    try:
        return action()
    except TimedbError as exc:
        raise click.ClickException(exc.detail) from None
