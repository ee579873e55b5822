"""Series catalogue queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.errors import (
    AmbiguousSeries,
    InvalidInput,
    PayloadTooLarge,
    SeriesConflict,
    SeriesNotFound,
    Unprocessable,
)

COLUMN_NAMES = ("series_id", "name", "description", "unit", "labels", "overlapping", "retention")
COLUMNS = sql.SQL(", ").join(map(sql.Identifier, COLUMN_NAMES))
ORDER = sql.SQL("ORDER BY name, unit, series_id")


@dataclass(frozen=True)
class SeriesFilter:
    """Filters shared by every series lookup; None means 'any'."""

    name: str | None = None
    unit: str | None = None
    series_id: int | None = None
    labels: dict[str, Any] | None = None

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        """A WHERE clause with only the given filters (so plans use the right index)."""
        parts: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if self.name is not None:
            parts.append(sql.SQL("name = %(name)s"))
            params["name"] = self.name
        if self.unit is not None:
            parts.append(sql.SQL("unit = %(unit)s"))
            params["unit"] = self.unit
        if self.series_id is not None:
            parts.append(sql.SQL("series_id = %(series_id)s"))
            params["series_id"] = self.series_id
        if self.labels:
            parts.append(sql.SQL("labels @> %(labels)s"))
            params["labels"] = Jsonb(self.labels)
        if not parts:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(parts), params

    def describe(self) -> str:
        return ", ".join(
            f"{k}={v}" for k, v in
            (("series_id", self.series_id), ("name", self.name), ("unit", self.unit), ("labels", self.labels))
            if v is not None and v != {}
        ) or "no filters"


def create_series(
    conn: psycopg.Connection,
    *,
    name: str,
    unit: str,
    labels: dict[str, str],
    description: str | None,
    overlapping: bool,
    retention: str,
) -> tuple[int, bool]:
    """Create a series or get the one with this (name, labels); atomic under concurrency."""
    row = conn.execute(
        """
        INSERT INTO series_table (name, unit, labels, description, overlapping, retention)
        VALUES (%(name)s, %(unit)s, %(labels)s, %(description)s, %(overlapping)s, %(retention)s)
        ON CONFLICT ON CONSTRAINT series_identity DO NOTHING
        RETURNING series_id
        """,
        {"name": name, "unit": unit, "labels": Jsonb(labels), "description": description,
         "overlapping": overlapping, "retention": retention},
    ).fetchone()
    if row is not None:
        return row[0], True
    existing = conn.cursor(row_factory=dict_row).execute(
        "SELECT series_id, unit, overlapping, retention FROM series_table "
        "WHERE name = %(name)s AND labels = %(labels)s",
        {"name": name, "labels": Jsonb(labels)},
    ).fetchone()
    assert existing is not None  # ON CONFLICT waited for the other insert to commit
    wanted = {"unit": unit, "overlapping": overlapping, "retention": retention}
    differ = [k for k, v in wanted.items() if existing[k] != v]
    if differ:
        have = ", ".join(f"{k}={existing[k]!r}" for k in differ)
        raise SeriesConflict(
            f"Series {name!r} with labels {labels} already exists (series_id="
            f"{existing['series_id']}) with {have}.",
            series_id=existing["series_id"],
        )
    return existing["series_id"], False


def list_series(
    conn: psycopg.Connection,
    flt: SeriesFilter,
    *,
    limit: int | None = None,
    after: tuple[str, str, int] | None = None,
) -> list[dict[str, Any]]:
    """Matching series ordered by name, unit, series_id; keyset-paged after `after`."""
    where, params = flt.where()
    if after is not None:
        where = sql.SQL("{} AND (name, unit, series_id) > (%(a_name)s, %(a_unit)s, %(a_id)s)").format(where)
        params.update(a_name=after[0], a_unit=after[1], a_id=after[2])
    query = sql.SQL("SELECT {} FROM series_table WHERE {} {}").format(COLUMNS, where, ORDER)
    if limit is not None:
        query = sql.SQL("{} LIMIT %(limit)s").format(query)
        params["limit"] = limit
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def count_series(conn: psycopg.Connection, flt: SeriesFilter) -> int:
    """Number of series matching the filters."""
    where, params = flt.where()
    row = conn.execute(sql.SQL("SELECT count(*) FROM series_table WHERE {}").format(where), params).fetchone()
    return int(row[0]) if row else 0


def label_values(conn: psycopg.Connection, key: str, flt: SeriesFilter) -> list[str]:
    """Sorted distinct values of one label key across matching series."""
    where, params = flt.where()
    params["key"] = key
    query = sql.SQL(
        "SELECT DISTINCT labels ->> %(key)s AS v FROM series_table "
        "WHERE {} AND labels ? %(key)s ORDER BY v"
    ).format(where)
    return [r[0] for r in conn.execute(query, params)]


def resolve_one(conn: psycopg.Connection, flt: SeriesFilter) -> dict[str, Any]:
    """The single series matching the filters: 404 when none, 400 listing matches when several."""
    matches = list_series(conn, flt, limit=6)
    if not matches:
        raise SeriesNotFound(f"No series found matching filters: {flt.describe()}.")
    if len(matches) > 1:
        total = count_series(conn, flt)
        shown = ", ".join(_label(m) for m in matches[:5])
        more = f", ... ({total - 5} more)" if total > 5 else ""
        raise AmbiguousSeries(
            f"The filters match {total} series; use more specific filters to match "
            f"exactly one. Matched series: [{shown}{more}]",
            matches=matches[:5],
        )
    return matches[0]


def get_by_ids(conn: psycopg.Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Series rows by id (missing ids are simply absent)."""
    rows = conn.cursor(row_factory=dict_row).execute(
        sql.SQL("SELECT {} FROM series_table WHERE series_id = ANY(%s)").format(COLUMNS), (ids,)
    )
    return {r["series_id"]: r for r in rows}


def _label(series: dict[str, Any]) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(series["labels"].items()))
    return f"{series['name']} (series_id={series['series_id']}{', ' + labels if labels else ''})"


# Each item's matches (up to 2: enough to tell 'none', 'one' and 'several'), in one statement.
RESOLVE_MANY = sql.SQL("""
SELECT i.idx, m.*
FROM jsonb_to_recordset(%(items)s) AS i(idx int, series_id bigint, name text, labels jsonb)
LEFT JOIN LATERAL (
    (SELECT {columns} FROM series_table s WHERE s.series_id = i.series_id LIMIT 2)
    UNION ALL
    (SELECT {columns} FROM series_table s
     WHERE i.series_id IS NULL AND s.name = i.name AND s.labels @> coalesce(i.labels, '{{}}'::jsonb)
     ORDER BY s.series_id LIMIT 2)
) m ON true
ORDER BY i.idx, m.series_id
""").format(columns=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in COLUMN_NAMES))


def resolve_many(conn: psycopg.Connection, items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The series of each item ({series_id} or {name, labels}), in order: 404 naming an item
    that matches none, 400 naming one that matches several or repeats an earlier one."""
    if len(items) > limit:
        raise PayloadTooLarge(f"A request may read at most {limit} series; this one lists {len(items)}.")
    payload = [{"idx": i, "series_id": it.get("series_id"), "name": it.get("name"), "labels": it.get("labels")}
               for i, it in enumerate(items)]
    rows = conn.cursor(row_factory=dict_row).execute(
        RESOLVE_MANY, {"items": Jsonb(payload, dumps=_dumps)}).fetchall()
    matches: list[list[dict[str, Any]]] = [[] for _ in items]
    for row in rows:
        if row["series_id"] is not None:
            matches[row.pop("idx")].append(row)
    found: list[dict[str, Any]] = []
    first: dict[int, int] = {}
    for i, match in enumerate(matches):
        what = _describe(items[i])
        if not match:
            raise SeriesNotFound(f"series[{i}]: no series matches {what}.")
        if len(match) > 1:
            raise AmbiguousSeries(f"series[{i}]: {what} matches several series (e.g. {_label(match[0])} and "
                                  f"{_label(match[1])}); give series_id or more labels.")
        sid = match[0]["series_id"]
        if sid in first:
            raise InvalidInput(f"series[{i}] is the same series as series[{first[sid]}] ({_label(match[0])}).")
        first[sid] = i
        found.append(match[0])
    return found


def list_matching(conn: psycopg.Connection, flt: SeriesFilter, limit: int) -> list[dict[str, Any]]:
    """Every series matching flt, by series_id; 422 when more than `limit` do."""
    where, params = flt.where()
    params["limit"] = limit + 1
    rows = conn.cursor(row_factory=dict_row).execute(
        sql.SQL("SELECT {} FROM series_table WHERE {} ORDER BY series_id LIMIT %(limit)s").format(COLUMNS, where),
        params).fetchall()
    if len(rows) > limit:
        raise Unprocessable(f"The filter matches more than {limit} series; narrow it (name, unit, labels).")
    return rows


def _describe(item: dict[str, Any]) -> str:
    if item.get("series_id") is not None:
        return f"series_id={item['series_id']}"
    labels = item.get("labels")
    return f"name={item.get('name')!r}" + (f" with labels {labels}" if labels else "")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
