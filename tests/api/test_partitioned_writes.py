"""Writes into months without a partition (issue 14): every write path makes the partitions of
its months and stores the rows; nothing fails, nothing is stored twice."""

from __future__ import annotations

import io

import psycopg
import pyarrow as pa
import pytest

from tests.helpers import make_series, read

# far from today and from each other: months no partition exists for
MONTHS = ("1990-01", "2040-06")


def points(day: str = "15") -> list[dict]:
    return [{"valid_time": f"{m}-{day}T12:00:00Z", "value": float(i)} for i, m in enumerate(MONTHS)]


def partitions_of(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
    return {r[0] for r in rows}


def read_back(client, sid: int) -> list[tuple[str, float]]:
    return [(r["valid_time"][:7], r["value"]) for r in read(client, series_id=sid)]


def drop_months(dsn: str) -> None:
    """The months of MONTHS go (partitions persist across tests of a worker)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        for table in ("flat", "overlapping"):
            for m in MONTHS:
                c.execute(f"DROP TABLE IF EXISTS {table}_p{m.replace('-', '')}")


@pytest.mark.parametrize("overlapping", [False, True], ids=["flat", "overlapping"])
@pytest.mark.parametrize("skip_unchanged", [False, True], ids=["copy", "skip_unchanged"])
def test_post_values_into_months_without_a_partition(client, clean_db, overlapping, skip_unchanged):
    drop_months(clean_db)
    sid = make_series(client, name="far", overlapping=overlapping)
    body = {"series_id": sid, "data": points(), "skip_unchanged": skip_unchanged}
    if overlapping:
        body["known_time"] = "1989-12-01T00:00:00Z"
    resp = client.post("/values", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows_inserted"] == 2
    table = "overlapping" if overlapping else "flat"
    assert {f"{table}_p199001", f"{table}_p204006"} <= partitions_of(clean_db, table)
    assert read_back(client, sid) == [("1990-01", 0.0), ("2040-06", 1.0)]


@pytest.mark.parametrize("fmt", ["json", "csv", "arrow"])
def test_bulk_loads_into_months_without_a_partition(client, clean_db, fmt):
    drop_months(clean_db)
    flat = make_series(client, name="meter")
    fc = make_series(client, name="wind", overlapping=True)
    rows = [
        {"series_id": sid, "valid_time": p["valid_time"], "value": p["value"], "known_time": "1989-12-01T00:00:00Z"}
        for sid in (flat, fc)
        for p in points()
    ]
    if fmt == "json":
        resp = client.post("/values/bulk", json={"rows": rows})
    elif fmt == "csv":
        text = "series_id,valid_time,value,known_time\n" + "".join(
            f"{r['series_id']},{r['valid_time']},{r['value']},{r['known_time']}\n" for r in rows
        )
        resp = client.post("/values/bulk", content=text, headers={"Content-Type": "text/csv"})
    else:
        table = pa.table({k: [r[k] for r in rows] for k in rows[0]})
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        resp = client.post(
            "/values/bulk", content=sink.getvalue(), headers={"Content-Type": "application/vnd.apache.arrow.stream"}
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows_inserted"] == 4
    assert read_back(client, flat) == read_back(client, fc) == [("1990-01", 0.0), ("2040-06", 1.0)]
