"""`timedb partitions ...` and `timedb retention apply`: the fact tables' months on disk."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from timedb.cli_common import DSN_OPTION, SCHEMA_OPTION, call, confirmed, short
from timedb.cli_common import dsn as conninfo_of


def _size(n: float) -> str:
    """Bytes for people: 0 B, 812 kB, 98.1 MB, 1.4 GB (powers of 1000, as psql's pg_size_pretty
    is not: these match `du --si`)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "kB") else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _when(ts: Any) -> str:
    return "-" if ts is None else ts.strftime("%Y-%m-%d %H:%M")


@click.group()
def partitions() -> None:
    """Monthly partitions of the fact tables: list, migrate."""


@partitions.command("list")
@click.option("--count", "exact", is_flag=True, help="Count the rows (exact; reads every partition).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per partition.")
@DSN_OPTION
@SCHEMA_OPTION
def partitions_list(exact: bool, as_json: bool, dsn: str | None, schema: str | None) -> None:
    """List the partitions of flat and overlapping: month (UTC), rows, size.

    Rows are PostgreSQL's estimate (from the last ANALYZE; `?` before the first) unless --count.
    """
    from timedb.db import partitions as parts
    from timedb.db.commands import using

    def work(conn: Any) -> tuple[int | None, list[parts.Partition], list[str]]:
        found = parts.listing(conn)
        if exact:
            found = [parts.count_rows(conn, p) for p in found]
        return parts.schema_version(conn), found, parts.plain_tables(conn)

    version, found, plain = call(lambda: using(conninfo_of(dsn), work, schema))
    if as_json:
        for p in found:
            row = {
                "table": p.table,
                "partition": p.name,
                "from": p.lower and p.lower.isoformat(),
                "to": p.upper and p.upper.isoformat(),
                "rows": p.rows if p.rows >= 0 else None,
                "rows_exact": exact,
                "bytes": p.bytes,
            }
            click.echo(json.dumps(row))
        return
    if plain:
        click.echo(
            f"{' and '.join(plain)}: not partitioned (schema version {version}); "
            "`timedb partitions migrate` moves the rows into monthly partitions.",
            err=True,
        )
    if not found:
        if not plain:
            click.echo("No partitions.", err=True)
        return
    click.echo(f"{'TABLE':<12} {'PARTITION':<24} {'FROM (UTC)':<16} {'TO (UTC)':<16} {'ROWS':>14} {'SIZE':>10}")
    for p in found:
        rows = f"{p.rows:,}" if p.rows >= 0 else "?"
        click.echo(
            f"{p.table:<12} {p.name:<24} {_when(p.lower):<16} {_when(p.upper):<16} "
            f"{('' if exact or p.rows < 0 else '~') + rows:>14} {_size(p.bytes):>10}"
        )


@partitions.command("migrate")
@DSN_OPTION
@SCHEMA_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def partitions_migrate(dsn: str | None, schema: str | None, yes: bool) -> None:
    """Move the rows of unpartitioned fact tables (a database made before schema version 3)
    into monthly partitions, in one transaction.

    The fact tables are locked while the rows move: writes wait and reads of values wait.
    Nothing changes if it fails or is interrupted.
    """
    from timedb.db import schema as ddl

    conninfo = conninfo_of(dsn)
    if not yes:
        click.echo("About to move the rows of flat and overlapping into monthly partitions")
        click.echo(f"  Connection: {short(conninfo)}")
        click.echo("  The tables are locked until it is done.")
        if not confirmed("Continue?"):
            return
    started = time.monotonic()
    moved = call(lambda: ddl.create_tables(conninfo, schema, _recorded_retention(conninfo, schema), migrate=True))
    if not moved:
        click.echo("The fact tables are partitioned already; nothing to move.")
        return
    done = ", ".join(f"{table} {rows:,} rows" for table, rows in moved.items())
    click.echo(f"Moved into monthly partitions: {done} ({time.monotonic() - started:.1f} s).")


def _recorded_retention(conninfo: str, schema: str | None) -> dict[str, str]:
    """The retention intervals the database records (a migration keeps them)."""
    from timedb.db.commands import using
    from timedb.db.retention import tiers as retention_tiers

    def work(conn: Any) -> dict[str, str]:
        if conn.execute("SELECT to_regclass('timedb_settings')").fetchone()[0] is None:
            return {}
        return {name: tier.interval for name, tier in retention_tiers(conn).items()}

    return call(lambda: using(conninfo, work, schema))


@click.group()
def retention() -> None:
    """Retention: remove values older than their series' tier."""


@retention.command("apply")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
@DSN_OPTION
@SCHEMA_OPTION
def retention_apply(dry_run: bool, dsn: str | None, schema: str | None) -> None:
    """Remove values whose valid_time is older than their series' retention tier.

    Whole month partitions go where every series in them has expired; elsewhere the expired
    rows are deleted. All versions and corrections of a kept valid_time stay. Also makes the
    partitions of this month and the next three where missing. Safe to run while
    the server serves traffic and from cron or a systemd timer (one run at a time; each step
    commits by itself).
    """
    from timedb.db import partitions as parts
    from timedb.db import retention as ret
    from timedb.db.commands import using

    def work(conn: Any) -> None:
        ret.hold_lock(conn)
        tiers = ret.tiers(conn)
        shown = ", ".join(f"{t.name} {t.interval} (before {_when(t.cutoff)})" for t in tiers.values())
        click.echo(f"Retention: {shown}; forever: kept.")
        steps = ret.plan(conn)
        if dry_run:
            _report(steps, would=True)
            return
        # a daily run also keeps the coming months made ahead of the data
        made = sum(parts.ensure(conn, table, []) for table in parts.FACT_TABLES)
        if made:
            click.echo(f"Made {made} partition{'s' * (made != 1)} for the coming months.")
        taken: list[ret.Step] = []
        with click.progressbar(
            length=len(steps), label="Removing", file=sys.stderr, show_pos=True, item_show_func=lambda s: s
        ) as bar:
            for step in ret.apply(conn, steps):
                taken.append(step)
                bar.update(1, step.table)
        _report(taken, would=False)

    call(lambda: using(conninfo_of(dsn), work, schema))


def _report(steps: list[Any], would: bool) -> None:
    """One line per step, then the totals."""
    verb = ("would drop", "would delete") if would else ("dropped", "deleted")
    for s in steps:
        if s.drop:
            click.echo(f"  {verb[0]:<12} {s.table:<24} {s.rows:>14,} rows {_size(s.bytes):>10}")
        else:
            tiers = ", ".join(t if cutoff is None else f"{t} < {_when(cutoff)}" for t, cutoff, _ in s.deletes)
            click.echo(f"  {verb[1]:<12} {s.table:<24} {s.rows:>14,} rows {'~' + _size(s.bytes):>10}  ({tiers})")
    drops = [s for s in steps if s.drop]
    deletes = [s for s in steps if not s.drop]
    total = sum(s.rows for s in steps)
    head = "Would remove" if would else "Removed"
    click.echo(
        f"{head} {total:,} rows: {len(drops)} partition{'s' * (len(drops) != 1)} dropped"
        f" ({_size(sum(s.bytes for s in drops))}), {sum(s.rows for s in deletes):,} rows deleted"
        f" (~{_size(sum(s.bytes for s in deletes))}, reused after VACUUM)."
    )
