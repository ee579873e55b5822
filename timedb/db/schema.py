"""Create and drop the timedb tables from the packaged .sql files."""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

from timedb.db import extent, partitions
from timedb.db.errors import first_line, translated
from timedb.db.locks import SCHEMA_LOCK
from timedb.errors import Conflict

RETENTION_DEFAULTS = {"short": "6 months", "medium": "3 years", "long": "5 years"}
TABLES = (
    "series_table",
    "batches_table",
    "flat",
    "overlapping",
    "series_extent",
    "idempotency_keys",
    "api_tokens",
    "timedb_settings",
)


class MigrationNeeded(Conflict):
    """The fact tables are too large to move into partitions by `timedb create tables` alone."""


def _sql_file(name: str) -> str:
    return resources.files("timedb.db").joinpath("sql", name).read_text(encoding="utf-8")


def _prelude(schema: str | None) -> str:
    if not schema:
        return ""
    ident = sql.Identifier(schema).as_string(None)
    return f"CREATE SCHEMA IF NOT EXISTS {ident};\nSET search_path TO {ident};\n\n"


def _retention_sql(retention: dict[str, str]) -> str:
    rows = ",\n    ".join(
        sql.SQL("({}, {})").format(sql.Literal(f"retention_{tier}"), sql.Literal(value)).as_string(None)
        for tier, value in retention.items()
    )
    return (
        "\n-- retention per tier (recorded only: timedb never deletes data by itself)\n"
        f"INSERT INTO timedb_settings (key, value) VALUES\n    {rows}\n"
        "    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;\n"
    )


def create_ddl(schema: str | None = None, retention: dict[str, str] | None = None) -> str:
    """The full DDL that `timedb create tables` runs."""
    tiers = {**RETENTION_DEFAULTS, **(retention or {})}
    return _prelude(schema) + _sql_file("schema.sql") + "\n" + _sql_file("extent.sql") + _retention_sql(tiers)


def drop_ddl(schema: str | None = None) -> str:
    """The DDL that `timedb delete tables` runs."""
    prelude = ""
    if schema:
        prelude = f"SET search_path TO {sql.Identifier(schema).as_string(None)};\n"
    return prelude + _sql_file("drop.sql")


def _check_intervals(conn: psycopg.Connection, retention: dict[str, str]) -> None:
    from timedb.errors import InvalidInput

    for tier, value in retention.items():
        try:
            with conn.transaction():
                conn.execute("SELECT %s::interval", (value,))
        except psycopg.errors.DataError:
            raise InvalidInput(f"--retention-{tier}: {value!r} is not a valid interval") from None


def _connect(dsn: str) -> psycopg.Connection:
    """Connect for a CLI command; a bad DSN or an unreachable server is one clear line."""
    from timedb.errors import InvalidInput, ServiceUnavailable

    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(f"invalid DSN: {first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"cannot connect to the database: {first_line(exc)}") from None


def create_tables(
    dsn: str, schema: str | None = None, retention: dict[str, str] | None = None, migrate: bool = False
) -> dict[str, int]:
    """Apply the schema (idempotent), in one transaction: nothing changes if any step fails.

    Fact tables of an older layout (plain tables, schema version 2) are moved into monthly
    partitions when they hold at most AUTO_MIGRATE_ROWS rows, or any number with `migrate`;
    otherwise MigrationNeeded. Returns the rows moved per table (empty when none were).
    """
    retention = {**RETENTION_DEFAULTS, **(retention or {})}
    with _connect(dsn) as conn, translated():
        _check_intervals(conn, retention)
        # serialise concurrent `create tables` runs: CREATE ... IF NOT EXISTS is not race-free
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        if schema:
            conn.execute(_prelude(schema).encode())
        plain = partitions.plain_tables(conn)
        if plain and not migrate:
            held = partitions.rows_at_most(conn, plain, partitions.AUTO_MIGRATE_ROWS + 1)
            if held > partitions.AUTO_MIGRATE_ROWS:
                # the series' extents, which a server of this release needs on either layout
                conn.execute(_sql_file("extent.sql").encode())
                extent.recompute(conn)
                conn.commit()
                raise MigrationNeeded(
                    f"{' and '.join(plain)} hold more than {partitions.AUTO_MIGRATE_ROWS:,} rows in the unpartitioned"
                    " layout (schema version 2): run `timedb partitions migrate` to move them into monthly"
                    " partitions (it locks the tables while the rows move; see README, Scaling and retention)"
                )
        if plain:
            partitions.set_aside(conn, plain)
        conn.execute(create_ddl(None, retention).encode())
        moved = partitions.move_rows(conn, plain) if plain else {}
        extent.recompute(conn)
        for table in partitions.FACT_TABLES:
            partitions.ensure(conn, table, [])
        return moved


def delete_tables(dsn: str, schema: str | None = None) -> None:
    """Drop every timedb table."""
    with _connect(dsn) as conn, translated():
        conn.execute(drop_ddl(schema).encode())


def schema_present(conn: psycopg.Connection) -> bool:
    """True when all timedb tables are visible on this connection."""
    row = conn.execute(
        "SELECT count(to_regclass(t)) = %s FROM unnest(%s::text[]) AS t",
        (len(TABLES), list(TABLES)),
    ).fetchone()
    return bool(row and row[0])
