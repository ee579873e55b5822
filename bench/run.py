#!/usr/bin/env python
"""Benchmark the timedb server over HTTP against raw PostgreSQL, in one run, on one database.

    python bench/run.py --dsn postgresql://postgres@127.0.0.1:5432/postgres          # full run
    python bench/run.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --smoke  # CI, seconds

The DSN names a server and a database to connect to for administration; the run
creates a fresh database `timedb_bench_<random>` there, applies the schema, starts
one uvicorn worker (`uvicorn timedb.api:app`, like a default `timedb api`),
measures, and drops the database. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from bench import auth, backtest, bulk, faults, load  # noqa: E402
from bench.data import T0, Points, corrections_body, valid_times, values  # noqa: E402
from bench.httpclient import Client  # noqa: E402
from bench.procstat import PeakRss, Usage  # noqa: E402
from timedb.db import corrections as fix  # noqa: E402
from timedb.db import read_query as read  # noqa: E402
from timedb.db.schema import create_tables  # noqa: E402
from timedb.db.values_read import CHUNK_ROWS  # noqa: E402

MB = 1024 * 1024

COPY_FLAT = "COPY flat (series_id, valid_time, valid_time_end, value) FROM STDIN (FORMAT BINARY)"
COPY_FLAT_TYPES = ["int8", "timestamptz", "timestamptz", "float8"]
COPY_OVL = (
    "COPY overlapping (batch_id, series_id, valid_time, valid_time_end, value, known_time) FROM STDIN (FORMAT BINARY)"
)
COPY_OVL_TYPES = ["int8", "int8", "timestamptz", "timestamptz", "float8", "timestamptz"]


# ----------------------------------------------------------------------------- configuration

SECTIONS = ("series", "inserts", "growth", "reads", "corrections", "memory", "firstbyte", "backtest", "bulk", "auth")


@dataclass
class Config:
    dsn: str
    insert_sizes: list[int] = field(default_factory=lambda: [100, 10_000, 100_000])
    read_sizes: list[int] = field(default_factory=lambda: [1_000, 100_000, 1_000_000])
    versions_rows: int = 100_000
    revisions: int = 10
    series: int = 10_000
    clients: int = 16
    corrections: list[int] = field(default_factory=lambda: [1, 100])
    big_rows: int = 10_000_000  # rows each fact table holds for the growth and correction cases
    memory_body_mb: float = 100.0  # size of the POST /values whose peak memory is measured
    resample_points: int = 1_000_000  # 15-minute points resampled to hourly means
    query_series: int = 1_000  # series x points of the POST /values/query case
    query_points: int = 1_000
    bulk_series: int = 1_000  # overlapping series x rows of one POST /values/bulk run
    bulk_points: int = 1_000
    bulk_new_series: int = 10_000  # series of one POST /series/bulk
    skip_points: int = 100_000  # points re-sent with skip_unchanged
    reps: int = 3
    duration: float = 5.0  # seconds per repetition of a request loop (wrk)
    rep_rows: int = 200_000  # rows per repetition when one request is small (python client, raw loops)
    client: str = "auto"
    smoke: bool = False
    keep_db: bool = False
    json_out: str | None = None
    port: int = 0
    server_log: str | None = None
    only: list[str] = field(default_factory=lambda: list(SECTIONS))

    @classmethod
    def smoke_config(cls, dsn: str) -> Config:
        return cls(
            dsn=dsn,
            insert_sizes=[100, 1_000],
            read_sizes=[100, 2_000, 5_000],
            versions_rows=2_000,
            revisions=3,
            series=100,
            clients=4,
            corrections=[1, 10],
            big_rows=20_000,
            memory_body_mb=2.0,
            resample_points=4_000,
            query_series=20,
            query_points=300,
            bulk_series=10,
            bulk_points=100,
            bulk_new_series=200,
            skip_points=2_000,
            reps=1,
            duration=1.0,
            rep_rows=2_000,
            smoke=True,
        )


# ----------------------------------------------------------------------------- results


def summary(values_: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values_), "min": min(values_), "max": max(values_), "reps": values_}


@dataclass
class Case:
    key: str  # stable id, used by the targets
    name: str
    unit: str
    api: dict[str, Any]
    raw: dict[str, Any] | None = None
    raw_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.raw is None or not self.raw["median"]:
            return None
        return self.api["median"] / self.raw["median"]


class Report:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.cases: dict[str, Case] = {}
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}  # measurements that are not rates (bench/faults.py)

    def add(self, case: Case) -> Case:
        self.cases[case.key] = case
        api, raw = case.api, case.raw
        line = f"  {case.name}: API {fmt(api['median'])} {case.unit} [{fmt(api['min'])}-{fmt(api['max'])}]"
        if raw is not None:
            line += f"; raw {fmt(raw['median'])} ({case.raw_name}); ratio {case.ratio:.2f}"
        print(line, flush=True)
        return case

    def judge(self) -> None:
        """The issue's targets, each on the measured medians."""
        c = self.cases
        full = not self.cfg.smoke

        def target(name: str, ok: bool | None, detail: str) -> None:
            self.targets.append({"target": name, "ok": ok if full else None, "detail": detail})

        for kind in ("flat", "overlapping"):
            case = c.get(f"insert_{kind}_{max(self.cfg.insert_sizes)}")
            if case:
                ok = case.api["median"] >= 150_000 and (case.ratio or 0) >= 0.40
                target(
                    f"insert {kind}, {max(self.cfg.insert_sizes):,} points/request: >= 150,000 rows/s and >= 40% "
                    "of raw COPY",
                    ok,
                    f"{fmt(case.api['median'])} rows/s, {pct(case.ratio)} of raw",
                )
            case = c.get(f"insert_{kind}_{min(self.cfg.insert_sizes)}")
            if case:
                target(
                    f"insert {kind}, {min(self.cfg.insert_sizes)} points/request (sequential): >= 30,000 rows/s",
                    case.api["median"] >= 30_000,
                    f"{fmt(case.api['median'])} rows/s",
                )
        for size in self.cfg.read_sizes[1:]:
            case = c.get(f"read_latest_{size}")
            if case:
                ok = case.api["median"] >= 200_000 and (case.ratio or 0) >= 0.50
                target(
                    f"latest read, {size:,} points, streamed: >= 200,000 rows/s and >= 50% of in-database",
                    ok,
                    f"{fmt(case.api['median'])} rows/s, {pct(case.ratio)} of in-database",
                )
        case = c.get(f"read_versions_{self.cfg.versions_rows}")
        if case:
            target(
                f"versions read, {self.cfg.versions_rows:,} rows: >= 250,000 rows/s",
                case.api["median"] >= 250_000,
                f"{fmt(case.api['median'])} rows/s",
            )
        for kind in ("flat", "overlapping"):
            case = c.get(f"correct_{kind}_{max(self.cfg.corrections)}")
            if case:
                target(
                    f"{max(self.cfg.corrections)} corrections/request, {kind}: >= 20,000 corrections/s",
                    case.api["median"] >= 20_000,
                    f"{fmt(case.api['median'])} corrections/s",
                )
        case = c.get("series_count")
        if case:
            target(
                f"GET /series/count over {self.cfg.series:,} series, {self.cfg.clients} clients: >= 1,000 req/s",
                case.api["median"] >= 1_000,
                f"{fmt(case.api['median'])} req/s",
            )
        big = max(self.cfg.read_sizes)
        case = c.get(f"read_latest_{big}")
        if case and "rss_growth_mb" in case.extra:
            growth = max(case.extra["rss_growth_mb"])
            target(f"{big:,}-point read: peak RSS growth < 100 MB", growth < 100, f"{growth:.1f} MB (worst rep)")
        mid = c.get(f"read_latest_{self.cfg.read_sizes[-2]}") if len(self.cfg.read_sizes) > 1 else None
        if case and mid:
            r = case.api["median"] / mid.api["median"]
            target(
                f"growth: {big:,}-point read at >= 90% of the {self.cfg.read_sizes[-2]:,}-point rows/s",
                r >= 0.90,
                f"{pct(r)}",
            )
        case = c.get("read_day_ahead")
        if case:
            target(
                "day-ahead latest read: >= 150,000 rows/s and >= 50% of in-database",
                case.api["median"] >= 150_000 and (case.ratio or 0) >= 0.50,
                f"{fmt(case.api['median'])} rows/s, {pct(case.ratio)} of in-database",
            )
        case = c.get("resample_hourly")
        if case:
            target(
                "resample 15-minute points to hourly means: >= 1,000,000 input rows/s",
                case.api["median"] >= 1_000_000,
                f"{fmt(case.api['median'])} input rows/s",
            )
        js, arrow = c.get("query_json"), c.get("query_arrow")
        if js:
            target(
                "POST /values/query as JSON: >= 250,000 rows/s",
                js.api["median"] >= 250_000,
                f"{fmt(js.api['median'])} rows/s",
            )
        if arrow and js:
            r = arrow.api["median"] / js.api["median"]
            target(
                "POST /values/query as Arrow: >= 700,000 rows/s and >= 2x JSON",
                arrow.api["median"] >= 700_000 and r >= 2,
                f"{fmt(arrow.api['median'])} rows/s, {r:.1f}x JSON",
            )
        for case in (js, arrow):
            if case and "rss_growth_mb" in case.extra:
                growth = max(case.extra["rss_growth_mb"])
                target(f"{case.name}: peak RSS growth < 100 MB", growth < 100, f"{growth:.1f} MB (worst rep)")
        for body, share in (("json", 0.50), ("arrow", 0.80), ("csv", 0.65)):
            case = c.get(f"bulk_{body}")
            if case:
                floor = 250_000 if body == "json" else 0
                target(
                    f"POST /values/bulk as {body}: >= {pct(share)} of raw COPY"
                    + (" and >= 250,000 rows/s" if floor else ""),
                    case.api["median"] >= floor and (case.ratio or 0) >= share,
                    f"{fmt(case.api['median'])} rows/s, {pct(case.ratio)} of raw",
                )
                growth = max(case.extra.get("rss_growth_mb", [0]))
                target(f"POST /values/bulk as {body}: peak RSS growth < 500 MB", growth < 500, f"{growth:.0f} MB")
        for key in ("auth_series_count", "auth_insert_100"):
            case = c.get(key)
            if case:
                target(
                    f"{case.name}: within 10% of TIMEDB_AUTH=none",
                    (case.ratio or 0) >= 0.90,
                    f"{fmt(case.api['median'])} vs {fmt(case.raw['median'] if case.raw else 0)} ({pct(case.ratio)})",
                )
        sb = self.extra.get("series_bulk")
        if sb:
            new, again = statistics.median(sb["series_bulk_new"]), statistics.median(sb["series_bulk_again"])
            target(
                f"POST /series/bulk of {self.cfg.bulk_new_series:,} new series < 2 s, again < 1 s",
                new < 2 and again < 1,
                f"{new:.2f} s, again {again:.2f} s",
            )
        sk = self.extra.get("skip_unchanged")
        for path in bulk.SKIP_PATHS if sk else ():
            first, again = statistics.median(sk[path]["first_s"]), statistics.median(sk[path]["again_s"])
            target(
                f"skip_unchanged ({path}) re-send of {sk['points']:,} points faster than the first write, "
                "nothing stored",
                again < first,
                f"{again:.2f} s vs {first:.2f} s",
            )
        for kind in ("flat", "overlapping"):
            empty = c.get(f"insert_{kind}_{max(self.cfg.insert_sizes)}")
            grown = c.get(f"growth_insert_{kind}")
            if empty and grown:
                r = grown.api["median"] / empty.api["median"]
                rows = grown.extra.get("table_rows", 0)
                target(
                    f"growth: insert into {kind} holding {rows:,} rows within 80% of an empty one",
                    r >= 0.80,
                    f"{pct(r)} ({fmt(grown.api['median'])} vs {fmt(empty.api['median'])} rows/s)",
                )

    def table(self) -> str:
        head = (
            "| case | API rate, median (min-max) | raw rate, median | ratio | load client, CPU | server CPU |\n"
            "|---|---:|---:|---:|---|---:|\n"
        )
        rows = []
        for case in self.cases.values():
            api = f"{fmt(case.api['median'])} {case.unit} ({fmt(case.api['min'])}-{fmt(case.api['max'])})"
            raw = "-" if case.raw is None else f"{fmt(case.raw['median'])} ({case.raw_name})"
            ratio = "-" if case.ratio is None else f"{case.ratio:.2f}"
            usage = case.extra.get("usage") or [{}]
            client = (case.extra.get("load") or [{}])[0].get("client", "?")
            bench_cpu = statistics.median(u.get("bench_cores", 0.0) for u in usage)
            server_cpu = statistics.median(u.get("server_cores", 0.0) for u in usage)
            rows.append(
                f"| {case.name} | {api} | {raw} | {ratio} | {client}, {bench_cpu:.2f} cores | {server_cpu:.2f} cores |"
            )
        out = head + "\n".join(rows)
        if self.targets:
            out += "\n\n| target | result | met |\n|---|---|---|\n" + "\n".join(
                f"| {t['target']} | {t['detail']} | "
                f"{'n/a (smoke)' if t['ok'] is None else 'yes' if t['ok'] else '**no**'} |"
                for t in self.targets
            )
        return out

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "meta": meta,
            "config": asdict(self.cfg),
            "cases": [{**asdict(c), "ratio": c.ratio} for c in self.cases.values()],
            "targets": self.targets,
            "notes": self.notes,
            **self.extra,
        }


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


# ----------------------------------------------------------------------------- database and server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database:
    """A fresh database on the DSN's server, dropped afterwards."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin = admin_dsn
        self.name = f"timedb_bench_{secrets.token_hex(4)}"
        self.dsn = make_conninfo(admin_dsn, dbname=self.name)

    def create(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        create_tables(self.dsn)

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


class Server:
    """One uvicorn worker serving timedb.api:app, as `timedb api` does (without the access log)."""

    def __init__(self, dsn: str, port: int, log_path: str, env: dict[str, str] | None = None) -> None:
        self.dsn, self.port, self.log_path, self.env = dsn, port, log_path, env or {}

    def start(self) -> None:
        env = {**os.environ, "TIMEDB_DSN": self.dsn, **self.env}
        env.pop("TIMEDB_VALIDATE_RESPONSES", None)  # production default: off
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "timedb.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                c = Client("127.0.0.1", self.port, timeout=5)
                ok = c.request("GET", "/readyz").status == 200
                c.close()
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, cfg: Config, db: Database, server: Server, report: Report) -> None:
        self.cfg, self.db, self.server, self.report = cfg, db, server, report
        self.http = Client("127.0.0.1", server.port)
        self.conn = psycopg.connect(db.dsn)
        self.client = cfg.client if cfg.client != "auto" else ("wrk" if load.have_wrk() else "python")
        self.usages: dict[str, list[dict[str, float]]] = {}

    # --- helpers

    def restart_server(self) -> None:
        self.http.close()
        self.server.stop()
        self.server.start()
        self.http = Client("127.0.0.1", self.server.port)

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        raw = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        reply = self.http.request(method, path, raw)
        if reply.status != expect:
            raise RuntimeError(f"{method} {path} -> {reply.status}: {reply.body[:500]!r}")
        return orjson.loads(reply.body) if reply.body else None

    def series(self, name: str, overlapping: bool) -> int:
        out = self.api(
            "POST", "/series", {"name": name, "overlapping": overlapping, "unit": "MW", "labels": {"bench": "yes"}}
        )
        return int(out["series_id"])

    def usage(self) -> Usage:
        return Usage(self.server.pid).start()

    def keep_usage(self, key: str, u: dict[str, float]) -> None:
        self.usages.setdefault(key, []).append(u)

    def reps(
        self, key: str, api_rep: Callable[[], float], raw_rep: Callable[[], float] | None = None
    ) -> tuple[list[float], list[float]]:
        """Alternate API and raw repetitions so both see the same table sizes and machine load."""
        api_rates: list[float] = []
        raw_rates: list[float] = []
        for _ in range(self.cfg.reps):
            u = self.usage()
            api_rates.append(api_rep())
            self.keep_usage(key, u.stop())
            if raw_rep is not None:
                raw_rates.append(raw_rep())
        return api_rates, raw_rates

    def add_case(
        self, key: str, name: str, unit: str, api: list[float], raw: list[float] | None, raw_name: str | None
    ) -> Case:
        """Record a case measured with reps() (its CPU usage included)."""
        return self.report.add(
            Case(
                key,
                name,
                unit,
                summary(api),
                summary(raw) if raw else None,
                raw_name,
                {"usage": self.usages.get(key, [])},
            )
        )

    def count_rows(self, table: str) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        self.conn.commit()
        return int(row[0])

    # --- 4. series catalogue

    def load_series(self) -> None:
        n, threads = self.cfg.series, 4
        print(f"creating {n:,} series through POST /series ({threads} clients)", flush=True)
        errors: list[str] = []

        def worker(k: int) -> None:
            c = Client("127.0.0.1", self.server.port)
            for i in range(k, n, threads):
                body = orjson.dumps(
                    {"name": f"filler_{i:05d}", "unit": "kW", "labels": {"site": f"s{i % 100:02d}", "kind": "filler"}}
                )
                r = c.request("POST", "/series", body)
                if r.status != 200:
                    errors.append(f"{r.status} {r.body[:200]!r}")
                    return
            c.close()

        t0 = time.perf_counter()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise RuntimeError(f"POST /series failed: {errors[0]}")
        print(f"  {n / (time.perf_counter() - t0):,.0f} series/s", flush=True)
        self.conn.execute("ANALYZE series_table")
        self.conn.commit()

    def bench_series(self) -> None:
        total = self.api("GET", "/series/count")["count"]
        one = self.api("GET", "/series?name=filler_00001")
        assert len(one) == 1 and one[0]["name"] == "filler_00001", one
        print(f"series endpoints ({total:,} series, {self.cfg.clients} clients, {self.client})", flush=True)
        for key, name, lines in (
            (
                "series_count",
                f"GET /series/count ({total:,} series, {self.cfg.clients} clients)",
                ["GET /series/count"],
            ),
            (
                "series_by_name",
                f"GET /series?name=... ({total:,} series, {self.cfg.clients} clients)",
                [f"GET /series?name=filler_{i:05d}" for i in range(self.cfg.series)],
            ),
        ):
            runs: list[dict[str, Any]] = []

            def rep(lines: list[str] = lines, runs: list[dict[str, Any]] = runs) -> float:
                r = load.run(self.server.port, lines, self.cfg.clients, self.cfg.duration, self.client)
                runs.append(r)
                return r["requests"] / r["seconds"]

            api, _ = self.reps(key, rep)
            self.report.add(
                Case(key, name, "req/s", summary(api), extra={"series": total, "load": runs, "usage": self.usages[key]})
            )

    # --- 1. inserts

    def raw_copy(self, kind: str, sid: int, pts: list[Points], transactions: int) -> float:
        """Binary COPY (write_row of parsed rows), one transaction per request-sized chunk."""
        conn = self.conn
        if kind == "overlapping":
            batches = conn.execute(
                "INSERT INTO batches_table (series_id, workflow_id, known_time) "
                "SELECT %s, 'bench-raw', clock_timestamp() + g * interval '1 millisecond' "
                "FROM generate_series(1, %s) g RETURNING batch_id, known_time",
                (sid, transactions),
            ).fetchall()
            conn.commit()
            rows = [
                p.overlapping_rows(b, sid, kt)
                for p, (b, kt) in zip((pts[i % len(pts)] for i in range(transactions)), batches)
            ]
            stmt, types = COPY_OVL, COPY_OVL_TYPES
        else:
            flat = [p.flat_rows(sid) for p in pts]
            rows = [flat[i % len(flat)] for i in range(transactions)]
            stmt, types = COPY_FLAT, COPY_FLAT_TYPES
        n = 0
        t0 = time.perf_counter()
        for chunk in rows:
            with conn.cursor() as cur, cur.copy(stmt) as copy:
                copy.set_types(types)
                write = copy.write_row
                for row in chunk:
                    write(row)
            conn.commit()
            n += len(chunk)
        return n / (time.perf_counter() - t0)

    def insert_case(self, key: str, name: str, kind: str, size: int, extra: dict[str, Any] | None = None) -> None:
        overlapping = kind == "overlapping"
        sid_api = self.series(f"{key}_api", overlapping)
        sid_raw = self.series(f"{key}_raw", overlapping)
        nbodies = max(1, min(200, 200_000 // size))
        pts = [Points(size, offset=j * size, seed=j) for j in range(nbodies)]
        bodies = [p.body(sid_api) for p in pts]
        transactions = max(1, self.cfg.rep_rows // size)
        # one warm-up request (plans, pool, caches) that is not timed
        out = self.api("POST", "/values", bodies[0])
        assert out["rows_inserted"] == size, out
        use_loop = (size < 50_000 and self.client == "wrk") or size <= 1_000
        runs: list[dict[str, Any]] = []

        def api_rep() -> float:
            if use_loop:
                r = load.run(
                    self.server.port, [f"POST /values {b.decode()}" for b in bodies], 1, self.cfg.duration, self.client
                )
                runs.append(r)
                return r["requests"] * size / r["seconds"]
            raws = [Client.encode("POST", "/values", b) for b in bodies]
            wall = cpu = 0.0
            for i in range(max(1, self.cfg.rep_rows // size)):
                reply = self.http.send(raws[i % len(raws)])
                if reply.status != 200 or orjson.loads(reply.body)["rows_inserted"] != size:
                    raise RuntimeError(f"POST /values -> {reply.status}: {reply.body[:300]!r}")
                wall += reply.wall
                cpu += reply.client_cpu
            runs.append({"client": "python-socket", "seconds": wall, "client_cpu_s": cpu})
            return max(1, self.cfg.rep_rows // size) * size / wall

        def raw_rep() -> float:
            return self.raw_copy(kind, sid_raw, pts, transactions)

        api, raw = self.reps(key, api_rep, raw_rep)
        info = {
            "points_per_request": size,
            "body_bytes": len(bodies[0]),
            "load": runs,
            "usage": self.usages[key],
            **(extra or {}),
        }
        self.report.add(
            Case(key, name, "rows/s", summary(api), summary(raw), "binary COPY, write_row of parsed rows", info)
        )

    def bench_inserts(self) -> None:
        # largest first, so "empty table" means nearly empty for the growth comparison
        for size in sorted(self.cfg.insert_sizes, reverse=True):
            for kind in ("flat", "overlapping"):
                seq = " (sequential)" if size < 50_000 else ""
                self.insert_case(
                    f"insert_{kind}_{size}", f"POST /values {kind}, {size:,} points/request{seq}", kind, size
                )

    # --- preload (raw SQL, not timed as a case)

    def preload_overlapping(self, sid: int, points: int, revisions: int) -> None:
        conn = self.conn
        kts = [datetime(2019, 12, 1, tzinfo=UTC) + timedelta(days=r) for r in range(revisions)][::-1]
        bids = [
            conn.execute(
                "INSERT INTO batches_table (series_id, workflow_id, known_time) VALUES (%s, 'bench-preload', %s) "
                "RETURNING batch_id",
                (sid, kt),
            ).fetchone()[0]
            for kt in kts
        ]
        step = max(1, 1_000_000 // revisions)
        for lo in range(0, points, step):
            hi = min(points, lo + step)
            # rows generated in key order (valid_time, known_time DESC): appends to the unique index
            conn.execute(
                "INSERT INTO overlapping (batch_id, series_id, valid_time, known_time, change_time, value) "
                "SELECT b.batch_id, %(sid)s, %(t0)s::timestamptz + i * interval '1 minute', b.kt, b.kt, "
                "       ((i * 7919 + b.batch_id * 104729) %% 100000) / 37.0 "
                "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i "
                "CROSS JOIN LATERAL unnest(%(bids)s::bigint[], %(kts)s::timestamptz[]) AS b(batch_id, kt)",
                {"sid": sid, "t0": T0, "lo": lo, "hi": hi, "bids": bids, "kts": kts},
            )
            conn.commit()

    def preload_flat(self, sid: int, points: int) -> None:
        step = 1_000_000
        for lo in range(0, points, step):
            self.conn.execute(
                "INSERT INTO flat (series_id, valid_time, known_time, change_time, value) "
                "SELECT %(sid)s, %(t0)s::timestamptz + i * interval '1 minute', %(kt)s, %(kt)s, "
                "       ((i * 7919) %% 100000) / 37.0 "
                "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i",
                {"sid": sid, "t0": T0, "kt": datetime(2019, 12, 1, tzinfo=UTC), "lo": lo, "hi": min(points, lo + step)},
            )
            self.conn.commit()

    def preload(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        print("preloading with INSERT ... SELECT generate_series (not timed as a case)", flush=True)
        self.read_series: dict[int, int] = {}
        for size in cfg.read_sizes:
            sid = self.series(f"read_latest_{size}", True)
            self.preload_overlapping(sid, size, cfg.revisions)
            self.read_series[size] = sid
        self.versions_points = max(1, cfg.versions_rows // cfg.revisions)
        self.versions_series = self.series(f"read_versions_{cfg.versions_rows}", True)
        self.preload_overlapping(self.versions_series, self.versions_points, cfg.revisions)
        have = self.count_rows("overlapping")
        if have < cfg.big_rows:
            sid = self.series("filler_overlapping", True)
            self.preload_overlapping(sid, (cfg.big_rows - have) // cfg.revisions + 1, cfg.revisions)
        self.correct_flat_series = self.series("correct_flat", False)
        have = self.count_rows("flat")
        self.correct_flat_points = max(cfg.big_rows - have, 1_000)
        self.preload_flat(self.correct_flat_series, self.correct_flat_points)
        self.conn.autocommit = True
        self.conn.execute("VACUUM ANALYZE")  # autovacuum may be off: give the planner statistics
        try:
            self.conn.execute("CHECKPOINT")  # so no preload checkpoint runs during measurements
        except psycopg.Error:
            pass
        self.conn.autocommit = False
        self.table_rows = {t: self.count_rows(t) for t in ("flat", "overlapping")}
        print(
            f"  done in {time.perf_counter() - t0:.0f}s: flat {self.table_rows['flat']:,} rows, "
            f"overlapping {self.table_rows['overlapping']:,} rows",
            flush=True,
        )

    def bench_growth(self) -> None:
        size = max(self.cfg.insert_sizes)
        for kind in ("flat", "overlapping"):
            rows = self.count_rows(kind)
            self.insert_case(
                f"growth_insert_{kind}",
                f"POST /values {kind}, {size:,} points/request, table of {rows:,} rows",
                kind,
                size,
                {"table_rows": rows},
            )

    # --- 2. reads

    def read_case(self, key: str, name: str, sid: int, expect: int, mode: read.Mode, rss: bool) -> None:
        path = f"/values?series_id={sid}" + ("&versions=true" if mode is read.Mode.VERSIONS else "")
        raw_req = Client.encode("GET", path)
        query, params = read.build_query(True, read.ReadSpec(mode=mode))
        params["series_id"] = sid
        counted = sql.SQL("SELECT count(value) FROM ({}) q").format(query)
        per_rep = max(1, min(50, self.cfg.rep_rows // expect))
        keep = self.cfg.smoke  # smoke: parse and check every document; full: drain without keeping

        def check(reply: Any) -> None:
            if reply.status != 200:
                raise RuntimeError(f"GET {path} -> {reply.status}: {reply.body[:300]!r}")
            if keep:
                doc = orjson.loads(reply.body)
                ok = doc["count"] == expect == len(doc["data"])
            else:  # a buffered document leads with its count, a streamed one ends with it
                ok = (reply.body.startswith(b'{"count":%d,' % expect) and reply.body.endswith(b"]}")) or (
                    reply.body.startswith(b'{"data":[') and reply.body.endswith(b'],"count":%d}' % expect)
                )
            if not ok:
                raise RuntimeError(f"GET {path}: unexpected document {reply.body[:200]!r}...")

        self.http.send(raw_req, keep=keep)  # warm-up
        runs: list[dict[str, Any]] = []
        rss_growth: list[float] = []

        def api_rep() -> float:
            wall = cpu = 0.0
            peak = None
            for _ in range(per_rep):
                if rss:
                    with PeakRss(self.server.pid) as peak:
                        reply = self.http.send(raw_req, keep=keep)
                    rss_growth.append(peak.growth / MB)
                else:
                    reply = self.http.send(raw_req, keep=keep)
                check(reply)
                wall += reply.wall
                cpu += reply.client_cpu
            runs.append(
                {
                    "client": "python-socket",
                    "requests": per_rep,
                    "seconds": wall,
                    "client_cpu_s": cpu,
                    "bytes_per_request": reply.nbytes,
                    **(
                        {"rss_base_mb": peak.base / MB, "rss_peak_mb": peak.peak / MB, "hwm_reset": peak.hwm_reset}
                        if peak
                        else {}
                    ),
                }
            )
            return per_rep * expect / wall

        in_db: list[float] = []
        fetched: list[float] = []

        def raw_rep() -> float:
            t = 0.0
            for _ in range(per_rep):
                t0 = time.perf_counter()
                got = self.conn.execute(counted, params).fetchone()[0]
                t += time.perf_counter() - t0
                self.conn.commit()
                assert got == expect, (got, expect)
            in_db.append(per_rep * expect / t)
            t0 = time.perf_counter()
            n = 0
            with self.conn.cursor() as cur:
                for _ in cur.stream(query, params, binary=True, size=CHUNK_ROWS):
                    n += 1
            self.conn.commit()
            assert n == expect, (n, expect)
            fetched.append(n / (time.perf_counter() - t0))
            return in_db[-1]

        api, raw = self.reps(key, api_rep, raw_rep)
        extra: dict[str, Any] = {
            "rows": expect,
            "load": runs,
            "usage": self.usages[key],
            "psycopg_fetch_rows_per_s": summary(fetched),
            "query": query.as_string(self.conn),
        }
        if rss:
            extra["rss_growth_mb"] = rss_growth
        self.report.add(
            Case(key, name, "rows/s", summary(api), summary(raw), "in-database count(value) of the same query", extra)
        )
        f = summary(fetched)
        print(
            f"    psycopg fetch (cur.stream, binary): {fmt(f['median'])} rows/s"
            + (f"; peak RSS growth {max(rss_growth):.1f} MB" if rss else ""),
            flush=True,
        )

    def bench_reads(self) -> None:
        big = max(self.cfg.read_sizes)
        for size in self.cfg.read_sizes:
            self.read_case(
                f"read_latest_{size}",
                f"GET /values latest, {size:,} points ({self.cfg.revisions} revisions each)",
                self.read_series[size],
                size,
                read.Mode.LATEST,
                rss=size == big,
            )
        rows = self.versions_points * self.cfg.revisions
        self.read_case(
            f"read_versions_{self.cfg.versions_rows}",
            f"GET /values versions=true, {rows:,} rows",
            self.versions_series,
            rows,
            read.Mode.VERSIONS,
            rss=False,
        )

    # --- 3. corrections

    def correct_case(self, kind: str, sid: int, points: int, n: int) -> None:
        key = f"correct_{kind}_{n}"
        nbodies = max(1, min(1_000, 100_000 // n, points // n))
        stride = max(n, points // nbodies)
        starts = [j * stride for j in range(nbodies)]
        bodies = [corrections_body(sid, s, n, seed=j + 1) for j, s in enumerate(starts)]
        out = self.api("PUT", "/values", bodies[0])
        assert len(out["updated"]) == n, out
        runs: list[dict[str, float]] = []
        table_rows = self.count_rows(kind)
        overlapping = kind == "overlapping"

        def api_rep() -> float:
            r = load.run(
                self.server.port, [f"PUT /values {b.decode()}" for b in bodies], 1, self.cfg.duration, self.client
            )
            runs.append(r)
            return r["requests"] * n / r["seconds"]

        items_per_body = [
            [
                fix.Correction(
                    series_id=sid, overlapping=overlapping, valid_time=t, fields={"value": v, "changed_by": "bench"}
                )
                for t, v in zip(valid_times(n, s), values(n, j + 7))
            ]
            for j, s in enumerate(starts)
        ]
        per_rep = max(1, min(len(bodies) * 4, self.cfg.rep_rows // (10 * n)))
        cursor = [0]

        def raw_rep() -> float:
            t0 = time.perf_counter()
            for _ in range(per_rep):
                items = items_per_body[cursor[0] % len(items_per_body)]
                cursor[0] += 1
                stored = fix.apply_corrections(self.conn, items)
                self.conn.commit()
                assert len(stored) == n
            return per_rep * n / (time.perf_counter() - t0)

        api, raw = self.reps(key, api_rep, raw_rep)
        self.report.add(
            Case(
                key,
                f"PUT /values {kind}, {n} correction{'s' if n > 1 else ''}/request (table of {table_rows:,} rows)",
                "corrections/s",
                summary(api),
                summary(raw),
                "timedb.db.corrections.apply_corrections, no HTTP",
                {"table_rows": table_rows, "load": runs, "usage": self.usages[key]},
            )
        )

    def bench_corrections(self) -> None:
        big = max(self.cfg.read_sizes)
        for n in self.cfg.corrections:
            self.correct_case("flat", self.correct_flat_series, self.correct_flat_points, n)
            self.correct_case("overlapping", self.read_series[big], big, n)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p.add_argument(
        "--dsn",
        default=os.environ.get("TIMEDB_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin DSN; a fresh database is created on its server (env TIMEDB_BENCH_DSN)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, checks every reply (CI)")
    p.add_argument("--insert-sizes", type=ints, help="points per POST /values (default 100,10000,100000)")
    p.add_argument("--read-sizes", type=ints, help="points per latest read (default 1000,100000,1000000)")
    p.add_argument("--versions-rows", type=int, help="rows of the versions=true read (default 100000)")
    p.add_argument("--revisions", type=int, help="revisions per valid_time of the read series (default 10)")
    p.add_argument("--series", type=int, help="series in the catalogue (default 10000)")
    p.add_argument("--clients", type=int, help="concurrent clients for the series endpoints (default 16)")
    p.add_argument("--corrections", type=ints, help="corrections per PUT /values (default 1,100)")
    p.add_argument(
        "--big-rows",
        type=int,
        help="rows each fact table holds before the growth and correction cases (default 10000000)",
    )
    p.add_argument("--memory-body-mb", type=float, help="size of the POST whose peak memory is measured (default 100)")
    p.add_argument("--resample-points", type=int, help="15-minute points of the resample case (default 1000000)")
    p.add_argument("--query-series", type=int, help="series of the POST /values/query case (default 1000)")
    p.add_argument("--query-points", type=int, help="points per series of the query case (default 1000)")
    p.add_argument("--bulk-series", type=int, help="overlapping series of the bulk load (default 1000)")
    p.add_argument("--bulk-points", type=int, help="rows per series of the bulk load (default 1000)")
    p.add_argument("--bulk-new-series", type=int, help="series of POST /series/bulk (default 10000)")
    p.add_argument("--skip-points", type=int, help="points re-sent with skip_unchanged (default 100000)")
    p.add_argument("--reps", type=int, help="repetitions per case (default 3)")
    p.add_argument("--duration", type=float, help="seconds per repetition of a request loop (default 5)")
    p.add_argument("--rep-rows", type=int, help="rows per repetition of small-request cases (default 200000)")
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator for request loops (auto: wrk when installed)",
    )
    p.add_argument("--json", dest="json_out", help="write the results as JSON to this path")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--server-log", help="uvicorn output (default: a temporary file)")
    p.add_argument("--keep-db", action="store_true", help="do not drop the benchmark database")
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    a = p.parse_args(argv)
    cfg = Config.smoke_config(a.dsn) if a.smoke else Config(dsn=a.dsn)
    for name in (
        "insert_sizes",
        "read_sizes",
        "versions_rows",
        "revisions",
        "series",
        "clients",
        "corrections",
        "big_rows",
        "reps",
        "duration",
        "rep_rows",
        "memory_body_mb",
        "resample_points",
        "query_series",
        "query_points",
        "bulk_series",
        "bulk_points",
        "bulk_new_series",
        "skip_points",
    ):
        value = getattr(a, name)
        if value is not None:
            setattr(cfg, name, value)
    cfg.client, cfg.json_out, cfg.port, cfg.keep_db = a.client, a.json_out, a.port, a.keep_db
    cfg.server_log, cfg.only = a.server_log, a.only
    unknown = set(cfg.only) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown sections {sorted(unknown)}")
    if cfg.client == "wrk" and not load.have_wrk():
        p.error("--client wrk: wrk is not installed (apt-get install wrk)")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.perf_counter()
    db = Database(cfg.dsn)
    db.create()
    port = cfg.port or free_port()
    log_path = cfg.server_log or tempfile.mkstemp(prefix="timedb-bench-server-", suffix=".log")[1]
    server = Server(db.dsn, port, log_path)
    report = Report(cfg)
    bench = None
    try:
        server.start()
        bench = Bench(cfg, db, server, report)
        print(f"database {db.name}, server pid {server.pid} on port {port}, load client: {bench.client}", flush=True)
        only = set(cfg.only)
        bench.load_series()
        if "series" in only:
            bench.bench_series()
        if "inserts" in only:
            bench.bench_inserts()
        if only & {"growth", "reads", "corrections", "firstbyte", "backtest"}:
            bench.preload()
        if "growth" in only:
            bench.bench_growth()
        if "reads" in only:
            # a fresh server process: the RSS growth of the big read is then not hidden in heap
            # that earlier 100,000-point request bodies left behind
            bench.restart_server()
            bench.report.notes.append("the server was restarted before the reads (fresh heap for the RSS case)")
            bench.bench_reads()
        if "firstbyte" in only:  # before the corrections, which add rows to the read series
            faults.first_byte(bench)
        if "corrections" in only:
            bench.bench_corrections()
        if "backtest" in only:
            backtest.day_ahead(bench)
            backtest.resample(bench)
            bench.restart_server()  # a fresh heap for the RSS of the query case
            backtest.query_series(bench)
        if "bulk" in only:
            bench.restart_server()  # a fresh heap for the RSS of the bulk loads
            bulk.load_run(bench)
            bulk.series_bulk(bench)
            bulk.skip_unchanged(bench)
        if "memory" in only:
            bench.restart_server()  # a fresh heap: the growth is the request's own
            faults.memory_post(bench)
        if "auth" in only:  # last: while its token exists, the main server wants tokens too
            auth.overhead(bench)
    finally:
        if bench is not None:
            bench.http.close()
            bench.conn.close()
        server.stop()
        if not cfg.keep_db:
            db.drop()
    report.judge()
    print()
    print(report.table())
    elapsed = time.perf_counter() - started
    print(
        f"\n{len(report.cases)} cases in {elapsed:.0f}s; load client: {bench.client}; machine: {os.cpu_count()} cores",
        flush=True,
    )
    if cfg.json_out:
        meta = {
            "date": datetime.now(UTC).isoformat(),
            "elapsed_s": elapsed,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_client": bench.client,
            "postgres": postgres_version(cfg.dsn),
            "loadavg_end": os.getloadavg(),
        }
        Path(cfg.json_out).write_text(json.dumps(report.to_json(meta), indent=1, default=str))
        print(f"results: {cfg.json_out}")
    return 0


def postgres_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
