"""The SQL of a values read: filters on the three time axes, version selection, resampling.

One statement per read, built with psycopg.sql from the parameters (never from user text):
the rows of one series (`series` = a parameter), or of many (`series` = the lateral `s.id`
of the multi-series wrapper), in valid_time order within each series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import Enum
from typing import Any

from psycopg import sql


class Mode(Enum):
    LATEST = "latest"
    VERSIONS = "versions"
    AUDIT = "audit"


@dataclass(frozen=True)
class Window:
    """Which stored rows a read considers; None means unbounded."""

    start_valid: datetime | None = None
    end_valid: datetime | None = None
    start_known: datetime | None = None
    end_known: datetime | None = None
    changed_before: datetime | None = None
    # the state as known at as_of: versions known by then, corrections made by then (inclusive)
    as_of: datetime | None = None
    # lead time valid_time - known_time within [min_horizon, max_horizon]
    min_horizon: timedelta | None = None
    max_horizon: timedelta | None = None
    # for each valid_time (local date D in tz): known_time <= (D - days_ahead) at issue_time in tz
    days_ahead: int | None = None
    issue_time: time | None = None
    tz: str = "UTC"

    def where(self, table: sql.Identifier) -> tuple[list[sql.Composable], dict[str, Any]]:
        """Conditions on the rows `t` of table, and their parameters."""
        parts: list[sql.Composable] = []
        params: dict[str, Any] = {}
        for name, column, op in (
            ("start_valid", "valid_time", ">="),
            ("end_valid", "valid_time", "<"),
            ("start_known", "known_time", ">="),
            ("end_known", "known_time", "<"),
            ("changed_before", "change_time", "<"),
            ("as_of", "known_time", "<="),
        ):
            value = getattr(self, name)
            if value is not None:
                parts.append(sql.SQL("t.{} {} %({})s").format(sql.Identifier(column), sql.SQL(op), sql.SQL(name)))
                params[name] = value
        if self.as_of is not None:
            # corrections made after as_of are not known yet; a version's first row counts from
            # its known_time even when it was stored later (a backfill)
            parts.append(
                sql.SQL(
                    "(t.change_time <= %(as_of)s OR NOT EXISTS (SELECT 1 FROM {} o WHERE o.series_id = t.series_id"
                    " AND o.valid_time = t.valid_time AND o.known_time = t.known_time"
                    " AND o.change_time < t.change_time))"
                ).format(table)
            )
        if self.min_horizon is not None:
            parts.append(sql.SQL("t.valid_time - t.known_time >= %(min_horizon)s"))
            params["min_horizon"] = self.min_horizon
        if self.max_horizon is not None:
            parts.append(sql.SQL("t.valid_time - t.known_time <= %(max_horizon)s"))
            params["max_horizon"] = self.max_horizon
        if self.days_ahead is not None:
            # D = the valid_time's local date; the cutoff is a local wall time turned into an
            # instant by PostgreSQL's tz database (23- and 25-hour days included)
            parts.append(
                sql.SQL(
                    "t.known_time <= ((((t.valid_time AT TIME ZONE %(tz)s)::date - %(days_ahead)s::int)"
                    " + %(issue_time)s::time) AT TIME ZONE %(tz)s)"
                )
            )
            params.update(days_ahead=self.days_ahead, issue_time=self.issue_time or time(0), tz=self.tz)
        return parts, params


AGGREGATES = {
    "mean": "avg(v.value)",
    "sum": "sum(v.value)",
    "min": "min(v.value)",
    "max": "max(v.value)",
    "count": "count(v.value)",
    # the first / last non-null value in valid_time order
    "first": "(array_agg(v.value ORDER BY v.valid_time) FILTER (WHERE v.value IS NOT NULL))[1]",
    "last": "(array_agg(v.value ORDER BY v.valid_time DESC) FILTER (WHERE v.value IS NOT NULL))[1]",
}


@dataclass(frozen=True)
class Resample:
    """Buckets of a fixed number of seconds (dividing a day), or calendar days, weeks, months."""

    unit: str  # "second", "day", "week", "month"
    seconds: int = 0
    agg: str = "mean"
    tz: str = "UTC"

    def start(self, ts: sql.Composable) -> sql.Composable:
        """The start (an instant) of the bucket holding the instant ts."""
        local = sql.SQL("({} AT TIME ZONE %(bucket_tz)s)").format(ts)
        if self.unit != "second":  # local midnight of the day, Monday, first of the month
            return sql.SQL("(date_trunc({}, {}) AT TIME ZONE %(bucket_tz)s)").format(
                sql.Literal("week" if self.unit == "week" else self.unit), local
            )
        if self.tz == "UTC":  # the fast path: whole seconds since the epoch
            return sql.SQL("to_timestamp(floor(extract(epoch FROM {})::float8 / %(bucket_s)s) * %(bucket_s)s)").format(
                ts
            )
        # fixed-length buckets from the local midnight of ts's local date (elapsed time, so a DST
        # change inside a day shifts the rest of that day's buckets, and the day's last bucket
        # ends at the next local midnight)
        midnight = sql.SQL("(date_trunc('day', {}) AT TIME ZONE %(bucket_tz)s)").format(local)
        return sql.SQL(
            "({m} + floor(extract(epoch FROM {t} - {m})::float8 / %(bucket_s)s) * %(bucket_s)s * interval '1 second')"
        ).format(m=midnight, t=ts)

    def end(self, start: sql.Composable) -> sql.Composable:
        """The end of the bucket starting at start (the next bucket's start)."""
        if self.unit != "second":
            step = {"day": "1 day", "week": "7 days", "month": "1 month"}[self.unit]
            return sql.SQL(
                "((date_trunc({}, {} AT TIME ZONE %(bucket_tz)s) + interval {}) AT TIME ZONE %(bucket_tz)s)"
            ).format(sql.Literal(self.unit), start, sql.Literal(step))
        after = sql.SQL("({} + %(bucket_s)s * interval '1 second')").format(start)
        if self.tz == "UTC":
            return after
        next_midnight = sql.SQL(
            "((date_trunc('day', {} AT TIME ZONE %(bucket_tz)s) + interval '1 day') AT TIME ZONE %(bucket_tz)s)"
        ).format(start)
        return sql.SQL("least({}, {})").format(after, next_midnight)

    def params(self) -> dict[str, Any]:
        return {"bucket_tz": self.tz, "bucket_s": self.seconds}


@dataclass(frozen=True)
class ReadSpec:
    """Everything a read asks for."""

    window: Window = field(default_factory=Window)
    mode: Mode = Mode.LATEST
    resample: Resample | None = None
    # None: timestamps out as UTC wall times (printed with +00:00); else in this zone (the
    # session's TimeZone): as ISO 8601 text with its offset, or as instants for a projection
    # of their own (COPY formats)
    out_tz: str | None = None
    instants: bool = False
    # values converted to this unit (from each series' own; the plan finds the factors)
    unit: str | None = None


# ISO 8601 with the session TimeZone's offset, like Python's isoformat: the fraction only when
# not zero, and the seconds of an offset when it has any, which TZH:TZM drops (local mean times:
# Berlin +00:53:28 before 1893; the last such offset, Monrovia's -00:44:30, ended in 1972), so
# the text names the right instant; later instants skip that check
ISO_ZONED = (
    "replace(to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'), '.000000', '')"
    " || CASE WHEN {c} >= '1973-01-01 00:00:00+00' THEN ''"
    " WHEN extract(second FROM {c}::timestamp - ({c} AT TIME ZONE 'UTC')) = 0 THEN ''"
    " ELSE ':' || to_char(abs(extract(second FROM {c}::timestamp - ({c} AT TIME ZONE 'UTC'))), 'FM00')"
    " END"
)


def _out(expr: sql.Composable, spec: ReadSpec) -> sql.Composable:
    if spec.out_tz is None:
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(expr)
    return expr if spec.instants else sql.SQL("(" + ISO_ZONED + ")").format(c=expr)


def series_query(
    overlapping: bool,
    spec: ReadSpec,
    series: sql.Composable,
    guard: sql.Composable | None = None,
    convert: tuple[sql.Composable, sql.Composable] | None = None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The read of one series (its id: the SQL `series`), ordered by valid_time (known_time
    first for versions and audit reads). Columns, by these names: latest (valid_time,
    valid_time_end, value); versions (known_time, valid_time, valid_time_end, value); audit
    (known_time, valid_time, valid_time_end, change_time, value, changed_by, annotation, tags,
    batch_id, inserted_by). Timestamps are UTC wall times, or instants when spec.out_tz is set."""
    table = sql.Identifier("overlapping" if overlapping else "flat")
    conditions, params = spec.window.where(table)
    conditions = [sql.SQL("t.series_id = {}").format(series), *conditions, *([guard] if guard else [])]
    where = sql.SQL(" AND ").join(conditions)
    # overlapping: the newest forecast wins, then its newest correction; flat: the newest write
    rank = sql.SQL("t.known_time DESC, t.change_time DESC" if overlapping else "t.change_time DESC")
    mode, resample = spec.mode, spec.resample
    # a unit conversion applies to the stored values, before any aggregation
    value = sql.SQL("(t.value * {} + {})").format(*convert) if convert is not None else sql.SQL("t.value")
    if mode is Mode.AUDIT:
        batch = sql.SQL("t.batch_id" if overlapping else "NULL::bigint")
        # the token that wrote the version (its batch); flat rows have no batch
        inserted_by, join = (
            (
                sql.SQL("b.inserted_by"),
                sql.SQL(" LEFT JOIN batches_table b ON b.series_id = t.series_id AND b.batch_id = t.batch_id"),
            )
            if overlapping
            else (sql.SQL("NULL::text"), sql.SQL(""))
        )
        query = sql.SQL(
            "SELECT {kt} AS known_time, {vt} AS valid_time, {vte} AS valid_time_end, {ct} AS change_time, "
            "{value} AS value, t.changed_by, t.annotation, t.tags, {batch} AS batch_id, {ins} AS inserted_by "
            "FROM {t} t{join} WHERE {w} ORDER BY t.known_time, t.valid_time, t.change_time"
        ).format(
            value=value,
            kt=_out(sql.SQL("t.known_time"), spec),
            vt=_out(sql.SQL("t.valid_time"), spec),
            vte=_out(sql.SQL("t.valid_time_end"), spec),
            ct=_out(sql.SQL("t.change_time"), spec),
            batch=batch,
            ins=inserted_by,
            join=join,
            t=table,
            w=where,
        )
        return query, params
    if mode is Mode.LATEST:
        selected = sql.SQL(
            "SELECT DISTINCT ON (t.valid_time) t.known_time, t.valid_time, t.valid_time_end, {value} AS value "
            "FROM {t} t WHERE {w} ORDER BY t.valid_time, {rank}"
        ).format(t=table, w=where, rank=rank, value=value)
    else:
        selected = sql.SQL(
            "SELECT DISTINCT ON (t.known_time, t.valid_time) t.known_time, t.valid_time, t.valid_time_end, "
            "{value} AS value FROM {t} t WHERE {w} ORDER BY t.known_time, t.valid_time, t.change_time DESC"
        ).format(t=table, w=where, value=value)
    known = (
        sql.SQL("{} AS known_time, ").format(_out(sql.SQL("v.known_time"), spec))
        if mode is Mode.VERSIONS
        else sql.SQL("")
    )
    if resample is None:
        query = sql.SQL("SELECT {known}{vt} AS valid_time, {vte} AS valid_time_end, v.value FROM ({sel}) v").format(
            known=known,
            vt=_out(sql.SQL("v.valid_time"), spec),
            vte=_out(sql.SQL("v.valid_time_end"), spec),
            sel=selected,
        )
        return query, params
    params.update(resample.params())
    by_known = mode is Mode.VERSIONS
    query = sql.SQL(
        "SELECT {known}{start} AS valid_time, {end} AS valid_time_end, {agg} AS value FROM ({sel}) v "
        "CROSS JOIN LATERAL (SELECT {bucket} AS b) k GROUP BY {group} ORDER BY {group}"
    ).format(
        known=known,
        start=_out(sql.SQL("k.b"), spec),
        end=_out(resample.end(sql.SQL("k.b")), spec),
        agg=sql.SQL(AGGREGATES[resample.agg]),
        sel=selected,
        bucket=resample.start(sql.SQL("v.valid_time")),
        group=sql.SQL("v.known_time, k.b" if by_known else "k.b"),
    )
    return query, params


def build_query(overlapping: bool, spec: ReadSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """The read of the one series whose id is the parameter `series_id` (with spec.unit, its
    values times %(unit_scale)s plus %(unit_offset)s)."""
    convert = (sql.SQL("%(unit_scale)s"), sql.SQL("%(unit_offset)s")) if spec.unit is not None else None
    return series_query(overlapping, spec, sql.SQL("%(series_id)s"), convert=convert)


def multi_query(spec: ReadSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """The read of many series in one statement: parameters `ids` and `overlapping` (arrays,
    in the order of the answer; with spec.unit also `scales` and `offsets`); each row starts
    with its series_id. Rows come series by series (the nested loop over the array keeps its
    order) and in each as series_query."""
    s = sql.SQL("s.id")
    convert = (sql.SQL("s.scale"), sql.SQL("s.off")) if spec.unit is not None else None
    over, params = series_query(True, spec, s, sql.SQL("s.overlapping"), convert)
    flat, _ = series_query(False, spec, s, sql.SQL("NOT s.overlapping"), convert)
    arrays = (
        "unnest(%(ids)s::bigint[], %(overlapping)s::bool[], %(scales)s::float8[], %(offsets)s::float8[]) "
        "AS s(id, overlapping, scale, off)"
        if convert is not None
        else "unnest(%(ids)s::bigint[], %(overlapping)s::bool[]) AS s(id, overlapping)"
    )
    query = sql.SQL("SELECT s.id AS series_id, x.* FROM {} CROSS JOIN LATERAL (({}) UNION ALL ({})) x").format(
        sql.SQL(arrays), over, flat
    )
    return query, params
