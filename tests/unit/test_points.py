"""timedb.points: the sliced decoding of POST /values' data agrees with the spec and with
parse_timestamp, whatever the slice boundaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import yaml

from tests.processes import ROOT
from timedb import points as pts
from timedb.errors import InvalidInput, Unprocessable
from timedb.timestamps import TIMESTAMP_PATTERN

SPEC = yaml.safe_load((ROOT / "openapi" / "timedb.yaml").read_text())
DATA_POINT = SPEC["components"]["schemas"]["DataPoint"]


def decode(data: object) -> pts.Points:
    """Points of a data array (JSON-encoded unless bytes), validated."""
    raw = json.dumps(data).encode() if not isinstance(data, bytes) else data
    points = pts.points(memoryview(raw))
    points.validate()
    return points


@pytest.fixture(autouse=True)
def small_slices(monkeypatch):
    """Slices of 64 bytes: a few points each, so every test crosses slice boundaries."""
    monkeypatch.setattr(pts, "SLICE_BYTES", 64)


@pytest.mark.parametrize("struct", [pts.FastPoint, pts.TextPoint])
def test_point_structs_mirror_the_spec_data_point(struct):
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    assert set(fields) == set(DATA_POINT["properties"])
    required = {name for name, f in fields.items() if f.required}
    assert required == set(DATA_POINT["required"])
    assert DATA_POINT["additionalProperties"] is False and struct.__struct_config__.forbid_unknown_fields
    nullable = {name for name, prop in DATA_POINT["properties"].items() if prop.get("nullable")}
    assert nullable == {"valid_time_end", "value"}


def test_timestamp_pattern_is_the_spec_pattern():
    schemas = SPEC["components"]["schemas"]
    assert schemas["Timestamp"]["pattern"] == TIMESTAMP_PATTERN
    assert DATA_POINT["properties"]["valid_time_end"]["pattern"] == TIMESTAMP_PATTERN


FORMS = [
    ("2025-01-01T00:00:00Z", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01t00:00:00z", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01 01:00:00+01:00", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01T00:00:00", datetime(2025, 1, 1, tzinfo=UTC)),  # naive: UTC
    ("2025-01-01", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01T00:00", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01T01:00:00+0100", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01T01:00:00+01", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2025-01-01T01:00:00 01:00", datetime(2025, 1, 1, tzinfo=UTC)),  # '+' not URL-encoded
    ("2025-01-01T00:00:00.123456789Z", datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),  # truncated
    ("2025-01-01T00:00:00.999999999Z", datetime(2025, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)),
    ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
]


def test_every_timestamp_form_decodes_to_the_same_instant_across_slices():
    data = [{"valid_time": text, "value": float(i)} for i, (text, _) in enumerate(FORMS)] * 3
    got = list(decode(data))
    assert [(vt, vte, v) for vt, vte, v in got] == [
        (want, None, float(i % len(FORMS))) for i, (_, want) in enumerate(FORMS * 3)
    ]
    assert all(vt.utcoffset() is not None for vt, _, _ in got)


def test_offsets_are_kept_as_instants():
    ((vt, _, _),) = decode([{"valid_time": "2025-06-01T12:00:00+02:00", "value": 1}])
    assert vt == datetime(2025, 6, 1, 10, tzinfo=UTC)


def test_count_nulls_intervals_and_integers():
    data = [
        {"valid_time": "2025-01-01T00:00:00Z", "value": None},
        {"valid_time": "2025-01-01T01:00:00Z", "valid_time_end": "2025-01-01T02:00:00Z", "value": 3},
        {"valid_time": "2025-01-01T02:00:00Z"},
    ]
    points = decode(data)
    assert points.count == 3
    assert list(points) == [
        (datetime(2025, 1, 1, 0, tzinfo=UTC), None, None),
        (datetime(2025, 1, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 2, tzinfo=UTC), 3.0),
        (datetime(2025, 1, 1, 2, tzinfo=UTC), None, None),
    ]


def test_whitespace_between_points_does_not_matter():
    raw = b'[ {"valid_time": "2025-01-01T00:00:00Z", "value": 1} ,\n\n {"valid_time": "2025-01-02", "value": 2}\n ]'
    assert [v for _, _, v in decode(raw)] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("item", "pointer"),
    [
        ({"valid_time": "2025-01-01T00:00:00Z", "value": "x"}, "/data/7/value"),
        ({"valid_time": "2025-01-01T00:00:00Z", "other": 1}, "/data/7"),
        ({"value": 1.0}, "/data/7"),
        ({"valid_time": "yesterday", "value": 1.0}, "/data/7/valid_time"),
        ({"valid_time": 20250101, "value": 1.0}, "/data/7/valid_time"),
        ({"valid_time": "2025-01-01T00:00:00Z", "value": [1, [2]]}, "/data/7/value"),
    ],
)
def test_invalid_points_are_400s_naming_their_pointer(item, pointer):
    good = [{"valid_time": f"2025-01-01T0{i}:00:00Z", "value": float(i)} for i in range(7)]
    with pytest.raises(InvalidInput) as err:
        decode([*good, item, *good])
    assert err.value.detail.endswith(f"(at {pointer})"), err.value.detail


def test_a_date_that_does_not_exist_is_a_422_naming_the_point():
    data = [{"valid_time": "2025-01-01T00:00:00Z", "value": 1}] * 9 + [{"valid_time": "2025-02-30", "value": 1}]
    with pytest.raises(Unprocessable) as err:
        decode(data)
    assert "data[9].valid_time" in err.value.detail


def test_an_interval_ending_before_it_starts_is_a_422_naming_the_point():
    data = [{"valid_time": f"2025-01-0{i + 1}", "value": 1} for i in range(6)]
    data.append({"valid_time": "2025-02-02", "valid_time_end": "2025-02-01", "value": 1})
    with pytest.raises(Unprocessable) as err:
        decode(data)
    assert err.value.detail.startswith("data[6]:")


def test_out_of_range_numbers_are_422():
    raw = b'[{"valid_time": "2025-01-01", "value": 1e400}]'
    with pytest.raises(Unprocessable):
        decode(raw)


@pytest.mark.parametrize("raw", [b"[]", b"[ ]"])
def test_no_points_is_a_400(raw):
    with pytest.raises(InvalidInput):
        decode(raw)


@pytest.mark.parametrize("raw", [b"5", b'"x"', b"{}", b"null"])
def test_data_that_is_not_an_array_is_a_400(raw):
    with pytest.raises(InvalidInput):
        decode(raw)


def test_braces_inside_strings_cannot_split_a_point_into_valid_pieces():
    # a cut after "}," inside a string leaves pieces that do not decode: the body is refused
    raw = b'[{"valid_time": "2025-01-01}, {", "value": 1}, {"valid_time": "2025-01-02", "value": 2}]'
    with pytest.raises(InvalidInput):
        decode(raw)


def test_iterating_twice_gives_the_same_points():
    data = [
        {"valid_time": (datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i)).isoformat(), "value": i}
        for i in range(50)
    ]
    points = decode(data)
    assert list(points) == list(points)
    assert points.count == 50
