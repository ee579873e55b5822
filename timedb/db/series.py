"""Series catalogue queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.errors import AmbiguousSeries, SeriesConflict, SeriesNotFound

COLUMNS = sql.SQL("series_id, name, description, unit, labels, overlapping, retention")
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
