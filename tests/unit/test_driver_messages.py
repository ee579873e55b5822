"""Driver messages shown to users never carry a password (libpq quotes malformed DSNs whole)."""

import psycopg
import pytest

from timedb.db.errors import first_line


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://user:PASS@[::1/db",
        "postgres://user:PASS@[::1",
        "postgresql://user:PA%zzSS@localhost/db",
    ],
)
def test_malformed_dsn_messages_hide_the_password(dsn):
    with pytest.raises(psycopg.Error) as err:
        psycopg.connect(dsn, connect_timeout=1)
    shown = first_line(err.value)
    assert "PASS" not in shown and "zz" not in shown, shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('invalid URI: "postgresql://u:secret@h/db"', 'invalid URI: "postgresql://u:***@h/db"'),
        ("missing = in 'host=h password=secret port'", "missing = in 'host=h password=*** port'"),
        ("bad: password='se cret' x", "bad: password=*** x"),
        ("first line\nsecond line with password=x", "first line"),
    ],
)
def test_first_line_masks_passwords(text, shown):
    assert first_line(Exception(text)) == shown


def test_first_line_of_an_empty_message_is_the_class_name():
    assert first_line(ValueError()) == "ValueError"
