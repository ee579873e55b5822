"""Synthetic points: request bodies for the API and the same rows, already parsed, for raw COPY."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

T0 = datetime(2020, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)
TABLES = ("flat", "overlapping")  # the two fact tables (and kinds of series)


def valid_times(n: int, offset: int = 0) -> list[datetime]:
    return [T0 + (offset + i) * STEP for i in range(n)]


def values(n: int, seed: int = 0) -> list[float]:
    # varied decimals, like measurements: 3 decimals, 1-4 integer digits
    return [round(((i * 7919 + seed * 104729) % 100000) / 37.0 + 0.001, 3) for i in range(n)]


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Points:
    """n points starting at minute `offset`: the JSON `data` array and the parsed rows."""

    def __init__(self, n: int, offset: int = 0, seed: int = 0) -> None:
        self.n = n
        self.times = valid_times(n, offset)
        self.values = values(n, seed)

    def data(self) -> list[dict[str, object]]:
        return [{"valid_time": stamp(t), "value": v} for t, v in zip(self.times, self.values)]

    def body(self, series_id: int) -> bytes:
        """An InsertRequest (no known_time: the server stamps now(), so re-posting is legal)."""
        return orjson.dumps({"series_id": series_id, "data": self.data()})

    def flat_rows(self, series_id: int) -> list[tuple[object, ...]]:
        """Rows for COPY flat (series_id, valid_time, valid_time_end, value)."""
        return [(series_id, t, None, v) for t, v in zip(self.times, self.values)]

    def overlapping_rows(self, batch_id: int, series_id: int, known_time: datetime) -> list[tuple[object, ...]]:
        """Rows for COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time)."""
        return [(batch_id, series_id, t, None, v, known_time) for t, v in zip(self.times, self.values)]


def corrections_body(series_id: int, start: int, n: int, seed: int) -> bytes:
    """An UpdateRecordsRequest correcting n consecutive points of a series (its latest version)."""
    items = [
        {"series_id": series_id, "valid_time": stamp(t), "value": v, "changed_by": "bench"}
        for t, v in zip(valid_times(n, start), values(n, seed))
    ]
    return orjson.dumps({"updates": items})
