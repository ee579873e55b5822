"""Series catalogue queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from timedb.db import tenant
from timedb.errors import (
    AmbiguousSeries,
    Forbidden,
    ImmutableField,
    InvalidInput,
    PayloadTooLarge,
    SeriesConflict,
    SeriesNotFound,
    Unprocessable,
    items_detail,
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
        """A WHERE clause with only the given filters (so plans use the right index), and the
        request's label scope: series outside it match no filter."""
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
        scope, scope_params = tenant.condition()
        params.update(scope_params)
        where = sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")
        return (sql.Composed([where, scope]) if scope_params else where), params

    def describe(self) -> str:
        return (
            ", ".join(
                f"{k}={v}"
                for k, v in (
                    ("series_id", self.series_id),
                    ("name", self.name),
                    ("unit", self.unit),
                    ("labels", self.labels),
                )
                if v is not None and v != {}
            )
            or "no filters"
        )


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
    """Create a series or get the one with this (name, labels); atomic under concurrency.
    Forbidden when the labels lie outside the request's scope (so a series found is inside it)."""
    if not tenant.contains(labels):
        raise Forbidden(f"This token may only create series whose labels contain {tenant.describe()}.")
    row = conn.execute(
        """
        INSERT INTO series_table (name, unit, labels, description, overlapping, retention)
        VALUES (%(name)s, %(unit)s, %(labels)s, %(description)s, %(overlapping)s, %(retention)s)
        ON CONFLICT ON CONSTRAINT series_identity DO NOTHING
        RETURNING series_id
        """,
        {
            "name": name,
            "unit": unit,
            "labels": Jsonb(labels),
            "description": description,
            "overlapping": overlapping,
            "retention": retention,
        },
    ).fetchone()
    if row is not None:
        return row[0], True
    existing = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT series_id, unit, overlapping, retention FROM series_table "
            "WHERE name = %(name)s AND labels = %(labels)s",
            {"name": name, "labels": Jsonb(labels)},
        )
        .fetchone()
    )
    assert existing is not None  # ON CONFLICT waited for the other insert to commit
    wanted = {"unit": unit, "overlapping": overlapping, "retention": retention}
    differ = [k for k, v in wanted.items() if existing[k] != v]
    if differ:
        have = ", ".join(f"{k}={existing[k]!r}" for k in differ)
        raise SeriesConflict(
            f"Series {name!r} with labels {labels} already exists (series_id={existing['series_id']}) with {have}.",
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
        "SELECT DISTINCT labels ->> %(key)s AS v FROM series_table WHERE {} AND labels ? %(key)s ORDER BY v"
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
            query="labels",
        )
    return matches[0]


def get_by_ids(conn: psycopg.Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Series rows by id (missing ids, and those outside the request's scope, are simply absent)."""
    scope, params = tenant.condition()
    rows = conn.cursor(row_factory=dict_row).execute(
        sql.SQL("SELECT {} FROM series_table WHERE series_id = ANY(%(ids)s){}").format(COLUMNS, scope),
        {"ids": ids, **params},
    )
    return {r["series_id"]: r for r in rows}


def get_series(conn: psycopg.Connection, series_id: int) -> dict[str, Any]:
    """One series by id: 404 when there is none."""
    row = get_by_ids(conn, [series_id]).get(series_id)
    if row is None:
        raise SeriesNotFound(f"No series has series_id={series_id}.")
    return row


@contextmanager
def identity_fits() -> Iterator[None]:
    """A 422, not a 503, when a (name, labels) pair is too large for the series_identity index."""
    try:
        yield
    except pg.ProgramLimitExceeded as exc:
        raise Unprocessable(
            "The name and labels of a series are too long together: the database indexes them in "
            "at most about 2,700 bytes (after compression). Use a shorter name or fewer, shorter labels."
        ) from exc


IMMUTABLE = ("series_id", "name", "unit", "overlapping", "retention")


def merge_patch(series: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The series with a JSON merge patch (RFC 7396) applied to its description and labels;
    ImmutableField when the patch gives another value to a field that cannot change."""
    differ = []
    for field in IMMUTABLE:
        if field in patch:
            value = patch[field].strip() if field in ("name", "unit") else patch[field]
            if value != series[field]:
                differ.append(field)
    if differ:
        given = ", ".join(f"{k}={patch[k]!r}" for k in differ)
        stored = ", ".join(f"{k}={series[k]!r}" for k in differ)
        raise ImmutableField(
            f"{', '.join(differ)} cannot change: series {series['series_id']} has {stored}, the patch gives {given}."
        )
    merged = dict(series)
    if "description" in patch:
        merged["description"] = (patch["description"] or "").strip() or None
    if "labels" in patch:
        labels = {} if patch["labels"] is None else dict(series["labels"])
        for key, value in (patch["labels"] or {}).items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        merged["labels"] = labels
    return merged


def update_series(conn: psycopg.Connection, series_id: int, patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a merge patch to one series (locked while it changes); the series afterwards.
    SeriesConflict when its new (name, labels) belong to another series; Forbidden when they
    would leave the request's scope."""
    scope, params = tenant.condition()
    series = (
        conn.cursor(row_factory=dict_row)
        .execute(
            sql.SQL("SELECT {} FROM series_table WHERE series_id = %(series_id)s{} FOR UPDATE").format(COLUMNS, scope),
            {"series_id": series_id, **params},
        )
        .fetchone()
    )
    if series is None:
        raise SeriesNotFound(f"No series has series_id={series_id}.")
    merged = merge_patch(series, patch)
    if merged == series:
        return series
    if not tenant.contains(merged["labels"]):
        raise Forbidden(
            f"The patch would move series {series_id} out of this token's scope: its labels must "
            f"keep containing {tenant.describe()}."
        )
    try:
        with conn.transaction(), identity_fits():  # a savepoint: after a clash the other series can be read
            conn.execute(
                "UPDATE series_table SET labels = %(labels)s, description = %(description)s "
                "WHERE series_id = %(series_id)s",
                {"labels": Jsonb(merged["labels"]), "description": merged["description"], "series_id": series_id},
            )
    except pg.UniqueViolation as exc:
        if exc.diag.constraint_name != "series_identity":
            raise
        row = conn.execute(
            "SELECT series_id FROM series_table WHERE name = %(name)s AND labels = %(labels)s",
            {"name": merged["name"], "labels": Jsonb(merged["labels"])},
        ).fetchone()
        other = f" (series_id={row[0]})" if row else ""
        raise SeriesConflict(
            f"Another series{other} already has name {merged['name']!r} with labels {merged['labels']}.",
            **({"series_id": row[0]} if row else {}),
        ) from None
    return merged


def _label(series: dict[str, Any]) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(series["labels"].items()))
    return f"{series['name']} (series_id={series['series_id']}{', ' + labels if labels else ''})"


# Each item's matches (up to 2: enough to tell 'none', 'one' and 'several'), in one statement;
# {scope}: the request's label scope (series outside it match nothing), or nothing.
RESOLVE_TEMPLATE = sql.SQL("""
SELECT i.idx, m.*
FROM jsonb_to_recordset(%(items)s) AS i(idx int, series_id bigint, name text, labels jsonb)
LEFT JOIN LATERAL (
    (SELECT {columns} FROM series_table s WHERE s.series_id = i.series_id{scope} LIMIT 2)
    UNION ALL
    (SELECT {columns} FROM series_table s
     WHERE i.series_id IS NULL AND s.name = i.name AND s.labels @> coalesce(i.labels, '{{}}'::jsonb){scope}
     ORDER BY s.series_id LIMIT 2)
) m ON true
ORDER BY i.idx, m.series_id
""")
_S_COLUMNS = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in COLUMN_NAMES)
RESOLVE_MANY = RESOLVE_TEMPLATE.format(columns=_S_COLUMNS, scope=sql.SQL(""))  # unscoped


def resolve_statement(items: Jsonb) -> tuple[sql.Composed, dict[str, Any]]:
    """RESOLVE_MANY for these items (each {idx, series_id, name, labels}), within the request's scope."""
    scope, params = tenant.condition("s.labels")
    query = RESOLVE_TEMPLATE.format(columns=_S_COLUMNS, scope=scope) if params else RESOLVE_MANY
    return query, {"items": items, **params}


def resolve_many(conn: psycopg.Connection, items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The series of each item ({series_id} or {name, labels}), in order: 404 naming an item
    that matches none, 400 naming one that matches several or repeats an earlier one."""
    if len(items) > limit:
        raise PayloadTooLarge(f"A request may read at most {limit} series; this one lists {len(items)}.")
    payload = [
        {"idx": i, "series_id": it.get("series_id"), "name": it.get("name"), "labels": it.get("labels")}
        for i, it in enumerate(items)
    ]
    rows = conn.cursor(row_factory=dict_row).execute(*resolve_statement(Jsonb(payload, dumps=_dumps))).fetchall()
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
            raise AmbiguousSeries(
                f"series[{i}]: {what} matches several series (e.g. {_label(match[0])} and "
                f"{_label(match[1])}); give series_id or more labels."
            )
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
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            sql.SQL("SELECT {} FROM series_table WHERE {} ORDER BY series_id LIMIT %(limit)s").format(COLUMNS, where),
            params,
        )
        .fetchall()
    )
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


# ------------------------------------------------------------------ many series at once


@dataclass(frozen=True)
class NewSeries:
    """One series to get or create, already trimmed and checked."""

    name: str
    unit: str
    labels: dict[str, str]
    description: str | None
    overlapping: bool
    retention: str

    def identity(self) -> tuple[str, frozenset[tuple[str, str]]]:
        """(name, labels) as a key: label order does not matter, as in jsonb equality."""
        return self.name, frozenset(self.labels.items())


ATTRIBUTES = ("unit", "overlapping", "retention")  # must agree for a get to succeed

# the stored series of each (idx, name, labels), through the series_identity index
STORED = """
SELECT i.idx, s.series_id, s.unit, s.overlapping, s.retention
FROM jsonb_to_recordset(%(items)s) AS i(idx int, name text, labels jsonb)
JOIN series_table s ON s.name = i.name AND s.labels = i.labels
"""

# ids are drawn first (in input order), then rows are inserted in (name, labels) order: two
# requests with overlapping items wait for each other in the same order and never deadlock
INSERT_MANY = """
INSERT INTO series_table (series_id, name, unit, labels, description, overlapping, retention)
SELECT i.series_id, i.name, i.unit, i.labels, i.description, i.overlapping, i.retention
FROM jsonb_to_recordset(%(items)s) AS i(series_id bigint, name text, unit text, labels jsonb,
                                         description text, overlapping boolean, retention text)
ORDER BY i.name, i.labels
ON CONFLICT ON CONSTRAINT series_identity DO NOTHING
RETURNING series_id
"""

NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('series_table', 'series_id')) FROM generate_series(1, %(n)s)"


def create_many(conn: psycopg.Connection, items: list[NewSeries]) -> list[tuple[int, bool]]:
    """Get or create every series, as create_series would one by one in this order:
    (series_id, created) per item. All or nothing: a SeriesConflict lists every item whose
    attributes differ from the stored series', or from an earlier item's with its identity.
    Forbidden listing every item whose labels lie outside the request's scope."""
    _refuse_outside(items)
    first: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for i, item in enumerate(items):
        first.setdefault(item.identity(), i)
    firsts = [first[item.identity()] for item in items]  # each item's first occurrence
    stored = _stored(conn, items, list(first.values()))
    _raise_conflicts(items, firsts, stored)
    new = [i for i in first.values() if i not in stored]
    ids = sorted(r[0] for r in conn.execute(NEXT_IDS, {"n": len(new)})) if new else []
    new_ids = dict(zip(new, ids, strict=True))
    payload = [
        {
            "series_id": new_ids[i],
            "name": items[i].name,
            "unit": items[i].unit,
            "labels": items[i].labels,
            "description": items[i].description,
            "overlapping": items[i].overlapping,
            "retention": items[i].retention,
        }
        for i in new
    ]
    with identity_fits():
        inserted = {r[0] for r in conn.execute(INSERT_MANY, {"items": Jsonb(payload, dumps=_dumps)})} if new else set()
    raced = [i for i in new if new_ids[i] not in inserted]  # created meanwhile by another request
    if raced:
        stored.update(_stored(conn, items, raced))
        _raise_conflicts(items, firsts, stored)
    results = []
    for i, f in enumerate(firsts):
        if f in stored:
            results.append((int(stored[f]["series_id"]), False))
        else:
            results.append((new_ids[f], i == f))
    return results


def _refuse_outside(items: list[NewSeries]) -> None:
    """Forbidden listing the items whose labels do not contain the request's scope."""
    errors: list[dict[str, Any]] = [
        {
            "in": "body",
            "pointer": f"/series/{i}/labels",
            "index": i,
            "message": f"series[{i}]: labels {item.labels} do not contain {tenant.describe()}.",
        }
        for i, item in enumerate(items)
        if not tenant.contains(item.labels)
    ]
    if errors:
        what = f"Items outside this token's scope (labels must contain {tenant.describe()})"
        raise Forbidden(items_detail(errors, len(items), what), errors=errors)


def _stored(conn: psycopg.Connection, items: list[NewSeries], indexes: list[int]) -> dict[int, dict[str, Any]]:
    """The stored series of items[i] for each i in indexes that has one, by i."""
    payload = [{"idx": i, "name": items[i].name, "labels": items[i].labels} for i in indexes]
    rows = conn.cursor(row_factory=dict_row).execute(STORED, {"items": Jsonb(payload, dumps=_dumps)})
    return {row.pop("idx"): row for row in rows}


def _raise_conflicts(items: list[NewSeries], firsts: list[int], stored: dict[int, dict[str, Any]]) -> None:
    """SeriesConflict listing every item that create_series would refuse, one by one in order."""
    errors: list[dict[str, Any]] = []
    for i, (item, f) in enumerate(zip(items, firsts, strict=True)):
        row = stored.get(f)
        if row is None and i == f:
            continue
        reference = row if row is not None else {k: getattr(items[f], k) for k in ATTRIBUTES}
        differ = [k for k in ATTRIBUTES if getattr(item, k) != reference[k]]
        if not differ:
            continue
        have = ", ".join(f"{k}={getattr(item, k)!r}" for k in differ)
        want = ", ".join(f"{k}={reference[k]!r}" for k in differ)
        what = f"{item.name!r} with labels {item.labels}"
        if row is not None:
            errors.append(
                {
                    "in": "body",
                    "pointer": f"/series/{i}",
                    "index": i,
                    "series_id": row["series_id"],
                    "message": (
                        f"series[{i}]: {what} already exists (series_id={row['series_id']}) with {want}, not {have}."
                    ),
                }
            )
        else:
            errors.append(
                {
                    "in": "body",
                    "pointer": f"/series/{i}",
                    "index": i,
                    "message": (f"series[{i}]: {what} is also series[{f}] of this request, with {want}, not {have}."),
                }
            )
    if errors:
        what = "Items that conflict with a stored series or an earlier item"
        raise SeriesConflict(items_detail(errors, len(items), what), errors=errors)
