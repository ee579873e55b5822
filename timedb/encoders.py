"""Rows of a values read as JSON: the records of the response's `data` array."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from timedb.db.values_read import Mode

_DUMP = orjson.dumps
_OPTS = orjson.OPT_NAIVE_UTC  # the queries return UTC wall times; print them with +00:00

Rows = Sequence[tuple[Any, ...]]


def _latest(rows: Rows) -> bytes:
    return _DUMP(
        [{"valid_time": vt, "value": v} if vte is None else {"valid_time": vt, "valid_time_end": vte, "value": v}
         for vt, vte, v in rows],
        option=_OPTS,
    )[1:-1]


def _versions(rows: Rows) -> bytes:
    return _DUMP(
        [{"known_time": kt, "valid_time": vt, "value": v} if vte is None
         else {"known_time": kt, "valid_time": vt, "valid_time_end": vte, "value": v}
         for kt, vt, vte, v in rows],
        option=_OPTS,
    )[1:-1]


def _audit(rows: Rows) -> bytes:
    out = []
    for kt, vt, vte, ct, v, by, ann, tags, batch in rows:
        rec: dict[str, Any] = {"known_time": kt, "valid_time": vt}
        if vte is not None:
            rec["valid_time_end"] = vte
        rec.update(change_time=ct, value=v, changed_by=by, annotation=ann, tags=tags, batch_id=batch)
        out.append(rec)
    return _DUMP(out, option=_OPTS)[1:-1]


# rows -> the records, comma-separated, without the enclosing brackets
RECORDS: dict[Mode, Callable[[Rows], bytes]] = {
    Mode.LATEST: _latest, Mode.VERSIONS: _versions, Mode.AUDIT: _audit,
}


def document(count: int, records: bytes) -> bytes:
    """A whole ValuesResponse (count first, as the reference writes it)."""
    return b'{"count":%d,"data":[%s]}' % (count, records)


# a streamed ValuesResponse: the count is known only at the end, so it follows the data
STREAM_HEAD = b'{"data":['


def stream_tail(count: int) -> bytes:
    return b'],"count":%d}' % count
