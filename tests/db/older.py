"""A database made by timedb before monthly partitions (schema version 2), with rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

V2_SCHEMA = (Path(__file__).parent / "schema_v2.sql").read_text()


def old_database(make_database: Callable[..., str]) -> str:
    """A database made by the schema of version 2 (plain fact tables), with rows: a flat series
    with a correction, an overlapping series with two versions of a valid_time."""
    dsn = make_database(with_tables=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(V2_SCHEMA.encode())
        c.execute("INSERT INTO series_table (name) VALUES ('meter')")
        c.execute("INSERT INTO series_table (name, overlapping) VALUES ('wind', true)")
        c.execute("INSERT INTO batches_table (series_id, known_time) VALUES (2, '2023-01-01+00'), (2, '2023-01-02+00')")
        c.execute(
            "INSERT INTO flat (series_id, valid_time, value, change_time, annotation)"
            " SELECT 1, t, extract(epoch FROM t), '2023-06-01+00', NULL"
            " FROM generate_series('2022-11-30+00'::timestamptz, '2023-02-02+00', interval '1 hour') AS t"
        )
        c.execute(
            "INSERT INTO flat (series_id, valid_time, value, change_time, annotation, changed_by)"
            " VALUES (1, '2023-01-15+00', -1, '2023-07-01+00', 'fixed', 'ops')"
        )
        c.execute(
            "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, value, tags)"
            " VALUES (1, 2, '2023-01-03+00', '2023-01-01+00', 1, '{a}'),"
            " (2, 2, '2023-01-03+00', '2023-01-02+00', 2, NULL)"
        )
    return dsn


def dump(dsn: str) -> dict[str, list[tuple]]:
    """Every row of both fact tables, every column, in id order."""
    with psycopg.connect(dsn) as c:
        return {
            "flat": c.execute("SELECT * FROM flat ORDER BY flat_id").fetchall(),
            "overlapping": c.execute("SELECT * FROM overlapping ORDER BY overlapping_id").fetchall(),
        }
