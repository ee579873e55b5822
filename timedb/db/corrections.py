"""Corrections: append a new row per corrected point, never touching the old one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.errors import BatchNotFound, PointNotFound, VersionConflict

TRI_STATE = ("value", "annotation", "tags", "changed_by")


@dataclass
class Correction:
    """One update item, with its series already resolved."""

    series_id: int
    overlapping: bool
    valid_time: datetime
    batch_id: int | None = None
    known_time: datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # provided tri-state fields only


def _jsonb(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows, dumps=lambda obj: orjson.dumps(obj).decode())


LOOKUP = """
SELECT i.idx, cur.row_id, cur.batch_id, cur.known_time, cur.change_time, cur.valid_time_end,
       cur.value, cur.annotation, cur.tags, cur.changed_by,
       b.batch_id IS NOT NULL AS batch_exists, b.known_time AS batch_known_time,
       {taken} AS version_taken
FROM jsonb_to_recordset(%(items)s) AS i(idx int, series_id bigint, valid_time timestamptz,
                                        batch_id bigint, known_time timestamptz)
-- LATERAL + LIMIT keeps this a primary-key probe per item (a plain join is planned as a
-- hash join over all of batches_table, a full scan per request)
LEFT JOIN LATERAL (
    SELECT bt.batch_id, bt.known_time FROM batches_table bt
    WHERE bt.batch_id = i.batch_id AND bt.series_id = i.series_id LIMIT 1
) b ON true
LEFT JOIN LATERAL (
    SELECT {row_id} AS row_id, {batch} AS batch_id, t.known_time, t.change_time, t.valid_time_end,
           t.value, t.annotation, t.tags, t.changed_by
    FROM {table} t
    WHERE t.series_id = i.series_id AND t.valid_time = i.valid_time {selector}
    ORDER BY {rank}
    LIMIT 1
) cur ON true
ORDER BY i.idx
"""

OVERLAPPING_SELECTOR = """
      AND (i.batch_id IS NULL OR t.batch_id = i.batch_id)
      AND (i.batch_id IS NOT NULL OR i.known_time IS NULL OR t.known_time = i.known_time)"""

INSERT = """
INSERT INTO {table} (series_id, valid_time, valid_time_end, known_time, change_time,
                     value, annotation, tags, changed_by{batch_col})
SELECT r.series_id, r.valid_time, r.valid_time_end, r.known_time,
       -- strictly after the row it corrects, even if the clock stepped back
       greatest(clock_timestamp(), r.prev_change_time + interval '1 microsecond'),
       r.value, r.annotation,
       CASE WHEN r.tags IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(r.tags)) END,
       r.changed_by{batch_val}
FROM jsonb_to_recordset(%(rows)s) AS r(series_id bigint, valid_time timestamptz,
     valid_time_end timestamptz, known_time timestamptz, prev_change_time timestamptz,
     value float8, annotation text, tags jsonb, changed_by text, batch_id bigint)
RETURNING {row_id}, series_id, valid_time, change_time{batch_ret}
"""


def _statements(overlapping: bool) -> tuple[sql.Composed, sql.Composed]:
    if overlapping:
        lookup = sql.SQL(LOOKUP).format(
            row_id=sql.SQL("t.overlapping_id"), batch=sql.SQL("t.batch_id"),
            table=sql.Identifier("overlapping"), selector=sql.SQL(OVERLAPPING_SELECTOR),
            rank=sql.SQL("t.known_time DESC, t.change_time DESC"),
            # another batch with the same known_time may already hold this version
            taken=sql.SQL("EXISTS (SELECT 1 FROM overlapping o WHERE o.series_id = i.series_id "
                          "AND o.valid_time = i.valid_time AND o.known_time = b.known_time)"),
        )
        insert = sql.SQL(INSERT).format(
            table=sql.Identifier("overlapping"), batch_col=sql.SQL(", batch_id"),
            batch_val=sql.SQL(", r.batch_id"), row_id=sql.SQL("overlapping_id"),
            batch_ret=sql.SQL(", batch_id"),
        )
    else:
        lookup = sql.SQL(LOOKUP).format(
            row_id=sql.SQL("t.flat_id"), batch=sql.SQL("NULL::bigint"),
            table=sql.Identifier("flat"), selector=sql.SQL(""),
            rank=sql.SQL("t.change_time DESC"),
            taken=sql.SQL("false"),
        )
        insert = sql.SQL(INSERT).format(
            table=sql.Identifier("flat"), batch_col=sql.SQL(""), batch_val=sql.SQL(""),
            row_id=sql.SQL("flat_id"), batch_ret=sql.SQL(""),
        )
    return lookup, insert


STATEMENTS = {kind: _statements(kind) for kind in (True, False)}


def _rounds(items: Sequence[Correction]) -> list[list[int]]:
    """Split item indexes so that no point repeats within a round (repeats apply in order)."""
    seen: dict[tuple[int, datetime], int] = {}
    rounds: list[list[int]] = []
    for idx, item in enumerate(items):
        key = (item.series_id, item.valid_time)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(idx)
    return rounds


def _new_row(item: Correction, cur: dict[str, Any]) -> dict[str, Any]:
    """The row to append for one item, given the current row (or a batch to create in)."""
    if cur["row_id"] is None:
        if not item.overlapping:
            raise PointNotFound(
                f"No value exists for series_id={item.series_id} at valid_time="
                f"{item.valid_time.isoformat()}; insert it with POST /values."
            )
        if item.batch_id is not None and not cur["batch_exists"]:
            raise BatchNotFound(f"batch_id={item.batch_id} does not exist for series_id={item.series_id}.")
        if item.batch_id is None or "value" not in item.fields:
            raise PointNotFound(
                f"No version exists for series_id={item.series_id} at valid_time="
                f"{item.valid_time.isoformat()}"
                + (f" with known_time={item.known_time.isoformat()}" if item.known_time else "")
                + ("; provide 'value' to create it in this batch." if item.batch_id else
                   "; insert it with POST /values, or give an existing batch_id and a value.")
            )
        if cur["version_taken"]:
            raise VersionConflict(
                f"A version with known_time {cur['batch_known_time'].isoformat()} already exists for "
                f"series_id={item.series_id} at valid_time={item.valid_time.isoformat()} (in another "
                "batch); correct that version instead."
            )
        base: dict[str, Any] = {"batch_id": item.batch_id, "known_time": cur["batch_known_time"],
                                "valid_time_end": None, "prev_change_time": None,
                                "value": None, "annotation": None, "tags": None, "changed_by": None}
    else:
        base = {"batch_id": cur["batch_id"], "known_time": cur["known_time"],
                "valid_time_end": cur["valid_time_end"], "prev_change_time": cur["change_time"],
                **{k: cur[k] for k in TRI_STATE}}
    base.update(item.fields)
    base["series_id"] = item.series_id
    base["valid_time"] = item.valid_time
    return base


def apply_corrections(conn: psycopg.Connection, items: Sequence[Correction]) -> list[dict[str, Any]]:
    """Apply every item in order; returns the stored rows, one per item, in request order."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    cur = conn.cursor(row_factory=dict_row)
    # the same lock as inserts that name a known_time: no version can appear concurrently
    for series_id in sorted({i.series_id for i in items if i.overlapping and i.batch_id is not None}):
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", (7345002, str(series_id)))
    for round_ in _rounds(items):
        for overlapping in (True, False):
            idxs = [i for i in round_ if items[i].overlapping is overlapping]
            if not idxs:
                continue
            lookup, insert = STATEMENTS[overlapping]
            keys = [{"idx": i, "series_id": items[i].series_id, "valid_time": items[i].valid_time,
                     "batch_id": items[i].batch_id, "known_time": items[i].known_time} for i in idxs]
            found = cur.execute(lookup, {"items": _jsonb(keys)}).fetchall()
            rows = [_new_row(items[f["idx"]], f) for f in found]
            stored = cur.execute(insert, {"rows": _jsonb(rows)}).fetchall()
            by_key = {(s["series_id"], s["valid_time"]): s for s in stored}
            for i in idxs:
                results[i] = by_key[(items[i].series_id, items[i].valid_time)]
    return [r for r in results if r is not None]
