import pytest

from timedb.errors import ConfigError
from timedb.settings import Settings, environment, read_dotenv


def test_timedb_dsn_wins_over_database_url():
    s = Settings.from_env({"TIMEDB_DSN": "postgresql:///a", "DATABASE_URL": "postgresql:///b"})
    assert s.dsn == "postgresql:///a"


def test_database_url_is_the_fallback():
    assert Settings.from_env({"DATABASE_URL": "postgresql:///b"}).dsn == "postgresql:///b"


def test_missing_dsn_names_both_variables_and_embedded():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({})
    text = str(err.value)
    assert "TIMEDB_DSN" in text and "DATABASE_URL" in text and "--embedded" in text


def test_dotenv_never_overrides_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text('# comment\nexport TIMEDB_DSN="postgresql:///from-file"\nOTHER=1\n')
    monkeypatch.setenv("TIMEDB_DSN", "postgresql:///from-env")
    env = environment(tmp_path)
    assert env["TIMEDB_DSN"] == "postgresql:///from-env"
    assert env["OTHER"] == "1"
    assert read_dotenv(tmp_path / ".env")["TIMEDB_DSN"] == "postgresql:///from-file"


def test_prepare_threshold_none_for_pgbouncer():
    s = Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_PREPARE_THRESHOLD": "none"})
    assert s.prepare_threshold is None
    with pytest.raises(ConfigError):
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_POOL_MAX_SIZE": "many"})


def test_limits_have_safe_defaults():
    s = Settings.from_env({"TIMEDB_DSN": "x"})
    assert (s.statement_timeout, s.lock_timeout, s.client_timeout) == (30.0, 5.0, 30.0)
    assert (s.pool_timeout, s.pool_max_waiting, s.max_large_bodies) == (5.0, 20, 2)
    assert s.idempotency_ttl == 86400.0
    assert s.prepare_threshold == 5  # kept off behind a pooler (tests/faults/test_limits.py)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2min", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("90", 90.0),
        ("0", 0.0),
        (" 1.5 s ", 1.5),
        ("10MS", 0.01),
    ],
)
def test_durations(raw, seconds):
    s = Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_STATEMENT_TIMEOUT": raw, "TIMEDB_CLIENT_TIMEOUT": raw})
    assert s.statement_timeout == seconds == s.client_timeout


@pytest.mark.parametrize("raw", ["soon", "-1s", "1 week", "1e3"])
def test_bad_durations_name_the_variable(raw):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_LOCK_TIMEOUT": raw})
    assert "TIMEDB_LOCK_TIMEOUT" in str(err.value)


def test_cors_origins_are_off_by_default():
    assert Settings.from_env({"TIMEDB_DSN": "x"}).cors_origins == ()
    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_CORS_ORIGINS": " , "}).cors_origins == ()


def test_cors_origins_are_a_comma_list_without_spaces_or_empty_items():
    env = {"TIMEDB_DSN": "x", "TIMEDB_CORS_ORIGINS": " https://app.example ,,http://localhost:5173 , "}
    assert Settings.from_env(env).cors_origins == ("https://app.example", "http://localhost:5173")
    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(("low", "high"), [("11", "10"), ("-1", "10"), ("0", "0")])
def test_pool_sizes_that_cannot_work_are_one_line(low, high):
    with pytest.raises(ConfigError, match="TIMEDB_POOL_MIN_SIZE") as caught:
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_POOL_MIN_SIZE": low, "TIMEDB_POOL_MAX_SIZE": high})
    assert "\n" not in str(caught.value)


def test_pool_sizes_that_work():
    settings = Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_POOL_MIN_SIZE": "0", "TIMEDB_POOL_MAX_SIZE": "1"})
    assert (settings.pool_min_size, settings.pool_max_size) == (0, 1)


def test_dotenv_reads_what_shells_and_docker_read(tmp_path):
    """python-dotenv (issue 13): a `# comment` after a value is not part of it (the hand parser
    kept it), quotes and `export` are understood, nothing is expanded, a bare key is absent."""
    (tmp_path / ".env").write_text(
        "TIMEDB_DSN=postgresql:///a  # the production database\n"
        "export TIMEDB_AUTH='tokens'\n"
        'TIMEDB_CORS_ORIGINS="https://a.example # not a comment inside quotes"\n'
        "TIMEDB_LOCK_TIMEOUT=${HOME}\n"
        "BARE\n"
        "# TIMEDB_POOL_MAX_SIZE=99\n"
    )
    values = read_dotenv(tmp_path / ".env")
    assert values == {
        "TIMEDB_DSN": "postgresql:///a",
        "TIMEDB_AUTH": "tokens",
        "TIMEDB_CORS_ORIGINS": "https://a.example # not a comment inside quotes",
        "TIMEDB_LOCK_TIMEOUT": "${HOME}",
    }


def test_an_unreadable_dotenv_counts_as_empty(tmp_path):
    (tmp_path / ".env").write_bytes(b"TIMEDB_DSN=\xff\xfe\n")
    assert read_dotenv(tmp_path / ".env") == {}
    (tmp_path / "dir.env").mkdir()
    assert read_dotenv(tmp_path / "dir.env") == {}
    assert read_dotenv(tmp_path / "missing.env") == {}


def test_no_read_replica_unless_configured():
    settings = Settings.from_env({"TIMEDB_DSN": "x"})
    assert (settings.read_dsn, settings.read_max_lag) == (None, 0.0)
    assert Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_READ_DSN": "  "}).read_dsn is None


def test_read_dsn_and_max_lag():
    env = {
        "TIMEDB_DSN": "postgresql://primary/db",
        "TIMEDB_READ_DSN": " postgresql://replica/db ",
        "TIMEDB_READ_MAX_LAG": "30s",
    }
    settings = Settings.from_env(env)
    assert (settings.dsn, settings.read_dsn, settings.read_max_lag) == (
        "postgresql://primary/db",
        "postgresql://replica/db",
        30.0,
    )
    assert Settings.from_env({**env, "TIMEDB_READ_MAX_LAG": "500ms"}).read_max_lag == 0.5
    assert Settings.from_env({**env, "TIMEDB_READ_MAX_LAG": "0"}).read_max_lag == 0.0


def test_read_dsn_comes_from_dotenv_like_the_dsn(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "TIMEDB_DSN=postgresql:///a\nTIMEDB_READ_DSN=postgresql://replica/a  # hot standby\n"
    )
    monkeypatch.delenv("TIMEDB_READ_DSN", raising=False)
    assert Settings.from_env(environment(tmp_path)).read_dsn == "postgresql://replica/a"
    monkeypatch.setenv("TIMEDB_READ_DSN", "postgresql://other/a")
    assert Settings.from_env(environment(tmp_path)).read_dsn == "postgresql://other/a"


@pytest.mark.parametrize("raw", ["soon", "-5s", "1 week"])
def test_a_bad_max_lag_names_the_variable(raw):
    with pytest.raises(ConfigError, match="TIMEDB_READ_MAX_LAG") as caught:
        Settings.from_env({"TIMEDB_DSN": "x", "TIMEDB_READ_DSN": "y", "TIMEDB_READ_MAX_LAG": raw})
    assert "\n" not in str(caught.value)
