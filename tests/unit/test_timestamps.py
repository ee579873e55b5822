from datetime import UTC, datetime, timedelta, timezone

import pytest

from timedb.errors import Unprocessable
from timedb.timestamps import parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-01T00:00:00Z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T00:00:00", datetime(2025, 1, 1, tzinfo=UTC)),  # naive = UTC
        ("2025-01-01", datetime(2025, 1, 1, tzinfo=UTC)),  # date = midnight UTC
        ("2025-01-01t00:00:00z", datetime(2025, 1, 1, tzinfo=UTC)),  # RFC 3339 allows lower case
        ("2025-01-01 02:00:00 02:00", datetime(2025, 1, 1, tzinfo=UTC)),  # '+' decoded to ' '
        ("2025-01-01T02:00:00+0200", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T00:00:00.123456789Z", datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_instants(text, expected):
    assert parse_timestamp(text) == expected


def test_offset_is_kept_for_echoing():
    dt = parse_timestamp("2025-01-01T04:00:00+02:00")
    assert dt.utcoffset() == timedelta(hours=2)
    assert dt.isoformat() == "2025-01-01T04:00:00+02:00"
    assert dt.tzinfo == timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    "text", ["2025-02-30", "2025-13-01", "nope", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-01:00"]
)
def test_invalid_dates_are_422(text):
    with pytest.raises(Unprocessable) as err:
        parse_timestamp(text, "valid_time")
    assert "valid_time" in err.value.detail
    assert err.value.status == 422
