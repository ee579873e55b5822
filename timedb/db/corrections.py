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

from timedb.db import extent
from timedb.db.locks import lock_series
from timedb.errors import BatchNotFound, PointNotFound, Unprocessable, VersionConflict

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


# One statement per round: find each item's current row (or the batch to create it in),
# append the corrected row, and report per item what happened, so a refused item can be
# explained in Python and the whole transaction rolled back.
CORRECT = """
WITH i AS (
    SELECT * FROM jsonb_to_recordset(%(items)s) AS i(
        idx int, series_id bigint, valid_time timestamptz, batch_id bigint, known_time timestamptz,
        has_value bool, value float8, has_annotation bool, annotation text,
        has_tags bool, tags jsonb, has_changed_by bool, changed_by text)
), found AS (
    SELECT i.*, cur.row_id, cur.batch_id AS cur_batch, cur.known_time AS cur_known,
           cur.change_time AS cur_change, cur.valid_time_end AS cur_end, cur.value AS cur_value,
           cur.annotation AS cur_annotation, cur.tags AS cur_tags, cur.changed_by AS cur_changed_by,
           b.batch_id IS NOT NULL AS batch_exists, b.known_time AS batch_known_time,
           {taken} AS version_taken
    FROM i
    -- LATERAL + LIMIT keeps this a primary-key probe per item (a plain join is planned as a
    -- hash join over all of batches_table)
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
), ins AS (
    INSERT INTO {table} (series_id, valid_time, valid_time_end, known_time, change_time,
                         value, annotation, tags, changed_by{batch_col})
    SELECT f.series_id, f.valid_time, f.cur_end, coalesce(f.cur_known, f.batch_known_time),
           -- strictly after the row it corrects, even if the clock stepped back
           greatest(clock_timestamp(), f.cur_change + interval '1 microsecond'),
           CASE WHEN f.has_value THEN f.value ELSE f.cur_value END,
           CASE WHEN f.has_annotation THEN f.annotation ELSE f.cur_annotation END,
           CASE WHEN NOT f.has_tags THEN f.cur_tags
                WHEN f.tags IS NULL THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(f.tags)) END,
           CASE WHEN f.has_changed_by THEN f.changed_by ELSE f.cur_changed_by END{batch_val}
    FROM found f
    WHERE f.row_id IS NOT NULL {create}
    RETURNING {row_id_col} AS row_id, series_id, valid_time, change_time{batch_ret}
)
SELECT f.idx, f.batch_exists, f.version_taken, f.batch_known_time, f.cur_known,
       ins.row_id AS stored_id, ins.change_time{ins_batch}
FROM found f
LEFT JOIN ins ON ins.series_id = f.series_id AND ins.valid_time = f.valid_time
ORDER BY f.idx
"""

OVERLAPPING_SELECTOR = """
          AND (i.batch_id IS NULL OR t.batch_id = i.batch_id)
          AND (i.batch_id IS NOT NULL OR i.known_time IS NULL OR t.known_time = i.known_time)"""


# the fragments that differ between the two kinds of series
KIND_PARTS = {
    True: {
        "batch": "t.batch_id",
        "selector": OVERLAPPING_SELECTOR,
        "rank": "t.known_time DESC, t.change_time DESC",
        # another batch with the same known_time may already hold this version
        # (only asked when the point must be created in a batch: CASE evaluates lazily)
        "taken": "CASE WHEN cur.row_id IS NULL AND b.batch_id IS NOT NULL THEN EXISTS ("
        "SELECT 1 FROM overlapping o WHERE o.series_id = i.series_id "
        "AND o.valid_time = i.valid_time AND o.known_time = b.known_time) ELSE false END",
        # a missing point is created in an existing batch when a value is given
        "create": "OR (f.batch_exists AND f.has_value AND NOT f.version_taken)",
    },
    False: {
        "batch": "NULL::bigint",
        # a known_time names the current value: it must be the one it was known at
        "create": "AND (f.known_time IS NULL OR f.known_time = f.cur_known)",
        "rank": "t.change_time DESC",
        "selector": "",
        "taken": "false",
    },
}
# the batch columns of the stored and reported rows: overlapping rows belong to a batch, flat
# rows to none (the fragments are left out)
BATCH_COLUMNS = {
    "batch_col": ", batch_id",
    "batch_val": ", coalesce(f.cur_batch, f.batch_id)",
    "batch_ret": ", batch_id",
    "ins_batch": ", ins.batch_id",
}


def _statement(overlapping: bool) -> sql.Composed:
    table = "overlapping" if overlapping else "flat"
    parts = {
        **KIND_PARTS[overlapping],
        **{name: text if overlapping else "" for name, text in BATCH_COLUMNS.items()},
        "row_id": f"t.{table}_id",
        "row_id_col": f"{table}_id",
    }
    return sql.SQL(CORRECT).format(table=sql.Identifier(table), **{k: sql.SQL(v) for k, v in parts.items()})


STATEMENTS = {kind: _statement(kind) for kind in (True, False)}


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


def _refusal(item: Correction, row: dict[str, Any]) -> Exception:
    """Why an item stored nothing: no current row, no such batch, or a version in another batch."""
    if not item.overlapping:
        if item.known_time is not None and row["cur_known"] is not None:
            return PointNotFound(
                f"The value of series_id={item.series_id} at valid_time={item.valid_time.isoformat()} "
                f"was known at {row['cur_known'].isoformat()}, not at known_time={item.known_time.isoformat()}; "
                "leave known_time out to correct the current value."
            )
        return PointNotFound(
            f"No value exists for series_id={item.series_id} at valid_time="
            f"{item.valid_time.isoformat()}; insert it with POST /values."
        )
    if item.batch_id is not None and not row["batch_exists"]:
        return BatchNotFound(f"batch_id={item.batch_id} does not exist for series_id={item.series_id}.")
    if item.batch_id is None or "value" not in item.fields:
        return PointNotFound(
            f"No version exists for series_id={item.series_id} at valid_time="
            f"{item.valid_time.isoformat()}"
            + (f" with known_time={item.known_time.isoformat()}" if item.known_time else "")
            + (
                "; provide 'value' to create it in this batch."
                if item.batch_id
                else "; insert it with POST /values, or give an existing batch_id and a value."
            )
        )
    return VersionConflict(
        f"A version with known_time {row['batch_known_time'].isoformat()} already exists for "
        f"series_id={item.series_id} at valid_time={item.valid_time.isoformat()} (in another "
        "batch); correct that version instead."
    )


def _params(idx: int, item: Correction) -> dict[str, Any]:
    fields = item.fields
    return {
        "idx": idx,
        "series_id": item.series_id,
        "valid_time": item.valid_time,
        "batch_id": item.batch_id,
        "known_time": item.known_time,
        **{f"has_{k}": k in fields for k in TRI_STATE},
        **{k: fields.get(k) for k in TRI_STATE},
    }


def apply_corrections(conn: psycopg.Connection, items: Sequence[Correction]) -> list[dict[str, Any]]:
    """Apply every item in order; returns the stored rows, one per item, in request order."""
    for idx, item in enumerate(items):
        if not item.overlapping and item.batch_id is not None:
            raise Unprocessable(
                f"updates[{idx}].batch_id: series_id={item.series_id} is a flat series; its values "
                "have no batches (leave batch_id out)."
            )
    results: list[dict[str, Any] | None] = [None] * len(items)
    cur = conn.cursor(row_factory=dict_row)
    # the write lock of every series touched: each round reads the current rows after every
    # earlier writer committed (no lost update), and no version can appear concurrently
    lock_series(conn, (i.series_id for i in items))
    for round_ in _rounds(items):
        for overlapping in (True, False):
            idxs = [i for i in round_ if items[i].overlapping is overlapping]
            if not idxs:
                continue
            params = [_params(i, items[i]) for i in idxs]
            for row in cur.execute(STATEMENTS[overlapping], {"items": _jsonb(params)}).fetchall():
                item = items[row["idx"]]
                if row["stored_id"] is None:
                    raise _refusal(item, row)
                results[row["idx"]] = row
    _widen_created(conn, items, results)
    return [r for r in results if r is not None]


def _widen_created(conn: psycopg.Connection, items: Sequence[Correction], rows: list[dict[str, Any] | None]) -> None:
    """Widen the extents of series in which a correction created a point (one without a
    current row: a value given for a batch that had none at that valid_time)."""
    lows: dict[int, datetime] = {}
    highs: dict[int, datetime] = {}  # (keys in the order of lows: both are set together)
    for item, row in zip(items, rows, strict=True):
        if row is not None and row["cur_known"] is None:
            sid, vt = item.series_id, item.valid_time
            lows[sid] = min(lows.get(sid, vt), vt)
            highs[sid] = max(highs.get(sid, vt), vt)
    extent.widen(conn, list(lows), list(lows.values()), list(highs.values()))
