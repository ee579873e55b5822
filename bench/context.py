"""What a case group is given and what it declares.

`Bench` is the run as the cases see it: the config, the database and the server, the report, one
HTTP connection and one database connection, and the helpers every case uses (alternating API and
raw repetitions, request loops, checked requests). `Group` is a case group: its section for
`--only`, the function that measures it and its targets (bench/targets.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql

from bench import load
from bench.config import Config
from bench.httpclient import Client, Reply, Request
from bench.preload import Preloaded, preload
from bench.procstat import Usage
from bench.report import Case, Report, Target, summary
from bench.server import Database, Server


def no_targets(cfg: Config) -> list[Target]:
    return []


@dataclass(frozen=True)
class Group:
    section: str  # its name for --only
    run: Callable[[Bench], None]
    targets: Callable[[Config], list[Target]] = no_targets


class Bench:
    def __init__(self, cfg: Config, db: Database, server: Server, report: Report) -> None:
        self.cfg, self.db, self.server, self.report = cfg, db, server, report
        self.http = Client(server.port)
        # the raw side runs the server's queries as the server does: without JIT (timedb.db.pool)
        self.conn = psycopg.connect(db.dsn, options="-c jit=off")
        self.client = cfg.client if cfg.client != "auto" else ("wrk" if load.have_wrk() else "python")
        self.usages: dict[str, list[dict[str, float]]] = {}
        self._preloaded: Preloaded | None = None

    def close(self) -> None:
        self.http.close()
        self.conn.close()

    def restart_server(self) -> None:
        """A fresh server process, so no earlier request's heap hides a case's memory growth."""
        self.http.close()
        self.server.stop()
        self.server.start()
        self.http = Client(self.server.port)

    def preloaded(self) -> Preloaded:
        """The preloaded series (bench/preload.py), made by the first case that needs them."""
        if self._preloaded is None:
            self._preloaded = preload(self)
        return self._preloaded

    # --- requests

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """One request with a JSON body (bytes or an object), its JSON answer; not timed."""
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

    def counted(self, req: Request, expect: int) -> Reply:
        """One request whose JSON document must hold `expect` records, body drained: the count
        leads a buffered document and ends a streamed one."""
        reply = self.http.send(req, keep=False)
        complete = reply.body.startswith(b'{"count":%d,' % expect) or reply.body.endswith(b',"count":%d}' % expect)
        if reply.status != 200 or not complete:
            raise RuntimeError(
                f"{req.method} {req.path} -> {reply.status}: {reply.body[:200]!r}...{reply.body[-80:]!r}"
            )
        return reply

    def loop(
        self,
        lines: list[str],
        connections: int = 1,
        runs: list[dict[str, Any]] | None = None,
        port: int | None = None,
        authorization: str | None = None,
    ) -> float:
        """Requests/s of a request loop (bench/load.py) over `lines` for cfg.duration seconds;
        its numbers are appended to `runs`."""
        r = load.run(port or self.server.port, lines, connections, self.cfg.duration, self.client, authorization)
        if runs is not None:
            runs.append(r)
        return float(r["requests"] / r["seconds"])

    # --- measuring

    def reps(
        self, key: str, api_rep: Callable[[], float], raw_rep: Callable[[], float] | None = None
    ) -> tuple[list[float], list[float]]:
        """Alternate API and raw repetitions so both see the same table sizes and machine load."""
        api_rates: list[float] = []
        raw_rates: list[float] = []
        for _ in range(self.cfg.reps):
            u = Usage(self.server.pid).start()
            api_rates.append(api_rep())
            self.usages.setdefault(key, []).append(u.stop())
            if raw_rep is not None:
                raw_rates.append(raw_rep())
        return api_rates, raw_rates

    def add_case(
        self,
        key: str,
        name: str,
        unit: str,
        api: list[float],
        raw: list[float] | None = None,
        raw_name: str | None = None,
        extra: dict[str, Any] | None = None,
        usage: bool = True,
    ) -> Case:
        """Record a case measured with reps(), with the CPU the server and the client used."""
        info = {**(extra or {}), **({"usage": self.usages.get(key, [])} if usage else {})}
        return self.report.add(Case(key, name, unit, summary(api), summary(raw) if raw else None, raw_name, info))

    def count_rows(self, table: str) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        self.conn.commit()
        return int(row[0])
