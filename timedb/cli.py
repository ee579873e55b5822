"""The `timedb` command line: thin click commands over library functions."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, TypeVar

import click

from timedb import __version__
from timedb.cli_common import DSN_OPTION
from timedb.cli_common import call as _call
from timedb.cli_common import confirmed as _confirmed
from timedb.cli_common import dsn as _dsn
from timedb.cli_common import short as _short
from timedb.cli_storage import partitions, retention
from timedb.errors import ConfigError, TimedbError
from timedb.settings import MISSING_DSN, configured_dsn, environment

T = TypeVar("T")

# seconds in-flight requests get to finish on SIGTERM; then the rest is cancelled
GRACEFUL_SHUTDOWN = 20


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="timedb")
def main() -> None:
    """timedb: a REST API server for time series whose values get revised."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Host to bind to.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to bind to.")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--embedded", is_flag=True, help="Run a built-in PostgreSQL (needs timedb[embedded]).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory of the built-in PostgreSQL (with --embedded).",
)
@click.option(
    "--timeout-graceful-shutdown",
    "graceful",
    default=GRACEFUL_SHUTDOWN,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds in-flight requests get to finish after SIGTERM or Ctrl+C.",
)
def api(host: str, port: int, reload: bool, embedded: bool, data_dir: Path | None, graceful: int) -> None:
    """Start the API server."""
    import uvicorn

    from timedb.db.schema import create_tables
    from timedb.embedded import default_data_dir, embedded_postgres

    env = environment()
    dsn = configured_dsn(env)
    if embedded and data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise click.BadParameter("not a directory", param_hint="--data-dir")
    if not embedded and not dsn:
        click.echo(f"Error: {MISSING_DSN}", err=True)
        sys.exit(2)
    # everything that can fail at start fails here, before a URL is printed
    _check_settings({**env, "TIMEDB_DSN": "embedded"} if embedded else env)
    _check_port(host, port)
    if not embedded:
        assert dsn is not None  # checked above
        _check_database(dsn)
        _serve(uvicorn, host, port, reload, graceful)
        return
    directory = data_dir or default_data_dir()
    click.echo(f"Embedded PostgreSQL in {directory}")
    try:
        with embedded_postgres(directory) as server:
            if server.shared_with:
                click.echo(f"  already running, shared with {_pids(server.shared_with)}")
            create_tables(server.dsn)
            os.environ["TIMEDB_DSN"] = server.dsn
            # uvicorn re-raises SIGTERM after its graceful shutdown; as KeyboardInterrupt it
            # unwinds through this block (stopping PostgreSQL) instead of killing the process
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            _serve(uvicorn, host, port, reload, graceful)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except TimedbError as exc:
        raise click.ClickException(exc.detail) from None
    if server.left_running_for:
        click.echo(f"Embedded PostgreSQL left running: {_pids(server.left_running_for)} still uses it.")
    else:
        click.echo("Embedded PostgreSQL stopped.")


def _pids(pids: list[int]) -> str:
    if len(pids) == 1:
        return f"timedb process {pids[0]}"
    return "timedb processes " + ", ".join(map(str, pids))


def _check_settings(env: dict[str, str]) -> None:
    """The TIMEDB_* settings the server will read are valid (one line if not)."""
    from timedb.settings import Settings

    try:
        Settings.from_env(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _check_port(host: str, port: int) -> None:
    """host:port can be listened on, as uvicorn will (asyncio's create_server); one line if not."""
    import errno
    import socket

    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise click.ClickException(
                        f"port {port} on {host} is in use (another server?); choose another with --port."
                    ) from None
                raise click.ClickException(f"cannot listen on {host} port {port}: {exc.strerror}") from None


def _check_database(dsn: str) -> None:
    """Fail fast, with one line, when the database cannot be reached."""
    from timedb.db.pool import check_database

    try:
        present = check_database(dsn, timeout=10)
    except TimedbError as exc:
        raise click.ClickException(f"cannot connect to the database at {_short(dsn)}: {exc.detail}") from None
    if not present:
        click.echo("Warning: the timedb tables do not exist yet; run `timedb create tables`.", err=True)


def _serve(uvicorn: Any, host: str, port: int, reload: bool, graceful: int) -> None:
    from timedb.server import HttpProtocol

    shown = f"[{host}]" if ":" in host else host
    click.echo(f"timedb {__version__}")
    click.echo(f"  API:     http://{shown}:{port}/")
    click.echo(f"  Swagger: http://{shown}:{port}/docs")
    click.echo(f"  ReDoc:   http://{shown}:{port}/redoc")
    click.echo(f"  Web UI:  http://{shown}:{port}/ui/")
    uvicorn.run(
        "timedb.api:app",
        host=host,
        port=port,
        reload=reload,
        http=HttpProtocol,
        timeout_graceful_shutdown=graceful,
    )


@main.group()
def create() -> None:
    """Create timedb objects."""


@main.group()
def delete() -> None:
    """Delete timedb objects."""


@create.command("tables")
@click.option("--dsn", "-d", help="Connection string (default: TIMEDB_DSN, then DATABASE_URL).")
@click.option("--schema", "-s", help="PostgreSQL schema to create (if missing) and use.")
@click.option("--retention", "-r", help="Shorthand for --retention-medium.")
@click.option("--retention-short", default="6 months", show_default=True, help="Retention of the short tier.")
@click.option("--retention-medium", default="3 years", show_default=True, help="Retention of the medium tier.")
@click.option("--retention-long", default="5 years", show_default=True, help="Retention of the long tier.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the DDL and exit without touching the database.")
def create_tables_cmd(
    dsn: str | None,
    schema: str | None,
    retention: str | None,
    retention_short: str,
    retention_medium: str,
    retention_long: str,
    yes: bool,
    dry_run: bool,
) -> None:
    """Create (or update) the timedb tables. Idempotent."""
    from timedb.db import schema as ddl

    tiers = {"short": retention_short, "medium": retention or retention_medium, "long": retention_long}
    if dry_run:
        click.echo(ddl.create_ddl(schema, tiers))
        return
    conninfo = _dsn(dsn)
    if not yes:
        click.echo("About to create/update the timedb schema")
        click.echo(f"  Connection: {_short(conninfo)}")
        if schema:
            click.echo(f"  Schema:     {schema}")
        if not _confirmed("Continue?"):
            return
    _call(lambda: ddl.create_tables(conninfo, schema, tiers))
    click.echo("Schema created successfully!" + (f" (schema {schema})" if schema else ""))


@delete.command("tables")
@click.option("--dsn", "-d", help="Connection string (default: TIMEDB_DSN, then DATABASE_URL).")
@click.option("--schema", "-s", help="PostgreSQL schema holding the tables.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_tables_cmd(dsn: str | None, schema: str | None, yes: bool) -> None:
    """Delete every timedb table and all data in them."""
    from timedb.db import schema as ddl

    conninfo = _dsn(dsn)
    if not yes:
        click.echo("Destructive operation: this drops " + ", ".join(ddl.TABLES) + " and all their data.")
        click.echo(f"  Connection: {_short(conninfo)}")
        if schema:
            click.echo(f"  Schema:     {schema}")
        if not _confirmed("Are you sure? This cannot be undone."):
            return
    _call(lambda: ddl.delete_tables(conninfo, schema))
    click.echo("All timedb tables deleted.")


# ----------------------------------------------------------------------------- tokens


@main.group()
def tokens() -> None:
    """Access tokens: create, list, revoke."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    required=True,
    type=click.Choice(["read", "write", "admin"]),
    help="read: GET and POST /values/query; write: also writes and corrections; admin: everything.",
)
@click.option(
    "--labels",
    "labels_json",
    metavar="JSON",
    help='Bind the token to the series whose labels contain this object, e.g. \'{"tenant": "acme"}\'.',
)
@click.option("--expires", metavar="DURATION|DATE", help="Lifetime (90d, 12h, 30min, 2w, 1y) or an ISO date/time.")
@DSN_OPTION
def tokens_create(name: str, scope: str, labels_json: str | None, expires: str | None, dsn: str | None) -> None:
    """Create a token and print its secret (once, alone on stdout)."""
    from timedb.db import tokens as store
    from timedb.db.commands import using
    from timedb.token_options import parse_expiry, parse_labels

    labels = parse_labels(labels_json)
    expires_at = parse_expiry(expires)
    conninfo = _dsn(dsn)
    secret = _call(lambda: using(conninfo, lambda c: store.create(c, name.strip(), scope, labels, expires_at)))
    note = f" for series with labels {labels_json}" if labels else ""
    until = f", expires {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
    click.echo(f"Token {name.strip()!r} ({scope}{note}{until}) created. Its secret is shown only now:", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token (never the secret).")
@DSN_OPTION
def tokens_list(include_revoked: bool, as_json: bool, dsn: str | None) -> None:
    """List the tokens: name, scope, labels, created, expires, last used (never the secret)."""
    from timedb.db import tokens as store
    from timedb.db.commands import using
    from timedb.token_options import render_tokens

    conninfo = _dsn(dsn)
    rows = _call(lambda: using(conninfo, lambda c: store.listing(c, include_revoked=include_revoked)))
    click.echo(render_tokens(rows, as_json=as_json), nl=False)


@tokens.command("revoke")
@click.argument("name")
@DSN_OPTION
def tokens_revoke(name: str, dsn: str | None) -> None:
    """Revoke a token: it stops working at once, on every server."""
    from timedb.db import tokens as store
    from timedb.db.commands import using

    conninfo = _dsn(dsn)
    _call(lambda: using(conninfo, lambda c: store.revoke(c, name)))
    click.echo(f"Token {name!r} revoked.", err=True)


main.add_command(partitions)
main.add_command(retention)
