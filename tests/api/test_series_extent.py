"""Each series' extent (issue 14): every write path widens it to the rows it wrote, so a read
without a valid-time range, bounded by it, still returns every row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.helpers import insert, make_partitions, make_series, read
from timedb.db.schema import create_tables

Span = tuple[datetime, datetime]


def extents(dsn: str) -> dict[int, Span]:
    with psycopg.connect(dsn) as c:
        rows = c.execute("SELECT series_id, valid_from, valid_until FROM series_extent").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def spans(dsn: str) -> dict[int, Span]:
    """The first and last valid_time of each series' rows, straight from the fact tables."""
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT series_id, min(valid_time), max(valid_time) FROM"
            " (SELECT series_id, valid_time FROM flat UNION ALL SELECT series_id, valid_time FROM overlapping) r"
            " GROUP BY series_id"
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_posts_widen_the_extent_and_never_narrow_it(client, clean_db):
    make_partitions(clean_db, "2023-12", "2024-03", "2024-04", "2024-05")
    meter = make_series(client, name="meter")
    insert(client, meter, [("2024-03-10T00:00:00Z", 1.0), ("2024-05-02T06:00:00+02:00", 2.0)])
    assert extents(clean_db)[meter] == (utc("2024-03-10T00:00:00Z"), utc("2024-05-02T04:00:00Z"))
    insert(client, meter, [("2024-04-01T00:00:00Z", 3.0)])  # inside: unchanged
    assert extents(clean_db)[meter] == (utc("2024-03-10T00:00:00Z"), utc("2024-05-02T04:00:00Z"))
    insert(client, meter, [("2023-12-31T23:00:00-01:00", 4.0)])  # earlier, given in another zone
    assert extents(clean_db)[meter] == (utc("2024-01-01T00:00:00Z"), utc("2024-05-02T04:00:00Z"))
    fc = make_series(client, name="fc", overlapping=True)
    # points in any order: the last one is the earliest
    insert(client, fc, [("2024-04-02T00:00:00Z", 1.0), ("2024-05-01T00:00:00Z", 2.0), ("2024-03-01T00:00:00Z", 3.0)])
    assert extents(clean_db) == spans(clean_db)


@pytest.mark.parametrize("skip_unchanged", [False, True], ids=["copy", "skip_unchanged"])
def test_bulk_loads_widen_the_extent_of_every_series_they_write(client, clean_db, skip_unchanged):
    make_partitions(clean_db, "2024-01", "2024-02", "2024-06")
    a = make_series(client, name="a")
    b = make_series(client, name="b", overlapping=True)
    rows: list[dict[str, Any]] = [
        {"series_id": a, "valid_time": "2024-02-01T00:00:00Z", "value": 1.0},
        {"series_id": b, "valid_time": "2024-06-30T23:00:00Z", "value": 2.0, "known_time": "2024-01-01T00:00:00Z"},
        {"series_id": a, "valid_time": "2024-01-05T00:00:00Z", "value": 3.0},
        {"series_id": b, "valid_time": "2024-01-31T00:00:00Z", "value": 4.0, "known_time": "2024-01-01T00:00:00Z"},
    ]
    resp = client.post("/values/bulk", json={"rows": rows, "skip_unchanged": skip_unchanged})
    assert resp.status_code == 200, resp.text
    assert (
        extents(clean_db)
        == spans(clean_db)
        == {
            a: (utc("2024-01-05T00:00:00Z"), utc("2024-02-01T00:00:00Z")),
            b: (utc("2024-01-31T00:00:00Z"), utc("2024-06-30T23:00:00Z")),
        }
    )
    if skip_unchanged:  # rows skipped as unchanged do not widen: a repeat and one new row
        repeat = [rows[0], {"series_id": a, "valid_time": "2024-06-01T00:00:00Z", "value": 5.0}]
        resp = client.post("/values/bulk", json={"rows": repeat, "skip_unchanged": True})
        assert resp.status_code == 200, resp.text
        assert resp.json()["rows_inserted"] == 1
        assert extents(clean_db) == spans(clean_db)


def test_a_correction_that_creates_a_point_widens_the_extent(client, clean_db):
    make_partitions(clean_db, "2024-03", "2024-08")
    fc = make_series(client, name="fc", overlapping=True)
    batch = insert(client, fc, [("2024-03-01T00:00:00Z", 1.0)], known_time="2024-02-01T00:00:00Z")["batch_id"]
    new_vt = "2024-08-15T12:00:00Z"
    resp = client.put(
        "/values", json={"updates": [{"series_id": fc, "batch_id": batch, "valid_time": new_vt, "value": 9.0}]}
    )
    assert resp.status_code == 200, resp.text
    assert extents(clean_db)[fc] == (utc("2024-03-01T00:00:00Z"), utc(new_vt))
    assert [r["valid_time"] for r in read(client, series_id=fc)] == [
        "2024-03-01T00:00:00+00:00",
        "2024-08-15T12:00:00+00:00",
    ]


def test_a_failed_write_leaves_the_extent_as_it_was(client, clean_db):
    make_partitions(clean_db, "2024-03", "2030-01")
    meter = make_series(client, name="meter")
    insert(client, meter, [("2024-03-10T00:00:00Z", 1.0)])
    before = extents(clean_db)
    # a repeated valid_time refuses the whole request, after its rows went into COPY
    body = {"series_id": meter, "data": [{"valid_time": "2030-01-01T00:00:00Z", "value": 1.0}] * 2}
    assert client.post("/values", json=body).status_code == 422
    assert extents(clean_db) == before


def test_rows_written_with_sql_are_read_after_create_tables(client, clean_db):
    """Rows a user wrote with SQL lie outside the extent until `timedb create tables` widens it;
    a series whose rows were all written so has no extent and is read unbounded."""
    make_partitions(clean_db, "2024-03", "2024-09")
    meter = make_series(client, name="meter")
    hand = make_series(client, name="by hand")
    insert(client, meter, [("2024-03-10T00:00:00Z", 1.0)])
    with psycopg.connect(clean_db) as c:
        for sid in (meter, hand):
            c.execute(
                "INSERT INTO flat (series_id, valid_time, value) VALUES (%s, '2024-09-01T00:00:00Z', 2.0)", (sid,)
            )
    assert len(read(client, series_id=hand)) == 1  # no extent: not bounded
    assert len(read(client, series_id=meter)) == 1  # the SQL row is outside the extent
    create_tables(clean_db)
    assert extents(clean_db) == spans(clean_db)
    assert [r["value"] for r in read(client, series_id=meter)] == [1.0, 2.0]
    assert len(read(client, series_id=hand)) == 1


def test_a_range_wider_than_the_extent_reads_the_same_rows(client, clean_db):
    make_partitions(clean_db, "2024-03")
    meter = make_series(client, name="meter")
    points = [(f"2024-03-{d:02d}T00:00:00Z", float(d)) for d in (1, 15, 31)]
    insert(client, meter, points)
    # the ends: the first point is in, a range ending at the last point leaves it out
    assert [r["value"] for r in read(client, series_id=meter, start_valid="2000-01-01T00:00:00Z")] == [1.0, 15.0, 31.0]
    assert [r["value"] for r in read(client, series_id=meter, end_valid="2024-03-31T00:00:00Z")] == [1.0, 15.0]
    assert [r["value"] for r in read(client, series_id=meter, start_valid="2024-03-31T00:00:00Z")] == [31.0]
