"""Every statement the server sends to PostgreSQL that touches a fact table (flat, overlapping,
batches_table) names series_id: the property the distributed layouts rely on (docs/scaling.md,
issue 14). The statements are collected from the driver while the app serves every kind of
read and write, not read from the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

FACT_TABLES = re.compile(r"\b(flat|overlapping|batches_table)\b")
T0 = "2025-01-01T00:00:00Z"


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The text of every statement executed, streamed, run with executemany or copied while a test
    runs (the COPY reads of the CSV and Arrow formats send their text through libpq directly and
    are not seen; they are the same statements as the JSON reads)."""
    seen: list[str] = []

    def text(cursor: Any, query: Any) -> str:
        if isinstance(query, sql.Composable):
            return query.as_string(cursor)
        return query.decode() if isinstance(query, bytes) else str(query)

    def recording(name: str) -> None:
        original = getattr(psycopg.Cursor, name)

        def record(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(text(self, query))
            return original(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, name, record)

    for name in ("execute", "executemany", "copy", "stream"):
        recording(name)
    yield seen


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_every_statement_on_a_fact_table_names_series_id(client, statements):
    ids = {}
    for kind, overlapping in (("flat", False), ("overlapping", True)):
        ids[kind] = ok(client.post("/series", json={"name": kind, "unit": "MW", "overlapping": overlapping}))[
            "series_id"
        ]
        data = [{"valid_time": f"2025-01-01T0{h}:00:00Z", "value": h} for h in range(4)]
        ok(client.post("/values", json={"series_id": ids[kind], "known_time": T0, "data": data}))
        ok(
            client.put(
                "/values",
                json={"updates": [{"series_id": ids[kind], "valid_time": "2025-01-01T01:00:00Z", "value": 9}]},
            )
        )
        for params in (
            {},
            {"versions": "true"},
            {"include_updates": "true"},
            {"as_of": T0},
            {"resample": "PT2H", "agg": "mean"},
            {"tz": "Europe/Berlin"},
            {"min_horizon": "PT1H"},
        ):
            ok(client.get("/values", params={"series_id": ids[kind], **params}))
    rows = [
        {"series_id": sid, "valid_time": "2025-01-02T00:00:00Z", "value": 1.0, "known_time": T0} for sid in ids.values()
    ]
    ok(client.post("/values/bulk", json={"rows": rows, "skip_unchanged": True}))
    ok(client.post("/values/query", json={"series": [{"series_id": sid} for sid in ids.values()]}))
    ok(client.get("/series", params={"name": "flat"}))

    on_facts = [s for s in statements if FACT_TABLES.search(s)]
    assert len(on_facts) >= 20, statements  # (the recording works)
    without = [s for s in on_facts if "series_id" not in s]
    assert not without, f"statements on a fact table that do not name series_id: {without}"
    # every kind of statement was seen: latest/versions reads, the audit join, many series, COPY
    assert [any(mark in s for s in on_facts) for mark in ("DISTINCT ON", "JOIN batches_table", "s.id", "COPY")] == [
        True
    ] * 4
