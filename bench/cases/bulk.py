"""Bulk loads (issue 10): a whole forecast run in one POST /values/bulk (JSON, Arrow, CSV) against
binary COPY of the same rows; POST /series/bulk; a skip_unchanged re-send."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench import raw
from bench.config import Config
from bench.context import Bench, Group
from bench.data import Points, stamp
from bench.httpclient import Request
from bench.procstat import MB, PeakRss
from bench.report import Target, pct
from bench.targets import Peak, Rate, Seconds

T0 = datetime(2021, 1, 1, tzinfo=UTC)
KNOWN = datetime(2020, 12, 31, 6, tzinfo=UTC)
COPY_RUN = "COPY overlapping (batch_id, series_id, valid_time, value, known_time) FROM STDIN (FORMAT BINARY)"
COPY_RUN_TYPES = ["int8", "int8", "timestamptz", "float8", "timestamptz"]
SKIP_PATHS = {"flat": "/values", "overlapping": "/values", "bulk": "/values/bulk"}


class Run:
    """One forecast run: n points for each of k overlapping series, known_time per row."""

    def __init__(self, ids: list[int], points: int, known: datetime) -> None:
        self.ids, self.points, self.known = ids, points, known
        self.times = [T0 + timedelta(hours=i) for i in range(points)]
        self.values = [round((i * 7919 % 100000) / 37.0, 3) for i in range(points)]

    @property
    def rows(self) -> int:
        return len(self.ids) * self.points

    def json(self) -> bytes:
        kt = stamp(self.known)
        stamps = [stamp(t) for t in self.times]
        return orjson.dumps(
            {
                "rows": [
                    {"series_id": sid, "valid_time": vt, "value": v, "known_time": kt}
                    for sid in self.ids
                    for vt, v in zip(stamps, self.values, strict=True)
                ]
            }
        )

    def csv(self) -> bytes:
        kt = stamp(self.known)
        out = io.StringIO()
        out.write("series_id,valid_time,value,known_time\n")
        for sid in self.ids:
            for vt, v in zip(self.times, self.values, strict=True):
                out.write(f"{sid},{stamp(vt)},{v},{kt}\n")
        return out.getvalue().encode()

    def arrow(self) -> bytes:
        import pyarrow as pa

        k, n = len(self.ids), self.points
        table = pa.table(
            {
                "series_id": pa.array([sid for sid in self.ids for _ in range(n)], pa.int64()),
                "valid_time": pa.array(self.times * k, pa.timestamp("us", tz="UTC")),
                "value": pa.array(self.values * k, pa.float64()),
                "known_time": pa.array([self.known] * (k * n), pa.timestamp("us", tz="UTC")),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=65536)
        return bytes(sink.getvalue())

    def raw_rows(self, batch_of: dict[int, int]) -> list[tuple[Any, ...]]:
        """Rows for COPY_RUN (batch_id, series_id, valid_time, value, known_time)."""
        return [
            (batch_of[sid], sid, vt, v, self.known)
            for sid in self.ids
            for vt, v in zip(self.times, self.values, strict=True)
        ]


FORMATS = {  # body format -> content type, encoder
    "json": ("application/json", Run.json),
    "arrow": ("application/vnd.apache.arrow.stream", Run.arrow),
    "csv": ("text/csv", Run.csv),
}


def run(bench: Bench) -> None:
    bench.restart_server()  # a fresh heap for the RSS of the bulk loads
    load_run(bench)
    series_bulk(bench)
    skip_unchanged(bench)


def _series(bench: Bench, prefix: str, k: int, overlapping: bool) -> list[int]:
    ids = [
        r[0]
        for r in bench.conn.execute(
            "INSERT INTO series_table (name, unit, labels, overlapping) "
            "SELECT %s || i, 'MW', '{\"bench\": \"bulk\"}', %s FROM generate_series(1, %s) i RETURNING series_id",
            (prefix, overlapping, k),
        )
    ]
    bench.conn.commit()
    return ids


def _copy_rate(bench: Bench, run: Run) -> float:
    """Rows/s of binary COPY of the run's rows into overlapping, their batches made first, in
    one transaction, commit included (building the Python rows is not counted)."""
    t0 = time.perf_counter()
    batch_of = {
        sid: bid
        for bid, sid in bench.conn.execute(
            "INSERT INTO batches_table (series_id, known_time) SELECT s, %s FROM unnest(%s::bigint[]) s "
            "RETURNING batch_id, series_id",
            (run.known, run.ids),
        )
    }
    batches = time.perf_counter() - t0
    rows = run.raw_rows(batch_of)
    return run.rows / (batches + raw.copy_seconds(bench.conn, COPY_RUN, COPY_RUN_TYPES, [rows]))


def load_run(bench: Bench) -> None:
    """POST /values/bulk of cfg.bulk_series x cfg.bulk_points rows as JSON, Arrow and CSV; each
    repetition a new run (another known_time) of fresh series; raw COPY alternates with it."""
    k, n = bench.cfg.bulk_series, bench.cfg.bulk_points
    for fmt, (content_type, encode) in FORMATS.items():
        ids = _series(bench, f"bulk_{fmt}_", k, True)
        raw_ids = _series(bench, f"raw_{fmt}_", k, True)
        growth: list[float] = []
        reps = {"i": 0}

        def api_rep(
            ids: list[int] = ids,
            content_type: str = content_type,
            encode: Any = encode,
            growth: list[float] = growth,
            reps: dict[str, int] = reps,
            fmt: str = fmt,
        ) -> float:
            run = Run(ids, n, KNOWN + timedelta(hours=reps["i"]))
            reps["i"] += 1
            req = Request("POST", "/values/bulk", encode(run), content_type)
            with PeakRss(bench.server.pid) as peak:
                reply = bench.http.send(req)
            if reply.status != 200 or orjson.loads(reply.body)["rows_inserted"] != run.rows:
                raise RuntimeError(f"POST /values/bulk ({fmt}) -> {reply.status}: {reply.body[:300]!r}")
            growth.append(peak.growth / MB)
            return run.rows / reply.wall

        def raw_rep(raw_ids: list[int] = raw_ids, reps: dict[str, int] = reps) -> float:
            return _copy_rate(bench, Run(raw_ids, n, KNOWN + timedelta(hours=reps["i"])))

        probe = Run(ids[:1], 1, KNOWN - timedelta(days=1))
        reply = bench.http.send(Request("POST", "/values/bulk", encode(probe), content_type))
        if reply.status != 200:
            print(f"  (POST /values/bulk as {fmt}: {reply.status}; skipped)", flush=True)
            continue
        api, raw_rates = bench.reps(f"bulk_{fmt}", api_rep, raw_rep)
        bench.add_case(
            f"bulk_{fmt}",
            f"POST /values/bulk {fmt}, {k:,} overlapping series x {n:,} rows",
            "rows/s",
            api,
            raw_rates,
            "binary COPY, write_row of parsed rows, one transaction",
            {"rss_growth_mb": growth},
        )
        print(f"    peak RSS growth {max(growth):.0f} MB (worst rep)", flush=True)


def series_bulk(bench: Bench) -> None:
    """POST /series/bulk of cfg.bulk_new_series new series, then the same again (all exist)."""
    k = bench.cfg.bulk_new_series
    timings: dict[str, list[float]] = bench.report.extra.setdefault("series_bulk", {})
    for rep in range(bench.cfg.reps):
        body = orjson.dumps(
            {
                "series": [
                    {
                        "name": f"farm_{rep}_{i}",
                        "unit": "MW",
                        "overlapping": True,
                        "labels": {"bench": "series_bulk", "farm": str(i)},
                    }
                    for i in range(k)
                ]
            }
        )
        for key, created in (("series_bulk_new", True), ("series_bulk_again", False)):
            reply = bench.http.send(Request("POST", "/series/bulk", body))
            answer = orjson.loads(reply.body) if reply.status == 200 else None
            if answer is None or {s["created"] for s in answer["series"]} != {created}:
                raise RuntimeError(f"POST /series/bulk -> {reply.status}: {reply.body[:300]!r}")
            timings.setdefault(key, []).append(reply.wall)
    for key, label in (("series_bulk_new", "new"), ("series_bulk_again", "existing")):
        print(
            f"  POST /series/bulk of {k:,} {label} series: {', '.join(f'{t:.2f}' for t in timings[key])} s", flush=True
        )


def _skip_bodies(bench: Bench, path: str, rep: int, n: int) -> tuple[bytes, bytes]:
    """The first write and its re-send (skip_unchanged) of n points, for one of the paths."""
    if path == "bulk":  # POST /values/bulk, 10 overlapping series, one known_time per row
        run = Run(_series(bench, f"skip_bulk_{rep}_", 10, True), n // 10, KNOWN)
        body = run.json()
        return body, orjson.dumps({**orjson.loads(body), "skip_unchanged": True})
    sid = bench.series(f"skip_{path}_{rep}", path == "overlapping")
    doc = orjson.loads(Points(n).body(sid))
    if path == "overlapping":  # the same run (known_time) again
        doc["known_time"] = stamp(KNOWN)
    return orjson.dumps(doc), orjson.dumps({**doc, "skip_unchanged": True})


def skip_unchanged(bench: Bench) -> None:
    """cfg.skip_points points written, then the same points again with skip_unchanged: POST
    /values into a flat and an overlapping series, POST /values/bulk over 10 overlapping series."""
    n = bench.cfg.skip_points
    result: dict[str, Any] = {"points": n}
    for path, url in SKIP_PATHS.items():
        first, again = [], []
        for rep in range(bench.cfg.reps):
            body, resend = _skip_bodies(bench, path, rep, n)
            reply = bench.http.send(Request("POST", url, body))
            if reply.status != 200:
                raise RuntimeError(f"POST {url} ({path}) -> {reply.status}: {reply.body[:300]!r}")
            first.append(reply.wall)
            reply = bench.http.send(Request("POST", url, resend))
            answer = orjson.loads(reply.body)
            if reply.status != 200 or answer["rows_inserted"] != 0 or answer["rows_skipped"] != n:
                raise RuntimeError(f"skip_unchanged re-send ({path}) -> {reply.status}: {reply.body[:300]!r}")
            again.append(reply.wall)
        result[path] = {"first_s": first, "again_s": again}
        print(
            f"  POST {url} ({path}) of {n:,} points: first {min(first):.2f} s; re-sent with skip_unchanged "
            f"{min(again):.2f} s, 0 rows stored",
            flush=True,
        )
    bench.report.extra["skip_unchanged"] = result


SHARES = {"json": (0.50, 250_000), "arrow": (0.80, 0), "csv": (0.65, 0)}  # body -> share of raw COPY, rows/s


def targets(cfg: Config) -> list[Target]:
    out: list[Target] = []
    for body, (share, floor) in SHARES.items():
        out += [
            Rate(
                f"POST /values/bulk as {body}: >= {pct(share)} of raw COPY"
                + (f" and >= {floor:,} rows/s" if floor else ""),
                f"bulk_{body}",
                floor=floor,
                share=share,
                detail="{api} rows/s, {ratio} of raw",
            ),
            Peak(f"POST /values/bulk as {body}: peak RSS growth < 500 MB", f"bulk_{body}", 500, detail="{rss:.0f} MB"),
        ]
    out.append(
        Seconds(
            f"POST /series/bulk of {cfg.bulk_new_series:,} new series < 2 s, again < 1 s",
            ("series_bulk",),
            {"series_bulk_new": 2, "series_bulk_again": 1},
            "{series_bulk_new:.2f} s, again {series_bulk_again:.2f} s",
        )
    )
    out += [
        Seconds(
            f"skip_unchanged ({path}) re-send of {cfg.skip_points:,} points faster than the first write, "
            "nothing stored",
            ("skip_unchanged", path),
            {"again_s": "first_s"},
            "{again_s:.2f} s vs {first_s:.2f} s",
        )
        for path in SKIP_PATHS
    ]
    return out


GROUP = Group("bulk", run, targets)
