"""The `timedb` command line (click CliRunner, real PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import timedb
from timedb.cli import main
from timedb.db.schema import TABLES

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
NO_DSN_ENV = {"TIMEDB_DSN": None, "DATABASE_URL": None}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No DSN from the real environment, and a cwd without a .env file."""
    monkeypatch.delenv("TIMEDB_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, input: str | None = None, env: dict | None = None):
    runner = CliRunner(env={**NO_DSN_ENV, **(env or {})})
    return runner.invoke(main, list(args), input=input)


def tables(dsn: str, schema: str = "public") -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(  # (tables and partitioned tables, not their partitions)
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            (schema,),
        ).fetchall()
    return {r[0] for r in rows}


def settings(dsn: str, schema: str = "public") -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema)))
        return dict(conn.execute("SELECT key, value FROM timedb_settings").fetchall())


def assert_clean_error(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Error:" in result.output, result.output


@pytest.fixture
def fresh(make_database) -> str:
    return make_database(with_tables=False)


# -- help and version --------------------------------------------------------------------


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0, result.output
    for word in ("api", "create", "delete", "--version"):
        assert word in result.output
    assert run("-h").output == result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert timedb.__version__ in result.output
    assert result.output.strip() == f"timedb, version {timedb.__version__}"


def test_api_help_lists_the_guide_options():
    result = run("api", "--help")
    assert result.exit_code == 0, result.output
    for opt in ("--host", "--port", "--reload", "--embedded", "--data-dir", "127.0.0.1", "8000"):
        assert opt in result.output, opt


def test_create_tables_help_lists_every_option():
    result = run("create", "tables", "--help")
    assert result.exit_code == 0, result.output
    for opt in (
        "--dsn",
        "-d,",
        "--schema",
        "-s,",
        "--retention",
        "-r,",
        "--retention-short",
        "--retention-medium",
        "--retention-long",
        "--yes",
        "-y,",
        "--dry-run",
    ):
        assert opt in result.output, opt
    for default in ("6 months", "3 years", "5 years"):
        assert default in result.output


def test_delete_tables_help():
    result = run("delete", "tables", "--help")
    assert result.exit_code == 0, result.output
    for opt in ("--dsn", "--schema", "--yes"):
        assert opt in result.output


def test_python_m_timedb_version():
    proc = subprocess.run(
        [sys.executable, "-m", "timedb", "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert timedb.__version__ in proc.stdout
    assert "Traceback" not in proc.stderr


# -- usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["create", "tables", "--bogus"],
        ["create"],
        ["create", "nosuch"],
        ["api", "--port", "notanumber"],
        ["api", "--port", "70000"],
    ],
)
def test_usage_errors_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2, (args, result.output)
    assert "Traceback" not in result.output
    if args != ["create"]:
        assert "Error" in result.output


# -- dry run ----------------------------------------------------------------------------------


def test_dry_run_prints_ddl_without_dsn_or_database(monkeypatch):
    def no_connect(*args, **kwargs):
        raise AssertionError("--dry-run must not connect")

    monkeypatch.setattr(psycopg, "connect", no_connect)
    result = run("create", "tables", "--dry-run")
    assert result.exit_code == 0, result.output
    for table in TABLES:
        assert f"CREATE TABLE IF NOT EXISTS {table}" in result.output, table
    assert "CREATE SCHEMA" not in result.output
    assert "search_path" not in result.output
    assert "'retention_short', '6 months'" in result.output
    assert "'retention_medium', '3 years'" in result.output
    assert "'retention_long', '5 years'" in result.output


def test_dry_run_ignores_an_unreachable_dsn(monkeypatch):
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: pytest.fail("connected"))
    result = run("create", "tables", "--dry-run", "-d", UNREACHABLE)
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE IF NOT EXISTS series_table" in result.output


def test_dry_run_with_schema_and_retention():
    result = run("create", "tables", "--dry-run", "-s", "My Data", "-r", "2 years", "--retention-short", "1 month")
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'CREATE SCHEMA IF NOT EXISTS "My Data";' in out
    assert 'SET search_path TO "My Data";' in out
    assert out.index("CREATE SCHEMA") < out.index("search_path") < out.index("CREATE TABLE")
    assert "'retention_medium', '2 years'" in out
    assert "'retention_short', '1 month'" in out


def test_dry_run_output_is_the_ddl_that_create_runs(fresh):
    """Executing the printed DDL yields the same tables as `create tables`."""
    ddl = run("create", "tables", "--dry-run", "-s", "dry").output
    with psycopg.connect(fresh) as conn:
        conn.execute(ddl.encode())
    assert tables(fresh, "dry") == set(TABLES)
    assert tables(fresh) == set()


# -- create tables ------------------------------------------------------------------------------


def test_create_tables_yes_creates_everything(fresh):
    result = run("create", "tables", "-y", "--dsn", fresh)
    assert result.exit_code == 0, result.output
    assert "Schema created successfully!" in result.output
    assert tables(fresh) == set(TABLES)
    stored = settings(fresh)
    assert stored["retention_short"] == "6 months"
    assert stored["retention_medium"] == "3 years"
    assert stored["retention_long"] == "5 years"


def test_create_tables_is_idempotent(fresh):
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    with psycopg.connect(fresh) as conn:
        conn.execute("INSERT INTO series_table (name, unit, labels) VALUES ('kept', 'MW', '{}')")
    result = run("create", "tables", "-y", "-d", fresh)
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT count(*) FROM series_table WHERE name = 'kept'").fetchone()[0] == 1


def test_create_tables_schema_created_and_used(fresh):
    schema = "Time Series"
    result = run("create", "tables", "-y", "-d", fresh, "--schema", schema)
    assert result.exit_code == 0, result.output
    assert schema in result.output
    assert tables(fresh, schema) == set(TABLES)
    assert tables(fresh, "public") == set()
    assert settings(fresh, schema)["retention_medium"] == "3 years"
    # again, now that the schema exists
    assert run("create", "tables", "-y", "-d", fresh, "-s", schema).exit_code == 0
    assert tables(fresh, schema) == set(TABLES)


def test_retention_options_are_stored(fresh):
    result = run(
        "create",
        "tables",
        "-y",
        "-d",
        fresh,
        "--retention-short",
        "1 month",
        "--retention-medium",
        "2 years",
        "--retention-long",
        "10 years",
    )
    assert result.exit_code == 0, result.output
    stored = settings(fresh)
    assert (stored["retention_short"], stored["retention_medium"], stored["retention_long"]) == (
        "1 month",
        "2 years",
        "10 years",
    )
    # a re-run updates them; -r is the shorthand for --retention-medium
    assert run("create", "tables", "-y", "-d", fresh, "-r", "4 years").exit_code == 0
    stored = settings(fresh)
    assert stored["retention_medium"] == "4 years"
    assert stored["retention_short"] == "6 months"


@pytest.mark.parametrize("option", ["--retention-short", "--retention-medium", "--retention-long", "-r"])
def test_invalid_retention_interval(fresh, option):
    result = run("create", "tables", "-y", "-d", fresh, option, "forever")
    assert_clean_error(result, 1)
    assert "'forever' is not a valid interval" in result.output
    assert tables(fresh) == set()


# -- where the DSN comes from --------------------------------------------------------------------


@pytest.mark.parametrize("command", [["create", "tables", "-y"], ["delete", "tables", "-y"]])
def test_missing_dsn_exits_2(command):
    result = run(*command)
    assert_clean_error(result, 2)
    assert "TIMEDB_DSN" in result.output and "DATABASE_URL" in result.output
    assert "--dsn" in result.output


def test_dsn_from_timedb_dsn(fresh):
    result = run("create", "tables", "-y", env={"TIMEDB_DSN": fresh})
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


def test_dsn_from_database_url(fresh):
    result = run("create", "tables", "-y", env={"DATABASE_URL": fresh})
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


def test_timedb_dsn_wins_over_database_url(fresh):
    result = run("create", "tables", "-y", env={"TIMEDB_DSN": fresh, "DATABASE_URL": UNREACHABLE})
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


def test_dsn_option_wins_over_environment(fresh):
    result = run("create", "tables", "-y", "-d", fresh, env={"TIMEDB_DSN": UNREACHABLE})
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


@pytest.mark.parametrize("key", ["TIMEDB_DSN", "DATABASE_URL"])
def test_dsn_from_dotenv_in_cwd(fresh, isolated, key):
    (isolated / ".env").write_text(f'# timedb\n{key}="{fresh}"\n')
    result = run("create", "tables", "-y")
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


def test_dotenv_does_not_override_the_environment(fresh, isolated):
    (isolated / ".env").write_text(f"TIMEDB_DSN={UNREACHABLE}\n")
    result = run("create", "tables", "-y", env={"TIMEDB_DSN": fresh})
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set(TABLES)


# -- confirmation prompts -------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["n\n", "\n", "no\n"])
def test_create_prompt_abort(fresh, answer):
    result = run("create", "tables", "-d", fresh, input=answer)
    assert result.exit_code == 0, result.output
    assert "Continue? [y/N]" in result.output
    assert "Aborted." in result.output
    assert tables(fresh) == set()


@pytest.mark.parametrize("command", ["create", "delete"])
def test_prompt_with_stdin_closed_is_an_abort(fresh, command):
    """No answer at all (stdin at its end, e.g. `< /dev/null` in a script) is a No: exit 0."""
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    proc = subprocess.run(
        [sys.executable, "-m", "timedb", command, "tables", "-d", fresh],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Aborted." in proc.stdout and "Aborted!" not in proc.stdout + proc.stderr
    assert tables(fresh) == set(TABLES)


def test_create_prompt_yes(fresh):
    result = run("create", "tables", "-d", fresh, "-s", "s1", input="y\n")
    assert result.exit_code == 0, result.output
    assert "About to create/update" in result.output
    assert "s1" in result.output
    assert tables(fresh, "s1") == set(TABLES)


def test_prompt_does_not_show_the_password(fresh):
    parts = conninfo_to_dict(fresh)
    parts["password"] = "s3cr3t-pw"
    result = run("create", "tables", "-d", make_conninfo(**parts), input="n\n")
    assert result.exit_code == 0, result.output
    assert "s3cr3t-pw" not in result.output
    result = run("delete", "tables", "-d", make_conninfo(**parts), input="n\n")
    assert "s3cr3t-pw" not in result.output


@pytest.mark.parametrize("answer", ["\n", "n\n"])
def test_delete_prompt_defaults_to_no(fresh, answer):
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    result = run("delete", "tables", "-d", fresh, input=answer)
    assert result.exit_code == 0, result.output
    assert "[y/N]" in result.output
    assert "Aborted." in result.output
    assert tables(fresh) == set(TABLES)


def test_delete_prompt_yes(fresh):
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    result = run("delete", "tables", "-d", fresh, input="y\n")
    assert result.exit_code == 0, result.output
    assert tables(fresh) == set()


# -- delete tables ---------------------------------------------------------------------------------


def test_delete_tables_yes_removes_everything(fresh):
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    with psycopg.connect(fresh) as conn:
        conn.execute("INSERT INTO series_table (name, unit, labels) VALUES ('gone', 'MW', '{}')")
    result = run("delete", "tables", "-y", "-d", fresh)
    assert result.exit_code == 0, result.output
    assert "deleted" in result.output
    assert tables(fresh) == set()
    # deleting again is harmless; creating again works
    assert run("delete", "tables", "-y", "-d", fresh).exit_code == 0
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    assert tables(fresh) == set(TABLES)


def test_delete_tables_in_schema_only(fresh):
    assert run("create", "tables", "-y", "-d", fresh).exit_code == 0
    assert run("create", "tables", "-y", "-d", fresh, "-s", "other").exit_code == 0
    result = run("delete", "tables", "-y", "-d", fresh, "-s", "other")
    assert result.exit_code == 0, result.output
    assert tables(fresh, "other") == set()
    assert tables(fresh, "public") == set(TABLES)


# -- unreachable database -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["create", "tables", "-y"], ["delete", "tables", "-y"]])
def test_unreachable_dsn_is_a_clean_error(command):
    result = run(*command, "-d", UNREACHABLE)
    assert_clean_error(result, 1)
    assert result.output.startswith("Error:"), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("command", [["create", "tables", "-y"], ["delete", "tables", "-y"]])
@pytest.mark.parametrize("dsn", ["this is not a dsn", "postgresql://postgres@127.0.0.1/x?bogus=1"])
def test_unparsable_dsn_is_a_clean_error(command, dsn):
    result = run(*command, "-d", dsn)
    assert_clean_error(result, 1)
