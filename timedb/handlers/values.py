"""POST /values, GET /values, PUT /values, POST /values/query."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connexion import request
from starlette.responses import Response

from timedb.db import bulk
from timedb.db import corrections as fix
from timedb.db import values_write as write
from timedb.db.locks import lock_series
from timedb.db.pool import Connection, Pool
from timedb.db.read_query import Mode, ReadSpec
from timedb.db.series import SeriesFilter, get_by_ids, resolve_one
from timedb.db.values_copy import CopyStream, Printed
from timedb.db.values_read import Plan, RowStream, many_series, one_series
from timedb.errors import InvalidInput, SeriesNotFound
from timedb.formats import Body
from timedb.formats.arrow import ArrowBody
from timedb.formats.csv import CsvBody
from timedb.formats.json import JsonBody
from timedb.formats.ndjson import NdjsonBody
from timedb.formats.negotiate import negotiate
from timedb.handlers.context import body, parse_labels, read, token_caller
from timedb.handlers.idempotent import respond_once
from timedb.handlers.read_params import read_spec, spec_args
from timedb.handlers.streaming import respond
from timedb.points import Points, point_columns
from timedb.timestamps import parse_optional, parse_timestamp
from timedb.units import IDENTITY, conversion


def insert_values() -> Response:
    """Write points into one series (one batch for overlapping series)."""
    req = body()
    if req.get("series_id") is None and req.get("name") is None:
        raise InvalidInput(
            "Provide either 'series_id' or 'name' (+labels) to identify the target series.", body="/name"
        )
    flt = (
        SeriesFilter(series_id=req["series_id"])
        if req.get("series_id") is not None
        else SeriesFilter(name=req["name"], labels=req.get("labels") or None)
    )
    points: Points = req["data"]  # decoded and checked by the body validator
    known_time = parse_optional(req.get("known_time"), "known_time")
    start_time = datetime.now(UTC)

    unit, skip = req.get("unit"), bool(req.get("skip_unchanged"))
    full = _representation()  # (known_time in the answer)

    def work(conn: Connection) -> dict[str, Any]:
        try:
            series = resolve_one(conn, flt)
        except InvalidInput as exc:  # (the filters are members of the body)
            raise exc.in_body() from None
        sid = series["series_id"]
        if skip:  # the bulk loader's path: the comparison with what is stored runs in Arrow
            loaded = bulk.load(
                conn,
                point_columns(points, sid, known_time),
                unit=unit,
                skip_unchanged=True,
                workflow_id=req.get("workflow_id", "api-workflow"),
                batch_params=req.get("batch_params"),
                start_time=start_time,
            )
            batch = loaded.batches[0] if loaded.batches else {"batch_id": None, "known_time": known_time}
            answer: dict[str, Any] = {
                "batch_id": batch["batch_id"],
                "series_id": sid,
                "rows_inserted": loaded.rows_inserted,
                "known_time": batch["known_time"],
                "rows_skipped": loaded.rows_skipped,
            }
        else:
            convert = conversion(unit, series["unit"]) if unit is not None else IDENTITY
            # writers of this series take turns; write_time is later than every earlier write
            write_time = lock_series(conn, [sid])
            rows = bulk.Prepared(points, convert)
            answer = {
                "batch_id": None,
                "series_id": sid,
                "rows_inserted": points.count,
                "known_time": known_time or write_time,
            }
            if series["overlapping"]:
                batch_id, batch_known = write.create_batch(
                    conn,
                    sid,
                    known_time=known_time,
                    write_time=write_time,
                    workflow_id=req.get("workflow_id", "api-workflow"),
                    batch_params=req.get("batch_params"),
                    start_time=start_time,
                )
                if known_time is not None:
                    write.check_versions_free(conn, sid, batch_id, known_time, rows)
                write.insert_overlapping(conn, sid, batch_id, batch_known, write_time, rows)
                answer["batch_id"], answer["known_time"] = batch_id, batch_known
            else:
                write.insert_flat(conn, sid, rows, known_time, write_time)
        if not full:
            del answer["known_time"]  # (the reference's answer: batch_id, series_id, rows_inserted)
        return answer

    return respond_once(work, {"Preference-Applied": "return=representation"} if full else None)


def _representation() -> bool:
    """The client asked for the full answer (RFC 7240 `Prefer: return=representation`)."""
    prefer = request.headers.get("prefer") or ""
    return any(p.split(";")[0].strip().replace(" ", "").lower() == "return=representation" for p in prefer.split(","))


def read_values(
    name: str | None = None,
    labels: str | None = None,
    series_id: int | None = None,
    versions: bool = False,
    include_updates: bool = False,
    format: str | None = None,
    consistency: str = "eventual",
    **params: Any,
) -> Response:
    """Read one series: latest values, every version, or the full audit trail."""
    flt = SeriesFilter(name=name, series_id=series_id, labels=parse_labels(labels))
    if versions and include_updates:  # (two modes: say which, never pick one silently)
        raise InvalidInput(
            "versions and include_updates are two read modes: give one of them (include_updates=true "
            "is the audit trail, versions=true every version without corrections' details).",
            query="include_updates",
        )
    mode = Mode.AUDIT if include_updates else Mode.VERSIONS if versions else Mode.LATEST
    fmt = negotiate(format, request.headers.get("accept"))
    for given_by_security in ("user", "token_info"):  # (Connexion passes these to a **params handler)
        params.pop(given_by_security, None)
    spec = _for_format(fmt, read_spec(mode, **params))
    # opening resolves the series and reads the first rows: lookup errors become problem
    # responses here, and a replica that fails so far leaves the read to the primary
    return read(lambda p: respond(_open(p, fmt, one_series(flt, spec), spec)), consistency)


MAX_SERIES = 10_000


def query_values(format: str | None = None, consistency: str = "eventual") -> Response:
    """Read many series in one request (POST /values/query)."""
    req = body()
    mode = Mode(req.get("mode", "latest"))
    fmt = negotiate(format, request.headers.get("accept"))
    try:
        spec = _for_format(fmt, read_spec(mode, **spec_args(req)))
    except InvalidInput as exc:  # (the read parameters are members of this body)
        raise exc.in_body() from None
    flt = req.get("filter")
    if (flt is None) == (req.get("series") is None):
        raise InvalidInput(
            "Give either 'series' (a list of series) or 'filter' (name, unit, labels), not both.", body="/filter"
        )
    chosen = flt and SeriesFilter(name=flt.get("name"), unit=flt.get("unit"), labels=flt.get("labels") or None)

    def open_(p: Pool) -> Response:
        found: list[dict[str, Any]] = []  # (one per attempt: the plan fills it when it runs)
        return respond(_open(p, fmt, many_series(req.get("series"), chosen, spec, MAX_SERIES, found), spec, found))

    return read(open_, consistency)


def _for_format(fmt: str, spec: ReadSpec) -> ReadSpec:
    """The COPY formats print timestamps themselves: they take instants, not text."""
    return replace(spec, instants=True) if fmt in COPY_FORMATS else spec


COPY_FORMATS = ("csv", "arrow")


def _open(pool: Pool, fmt: str, plan: Plan, spec: ReadSpec, series: list[dict[str, Any]] | None = None) -> Body:
    """Start the read (rows for JSON and NDJSON, COPY output for CSV and Arrow) on a connection
    of pool and its body in format fmt; series: the list a multi-series plan fills when it runs."""
    many = series is not None
    if fmt in COPY_FORMATS:
        copy = CopyStream(
            pool,
            plan,
            spec.mode,
            many=many,
            out_tz=spec.out_tz,
            printed=Printed.TEXT if fmt == "csv" else Printed.TYPED,
        )
        try:
            return CsvBody(copy) if fmt == "csv" else ArrowBody(copy, spec.mode, spec.out_tz, series)
        except BaseException:
            copy.close()
            raise
    rows = RowStream(pool, plan, spec.out_tz)
    return JsonBody(rows, spec.mode, series) if fmt == "json" else NdjsonBody(rows, spec.mode, series)


def _canonical(item: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "value" in item:
        fields["value"] = item["value"]
    if "annotation" in item:
        fields["annotation"] = (item["annotation"] or "").strip() or None
    if "tags" in item:
        tags = sorted({t.strip().lower() for t in item["tags"] or [] if t.strip()})
        fields["tags"] = tags or None
    if "changed_by" in item:
        fields["changed_by"] = item["changed_by"]
    return fields


def _identity(item: dict[str, Any]) -> tuple[str, Any] | None:
    """How an item names its series: by id, by name (+labels), or both (which must agree,
    as series_id, name and labels are ANDed in GET /values)."""
    named = (item.get("name"), tuple(sorted((item.get("labels") or {}).items())))
    if item.get("series_id") is not None:
        return ("both", (item["series_id"], named)) if named != (None, ()) else ("id", item["series_id"])
    return ("name", named) if named[0] is not None else None


def _resolve_series(conn: Connection, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series of every item; items without identity use the first item's."""
    first = _identity(updates[0])
    if first is None:
        raise InvalidInput(
            "First update must include 'series_id' or 'name' (+labels) to identify the series.", body="/updates/0"
        )
    idents = [_identity(u) or first for u in updates]
    ids = sorted({v for k, v in idents if k == "id"})
    by_id = get_by_ids(conn, ids) if ids else {}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SeriesNotFound(f"No series found with series_id={missing[0]}.")
    resolved: dict[tuple[str, Any], dict[str, Any]] = {("id", k): v for k, v in by_id.items()}
    for i, ident in enumerate(idents):
        if ident in resolved:
            continue
        sid, (name, labels) = ident[1] if ident[0] == "both" else (None, ident[1])
        flt = SeriesFilter(series_id=sid, name=name, labels=dict(labels) or None)
        try:
            resolved[ident] = resolve_one(conn, flt)
        except InvalidInput as exc:
            raise exc.in_body(f"/updates/{i}") from None
    return [resolved[i] for i in idents]


def update_records() -> Response:
    """Apply corrections in order, in one transaction; the replaced values stay stored."""
    updates = body()["updates"]
    items: list[fix.Correction] = []
    who = token_caller()
    for i, u in enumerate(updates):
        fields = _canonical(u)
        if not fields:
            raise InvalidInput(
                f"updates[{i}]: No updates supplied: provide at least one of "
                "'value', 'annotation', 'tags', 'changed_by'."
            )
        if who is not None and (who[1] != "admin" or fields.get("changed_by") is None):
            fields["changed_by"] = who[0]  # (only an admin token may name someone else)
        items.append(
            fix.Correction(
                series_id=0,
                overlapping=False,
                valid_time=parse_timestamp(u["valid_time"], f"updates[{i}].valid_time"),
                batch_id=u.get("batch_id"),
                known_time=parse_optional(u.get("known_time"), f"updates[{i}].known_time"),
                fields=fields,
            )
        )

    unit = body().get("unit")

    def work(conn: Connection) -> dict[str, Any]:
        for item, series in zip(items, _resolve_series(conn, updates), strict=True):
            item.series_id, item.overlapping = series["series_id"], series["overlapping"]
            if unit is not None and item.fields.get("value") is not None:
                item.fields["value"] = conversion(unit, series["unit"])(item.fields["value"])
        stored = fix.apply_corrections(conn, items)
        return {"updated": [_result(item, row) for item, row in zip(items, stored, strict=True)]}

    return respond_once(work)


def _result(item: fix.Correction, row: dict[str, Any]) -> dict[str, Any]:
    change_time = row["change_time"].astimezone(UTC)
    if item.overlapping:
        return {
            "overlapping_id": row["stored_id"],
            "batch_id": row["batch_id"],
            "valid_time": item.valid_time,
            "series_id": item.series_id,
            "change_time": change_time,
        }
    return {
        "flat_id": row["stored_id"],
        "series_id": item.series_id,
        "valid_time": item.valid_time,
        "change_time": change_time,
    }
