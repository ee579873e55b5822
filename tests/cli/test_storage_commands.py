"""`timedb partitions list|migrate`, `timedb retention apply` and `timedb create tables` on an
older database (issue 14): the commands on a real database (click's CliRunner)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner

from tests.db.older import dump, old_database
from timedb.cli import main
from timedb.db import partitions


def run(*args: str):
    return CliRunner(env={"TIMEDB_DSN": None, "DATABASE_URL": None}).invoke(main, list(args))


def test_partitions_list_shows_each_month_with_rows_and_size(make_database):
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as c:
        partitions.ensure(c, "flat", [datetime(2024, 2, 1, tzinfo=UTC)], ahead=False)
        c.execute(
            "INSERT INTO flat (series_id, valid_time, value)"
            " SELECT 1, t, 1 FROM generate_series('2024-02-01+00'::timestamptz, '2024-02-29 23:00+00', '1 hour') t"
        )
    shown = run("partitions", "list", "--count", "-d", dsn)
    assert shown.exit_code == 0, shown.output
    line = next(ln for ln in shown.output.splitlines() if "flat_p202402" in ln).split()
    assert line[:6] == ["flat", "flat_p202402", "2024-02-01", "00:00", "2024-03-01", "00:00"]
    assert line[6] == f"{29 * 24:,}"
    as_json = [json.loads(ln) for ln in run("partitions", "list", "--json", "--count", "-d", dsn).output.splitlines()]
    feb = next(p for p in as_json if p["partition"] == "flat_p202402")
    assert feb["from"] == "2024-02-01T00:00:00+00:00" and feb["to"] == "2024-03-01T00:00:00+00:00"
    assert feb["rows"] == 29 * 24 and feb["rows_exact"] is True and feb["bytes"] > 0
    assert {p["table"] for p in as_json} == {"flat", "overlapping"}


def test_create_tables_refuses_a_large_older_database_with_one_line(make_database, monkeypatch):
    dsn = old_database(make_database)
    before = dump(dsn)
    monkeypatch.setattr(partitions, "AUTO_MIGRATE_ROWS", 10)
    refused = run("create", "tables", "-y", "-d", dsn)
    assert refused.exit_code == 1
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: flat and overlapping hold more than 10 rows")
    assert "timedb partitions migrate" in lines[0]
    assert dump(dsn) == before
    moved = run("partitions", "migrate", "-y", "-d", dsn)
    assert moved.exit_code == 0, moved.output
    assert f"flat {len(before['flat']):,} rows, overlapping 2 rows" in moved.output
    assert dump(dsn) == before
    again = run("partitions", "migrate", "-y", "-d", dsn)
    assert "nothing to move" in again.output


def test_partitions_migrate_keeps_the_recorded_retention(make_database):
    dsn = old_database(make_database)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO timedb_settings VALUES ('retention_short', '9 days')")
    assert run("partitions", "migrate", "-y", "-d", dsn).exit_code == 0
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT value FROM timedb_settings WHERE key = 'retention_short'").fetchone() == ("9 days",)


@pytest.fixture
def expired(make_database) -> str:
    """A database whose short series has two months of hourly values 400 days ago (expired)
    and one value yesterday (kept)."""
    dsn = make_database()
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    old = [now - timedelta(days=400) - timedelta(hours=h) for h in range(60 * 24)]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO series_table (name, retention) VALUES ('short', 'short')")
        partitions.ensure(c, "flat", [*old, now - timedelta(days=1)], ahead=False)
        with c.cursor() as cur:
            cur.executemany("INSERT INTO flat (series_id, valid_time, value) VALUES (1, %s, 1)", [(t,) for t in old])
        c.execute("INSERT INTO flat (series_id, valid_time, value) VALUES (1, %s, 1)", (now - timedelta(days=1),))
    return dsn


def test_retention_apply_dry_run_then_apply(expired):
    dry = run("retention", "apply", "--dry-run", "-d", expired)
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("Retention: short 6 months (before ")
    assert f"Would remove {60 * 24:,} rows: " in dry.output
    with psycopg.connect(expired) as c:
        assert c.execute("SELECT count(*) FROM flat").fetchone() == (60 * 24 + 1,)
    done = run("retention", "apply", "-d", expired)
    assert done.exit_code == 0, done.output
    assert f"Removed {60 * 24:,} rows: " in done.output
    assert done.output.count("dropped ") + done.output.count("deleted ") >= 2  # (two or three months)
    with psycopg.connect(expired) as c:
        assert c.execute("SELECT count(*) FROM flat").fetchone() == (1,)
    again = run("retention", "apply", "-d", expired)
    assert "Removed 0 rows: 0 partitions dropped (0 B), 0 rows deleted" in again.output


def test_retention_apply_makes_the_coming_months(make_database):
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE " + ", ".join(f"{t}_p{m:%Y%m}" for t in partitions.FACT_TABLES for m in coming()))
    assert run("retention", "apply", "--dry-run", "-d", dsn).exit_code == 0  # (a dry run makes nothing)
    with psycopg.connect(dsn) as c:
        assert not {p.name for p in partitions.listing(c)}
    done = run("retention", "apply", "-d", dsn)
    assert "Made 8 partitions for the coming months." in done.output
    with psycopg.connect(dsn) as c:
        assert {p.name for p in partitions.listing(c)} == {
            f"{t}_p{m:%Y%m}" for t in partitions.FACT_TABLES for m in coming()
        }


def coming() -> list[datetime]:
    """This month and the three after it (UTC), by calendar arithmetic written out here."""
    now = datetime.now(UTC)
    return [
        datetime(now.year + (now.month - 1 + k) // 12, (now.month - 1 + k) % 12 + 1, 1, tzinfo=UTC) for k in range(4)
    ]
