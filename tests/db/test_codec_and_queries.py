"""The data layer's codec and query builders on a real database, without HTTP (issue 13).

- timedb.db.copy_binary writes PostgreSQL's binary COPY format: what PostgreSQL reads back must
  be what was encoded (nulls, constants, extreme values, more rows than one block).
- timedb.db.read_query builds the SQL of reads: run on rows inserted here, each answer is
  compared with one computed in Python from the same rows (zoneinfo for local times).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
import pytest

from timedb.db import copy_binary, partitions
from timedb.db.read_query import Mode, ReadSpec, Resample, Window, build_query, multi_query


@pytest.fixture
def conn(db_dsn: str, emptier) -> Iterator[psycopg.Connection]:
    emptier()
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


# --- the binary COPY codec -----------------------------------------------------------------------


def copy_back(conn: psycopg.Connection, columns: list[copy_binary.Column]) -> list[tuple]:
    """Encode the columns (int8, timestamptz, float8), COPY them into a table, read them back."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS c (i int8, t timestamptz, f float8)")
    conn.execute("TRUNCATE c")
    with conn.cursor() as cur, cur.copy("COPY c (i, t, f) FROM STDIN (FORMAT BINARY)") as copy:
        for chunk in copy_binary.encode(columns):
            copy.write(bytes(chunk))
    return conn.execute("SELECT i, t, f FROM c ORDER BY i").fetchall()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_copy_codec_round_trips_values_nulls_and_constants(conn):
    ids = [1, 2, 3, 4, 5, 6]
    # microseconds since 1970, before and after PostgreSQL's epoch of 2000 and the unix one
    times_us = [0, -1, 946_684_800_000_000, 1_700_000_000_123_456, -62_135_596_800_000_000, None]
    values = [0.0, -0.0, 1.5e308, -2.5, None, 5e-324]
    rows = copy_back(
        conn,
        [
            pa.array(ids, pa.int64()),
            copy_binary.pg_timestamps(pa.array(times_us, pa.int64())),
            pa.array(values, pa.float64()),
        ],
    )
    expected = [
        (i, None if us is None else EPOCH + timedelta(microseconds=us), v)
        for i, us, v in zip(ids, times_us, values, strict=True)
    ]
    assert [(i, t, v) for i, t, v in rows] == expected
    assert math.copysign(1, rows[1][2]) == -1  # -0.0 stays negative

    constant = copy_back(conn, [pa.array([7, 8], pa.int64()), None, 2.25])
    assert constant == [(7, None, 2.25), (8, None, 2.25)]


def test_copy_codec_spans_blocks(conn):
    n = copy_binary.BLOCK_ROWS + 3  # more than one block, the last one short
    ids = pa.array(range(n), pa.int64())
    values = pa.array([None if i % 1000 == 7 else i / 4 for i in range(n)], pa.float64())
    rows = copy_back(conn, [ids, 42 * 1_000_000 - copy_binary.PG_EPOCH_US, values])
    assert len(rows) == n
    assert rows[-1] == (n - 1, EPOCH + timedelta(seconds=42), (n - 1) / 4)
    assert [i for i, _, v in rows if v is None] == [i for i in range(n) if i % 1000 == 7]


# --- the query builders --------------------------------------------------------------------------

T0 = datetime(2025, 3, 29, 22, tzinfo=UTC)  # Berlin: 23:00 on the day before DST starts
HOUR = timedelta(hours=1)


def insert_overlapping(conn: psycopg.Connection, sid: int, rows: list[tuple[datetime, datetime, datetime, float]]):
    """Versions (known_time, valid_time, change_time, value) of an overlapping series (the
    partitions of their months made first: a direct INSERT does not make them)."""
    partitions.ensure(conn, "overlapping", partitions.months_of(row[1] for row in rows), ahead=False)
    conn.execute(
        "INSERT INTO series_table (series_id, name, unit, overlapping) VALUES (%s, %s, 'MW', true)", (sid, f"s{sid}")
    )
    batch = conn.execute(
        "INSERT INTO batches_table (series_id, known_time) VALUES (%s, %s) RETURNING batch_id", (sid, T0)
    ).fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO overlapping (batch_id, series_id, known_time, valid_time, change_time, value)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(batch, sid, *row) for row in rows],
        )


def run(conn: psycopg.Connection, spec: ReadSpec, sid: int) -> list[tuple]:
    query, params = build_query(True, spec)
    return conn.execute(query, {**params, "series_id": sid}).fetchall()


# three forecasts of six hours, issued an hour apart; the middle one corrected once at +10 min
ISSUES = [T0 - 3 * HOUR, T0 - 2 * HOUR, T0 - HOUR]
VERSIONS = [
    (kt, T0 + h * HOUR, kt, 10 * k + h) for k, kt in enumerate(ISSUES) for h in range(6) if not (k == 2 and h < 2)
] + [(ISSUES[1], T0 + 3 * HOUR, ISSUES[1] + timedelta(minutes=10), 99.0)]


def python_latest(as_of: datetime | None = None) -> dict[datetime, float]:
    """For each valid_time: the newest known_time's value (at as_of: versions and corrections
    made by then), then its newest change."""
    best: dict[datetime, tuple[datetime, datetime, float]] = {}
    for kt, vt, ct, v in VERSIONS:
        if as_of is not None and (kt > as_of or ct > as_of):
            continue
        if vt not in best or (kt, ct) > best[vt][:2]:
            best[vt] = (kt, ct, v)
    return {vt: v for vt, (_, _, v) in sorted(best.items())}


@pytest.mark.parametrize("as_of", [None, ISSUES[1], ISSUES[1] + timedelta(minutes=10), ISSUES[2]])
def test_latest_and_as_of_agree_with_python(conn, as_of):
    insert_overlapping(conn, 1, VERSIONS)
    rows = run(conn, ReadSpec(window=Window(as_of=as_of)), 1)
    # timestamps come as UTC wall times (naive) unless out_tz is set
    assert {vt.replace(tzinfo=UTC): v for vt, _, v in rows} == python_latest(as_of)


def test_versions_list_each_forecast_with_its_newest_change(conn):
    insert_overlapping(conn, 1, VERSIONS)
    rows = run(conn, ReadSpec(mode=Mode.VERSIONS), 1)
    newest: dict[tuple[datetime, datetime], tuple[datetime, float]] = {}
    for kt, vt, ct, v in VERSIONS:
        if (kt, vt) not in newest or ct > newest[(kt, vt)][0]:
            newest[(kt, vt)] = (ct, v)
    assert [(kt.replace(tzinfo=UTC), vt.replace(tzinfo=UTC), v) for kt, vt, _, v in rows] == [
        (kt, vt, v) for (kt, vt), (_, v) in sorted(newest.items())
    ]


def test_horizon_keeps_lead_times_inside_the_window(conn):
    insert_overlapping(conn, 1, VERSIONS)
    lo, hi = 2 * HOUR, 4 * HOUR
    rows = run(conn, ReadSpec(mode=Mode.VERSIONS, window=Window(min_horizon=lo, max_horizon=hi)), 1)
    assert rows
    for kt, vt, _, _ in rows:
        assert lo <= vt - kt <= hi


def test_hourly_mean_in_berlin_follows_the_local_day(conn):
    """Buckets of 2 hours from local midnight in Europe/Berlin, on the night DST starts (the day
    has 23 hours): computed here with zoneinfo, not by the server."""
    insert_overlapping(conn, 1, VERSIONS)
    berlin = ZoneInfo("Europe/Berlin")
    spec = ReadSpec(resample=Resample(unit="second", seconds=7200, agg="mean", tz="Europe/Berlin"))
    rows = run(conn, spec, 1)
    buckets: dict[datetime, list[float]] = {}
    for vt, v in python_latest().items():
        local = vt.astimezone(berlin)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = vt - midnight.astimezone(UTC)  # elapsed time since the local midnight
        start = midnight.astimezone(UTC) + (elapsed // timedelta(hours=2)) * timedelta(hours=2)
        buckets.setdefault(start, []).append(v)
    assert [(start.replace(tzinfo=UTC), value) for start, _, value in rows] == [
        (start, sum(vs) / len(vs)) for start, vs in sorted(buckets.items())
    ]


def test_multi_query_answers_each_series_as_the_single_read(conn):
    insert_overlapping(conn, 1, VERSIONS)
    insert_overlapping(conn, 2, [(kt, vt + HOUR, ct, v * 2) for kt, vt, ct, v in VERSIONS])
    spec = ReadSpec(window=Window(as_of=ISSUES[1]))
    query, params = multi_query(spec)
    rows = conn.execute(query, {**params, "ids": [2, 1], "overlapping": [True, True]}).fetchall()
    assert [r[0] for r in rows] == sorted([r[0] for r in rows], key=[2, 1].index)  # series in the asked order
    for sid in (1, 2):
        assert [r[1:] for r in rows if r[0] == sid] == run(conn, spec, sid)


def test_fact_table_unique_keys_start_with_series_id_and_valid_time(db_dsn):
    """Partitioning by valid_time, TimescaleDB (hypertables on valid_time) and Citus (tables
    distributed by series_id) each need their column in every unique key (docs/scaling.md)."""
    with psycopg.connect(db_dsn) as conn:
        keys = conn.execute(
            "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,"
            "       array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(n, o)"
            "             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)"
            "  FROM pg_index i WHERE (i.indisunique OR i.indisprimary)"
            "   AND i.indrelid IN ('flat'::regclass, 'overlapping'::regclass)"
        ).fetchall()
    assert {table for table, _, _ in keys} == {"flat", "overlapping"}, keys
    for table, index, columns in keys:
        assert columns[:2] == ["series_id", "valid_time"], (table, index, columns)


def test_every_read_filters_by_series_id():
    """The property the distributed layouts rely on (docs: Citus routes by series_id): each read
    statement names the series in its WHERE clause, whatever the parameters."""
    specs = [
        ReadSpec(),
        ReadSpec(mode=Mode.VERSIONS, window=Window(as_of=T0)),
        ReadSpec(mode=Mode.AUDIT),
        ReadSpec(resample=Resample(unit="month", agg="sum", tz="Europe/Berlin")),
    ]
    for spec in specs:
        for overlapping in (True, False):
            text = build_query(overlapping, spec)[0].as_string(None)
            assert "t.series_id = %(series_id)s" in text, text
            if "batches_table" in text:  # a join stays on the series' shard (docs/scaling.md, #2)
                assert "b.series_id = t.series_id" in text, text
        assert "t.series_id = s.id" in multi_query(spec)[0].as_string(None)
