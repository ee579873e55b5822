"""Reads on a real streaming replica (issue 14, TIMEDB_READ_DSN).

Each test starts a throwaway primary (tests/clusters.py), creates the timedb tables on it and
makes a hot standby of it with `pg_basebackup -R`, started as a server of its own. Which server
answered is proven with data, not with the code under test: replay on the standby is paused
with pg_wal_replay_pause(), a write goes to the primary, and an eventual read answers what the
standby holds while a strong one answers the write. Every wait is bounded; traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.clusters import Cluster, Standby, standby_binaries_missing
from tests.helpers import LOCAL, assert_problem, insert, make_series
from tests.processes import output_of, server_env, start_server, stop_process
from timedb.app import create_app
from timedb.db import replica as replica_module
from timedb.db.schema import create_tables
from timedb.settings import Settings

pytestmark = pytest.mark.processes

VT = "2025-01-01T00:00:00+00:00"
STRONG = {"consistency": "strong"}
# the monitor checks the replica every second: a change shows within a few
NOTICED = 15.0
BIN = Path(sys.executable).parent
TIMEDB = [str(BIN / "timedb")] if (BIN / "timedb").exists() else [sys.executable, "-m", "timedb"]


@dataclass
class Pair:
    """A primary, its streaming standby, and the DSNs of the timedb database on each."""

    primary: Cluster
    standby: Standby
    dsn: str
    read_dsn: str


@pytest.fixture
def pair() -> Iterator[Pair]:
    missing = standby_binaries_missing()
    if missing:
        pytest.skip(f"no streaming replica can be made here: {missing}")
    # not under pytest's tmp_path: a pytest starting meanwhile makes its parent 0700 again, which
    # the servers' own user (when the tests run as root) could then not enter to restart
    root = Path(tempfile.mkdtemp(prefix="timedb-replica-", dir="/tmp"))
    try:
        with Cluster(root / "primary") as primary:
            dsn = primary.database("timedb")
            create_tables(dsn)
            with Standby(root / "standby", primary) as standby:
                standby.wait_caught_up()
                yield Pair(primary, standby, dsn, standby.dsn_for(str(conninfo_to_dict(dsn)["dbname"])))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def serve(pair: Pair) -> Callable[..., Any]:
    """The app on the pair (a test client whose `with` runs the lifespan); settings: overrides."""

    def make(**settings: Any) -> Any:
        app = create_app(Settings(dsn=pair.dsn, read_dsn=pair.read_dsn, validate_responses=True, **settings))
        return app.test_client(**LOCAL)

    return make


def wait_until(check: Callable[[], Any], timeout: float = NOTICED, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if last := check():
            return last
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s (last: {last!r})")


def values(client: Any, sid: int, **params: Any) -> list[float]:
    resp = client.get("/values", params={"series_id": sid, **params})
    assert resp.status_code == 200, resp.text
    return [row["value"] for row in resp.json()["data"]]


def replica_state(client: Any) -> dict[str, Any]:
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ready"
    return dict(resp.json()["replica"])


def replica_warnings(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name == "timedb" and r.levelno >= logging.WARNING and "replica" in r.getMessage()
    ]


def replica_lines(output: str, level: str) -> list[str]:
    """The server's log lines about the replica at this level (INFO: at start, and when back)."""
    return [line for line in output.splitlines() if line.startswith(f"{level}:") and "read replica" in line]


def test_eventual_reads_answer_what_the_replica_holds_and_strong_ones_the_primary(pair, serve):
    with serve() as client:
        sid = make_series(client, name="meter", labels={"site": "Gotland"})
        insert(client, sid, [(VT, 1.0)])
        pair.standby.wait_caught_up()
        assert values(client, sid) == values(client, sid, **STRONG) == [1.0]

        pair.standby.pause_replay()
        insert(client, sid, [(VT, 2.0)])  # (a write: on the primary, whatever the replica)
        other = make_series(client, name="meter", labels={"site": "Lillgrund"})

        assert values(client, sid) == [1.0]
        assert values(client, sid, consistency="eventual") == [1.0]
        assert values(client, sid, **STRONG) == [2.0]
        csv = {
            c: client.get("/values", params={"series_id": sid, "format": "csv", "consistency": c})
            for c in ("eventual", "strong")
        }
        assert csv["eventual"].text.splitlines()[1:] == [f"{VT},,1"]
        assert csv["strong"].text.splitlines()[1:] == [f"{VT},,2"]

        query = {"filter": {"name": "meter"}}
        eventual = client.post("/values/query", json=query).json()
        strong = client.post("/values/query", json=query, params=STRONG).json()
        assert [(r["series_id"], r["value"]) for r in eventual["data"]] == [(sid, 1.0)]
        assert [(r["series_id"], r["value"]) for r in strong["data"]] == [(sid, 2.0)]

        # the catalogue: the series made while replay is paused exists on the primary only
        assert_problem(client.get(f"/series/{other}"), 404, "/problems/series-not-found")
        assert client.get(f"/series/{other}", params=STRONG).json()["series_id"] == other
        assert client.get("/series/count").json() == {"count": 1}
        assert client.get("/series/count", params=STRONG).json() == {"count": 2}
        assert [s["series_id"] for s in client.get("/series").json()] == [sid]
        assert [s["series_id"] for s in client.get("/series", params=STRONG).json()] == [sid, other]
        labels = {"label_key": "site"}
        assert client.get("/series/labels", params=labels).json()["values"] == ["Gotland"]
        assert client.get("/series/labels", params={**labels, **STRONG}).json()["values"] == ["Gotland", "Lillgrund"]

        # the server's read pool is connected to the standby
        with psycopg.connect(pair.read_dsn, autocommit=True) as conn:
            sessions = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'timedb' AND datname = current_database()"
            ).fetchone()
        assert sessions is not None and sessions[0] >= 1

        pair.standby.resume_replay()
        pair.standby.wait_caught_up()
        assert values(client, sid) == [2.0]
        assert client.get(f"/series/{other}").status_code == 200


def test_readyz_shows_the_replica_streaming_then_paused_with_its_lag(pair, serve):
    with serve() as client:
        assert replica_state(client) == {"state": "streaming", "lag_seconds": 0.0, "reads": True}
        sid = make_series(client)
        # (replayed before the pause: until a standby has replayed a transaction since it started,
        # its lag is unknown)
        pair.standby.wait_caught_up()
        pair.standby.pause_replay()
        insert(client, sid, [(VT, 1.0)])
        states: list[dict] = []
        try:
            paused = wait_until(
                lambda: (
                    (s := replica_state(client), states.append(s))[0]["state"] == "paused"
                    and (s["lag_seconds"] or 0) > 0
                    and s
                )
            )
        except pytest.fail.Exception:
            pytest.fail(f"the replica never showed paused with a lag; last states: {states[-3:]}")
        assert paused["reads"] is True  # (no lag limit: a paused replica still answers reads)
        pair.standby.resume_replay()
        pair.standby.wait_caught_up()
        streaming = {"state": "streaming", "lag_seconds": 0.0, "reads": True}
        wait_until(lambda: replica_state(client) == streaming)
        # a restarted standby streams from the start of a WAL segment: on an idle primary it has
        # received less than it replayed, which is no lag either (whatever the monitor sees
        # while the standby is down, it never reports a lag)
        pair.standby.restart()
        restarted, seen = time.monotonic(), []
        # (samples for 4 s at least, the monitor checking every second, until it streams again)
        while time.monotonic() - restarted < NOTICED and (time.monotonic() - restarted < 4 or seen[-1] != streaming):
            seen.append(replica_state(client))
            time.sleep(0.2)
        # (down: unreachable; up before its WAL receiver: disconnected; neither with a lag)
        assert all(s["lag_seconds"] in (None, 0.0) for s in seen) and seen[-1] == streaming, seen


def test_a_replica_lagging_more_than_the_limit_is_skipped_until_it_catches_up(pair, serve, caplog):
    with caplog.at_level(logging.INFO, logger="timedb"), serve(read_max_lag=0.5) as client:
        sid = make_series(client)
        insert(client, sid, [(VT, 1.0)])
        pair.standby.wait_caught_up()
        pair.standby.pause_replay()
        insert(client, sid, [(VT, 2.0)])
        time.sleep(0.6)  # (the write's age on the paused standby passes the limit)
        skipped = wait_until(lambda: (s := replica_state(client))["reads"] is False and s)
        assert skipped["state"] == "paused" and skipped["lag_seconds"] > 0.5
        assert values(client, sid) == [2.0]  # the primary answers: the replica would say 1.0
        pair.standby.resume_replay()
        wait_until(lambda: replica_state(client)["reads"])
        assert values(client, sid) == [2.0]
    warnings = replica_warnings(caplog.records)
    assert len(warnings) == 1 and "TIMEDB_READ_MAX_LAG" in warnings[0], warnings


def test_a_stopped_replica_leaves_reads_to_the_primary_until_it_is_back(pair):
    """A real server process: its output shows one warning for the outage and one line when the
    replica is back (not a line per request, nor per reconnect attempt of the pool)."""
    proc, url = start_server([*TIMEDB, "api", "--port", "0"], server_env(pair.dsn, TIMEDB_READ_DSN=pair.read_dsn))
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert replica_state(http)["state"] == "streaming"
            sid = make_series(http)
            insert(http, sid, [(VT, 1.0)])
            pair.standby.wait_caught_up()

            pair.standby.stop()
            for _ in range(5):  # (the replica's pool may wait up to a second before the first falls back)
                assert values(http, sid) == [1.0]
            assert wait_until(lambda: replica_state(http)) == {
                "state": "unreachable",
                "lag_seconds": None,
                "reads": False,
            }
            took = []
            for _ in range(10):
                t0 = time.monotonic()
                assert values(http, sid) == [1.0]
                took.append(time.monotonic() - t0)
            assert max(took) < replica_module.FALLBACK_AFTER, took  # no read waits for the replica
            insert(http, sid, [(VT, 2.0)])
            assert values(http, sid) == [2.0]  # (writes and reads: the primary)
            time.sleep(3 * replica_module.CHECK_INTERVAL)  # monitor checks fail meanwhile: no more lines
            assert len(replica_lines(output_of(proc), "WARNING")) == 1, output_of(proc)[-3000:]

            pair.standby.start()
            wait_until(lambda: replica_state(http) == {"state": "streaming", "lag_seconds": 0.0, "reads": True}, 30)
            pair.standby.wait_caught_up()
            pair.standby.pause_replay()
            insert(http, sid, [(VT, 3.0)])
            assert values(http, sid) == [2.0]  # the replica's again
            assert values(http, sid, **STRONG) == [3.0]
    finally:
        output = stop_process(proc)
    warning, back = replica_lines(output, "WARNING"), replica_lines(output, "INFO")[1:]
    assert len(warning) == 1 and "unreachable (connection" in warning[0], warning  # (the driver's reason)
    assert len(back) == 1 and "again" in back[0], back
    assert "timedb-read" not in output  # (psycopg_pool's warnings of every reconnect attempt stay out)
    assert "Traceback" not in output


def test_a_replica_away_at_start_does_not_stop_the_server(make_database, caplog):
    read_dsn = f"postgresql://postgres@127.0.0.1:{_closed_port()}/timedb"  # (nothing listens there)
    settings = Settings(dsn=make_database(), read_dsn=read_dsn)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="timedb"), create_app(settings).test_client(**LOCAL) as client:
        assert time.monotonic() - t0 < replica_module.FIRST_CHECK_WAIT
        assert replica_state(client) == {"state": "unreachable", "lag_seconds": None, "reads": False}
        sid = make_series(client)
        insert(client, sid, [(VT, 1.0)])
        assert values(client, sid) == values(client, sid, **STRONG) == [1.0]
        time.sleep(2 * replica_module.CHECK_INTERVAL)
    warnings = replica_warnings(caplog.records)
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "refused" in warnings[0].lower(), warnings


def test_a_malformed_read_dsn_stops_the_start_with_one_line(make_database):
    env = server_env(make_database(), TIMEDB_READ_DSN="postgresql://reader:s3cret@[bad/timedb")
    with pytest.raises(RuntimeError) as failed:
        start_server([*TIMEDB, "api", "--port", "0"], env, timeout=60)
    output = str(failed.value)
    assert "TIMEDB_READ_DSN is not a valid connection string" in output, output
    assert "Traceback" not in output and "s3cret" not in output, output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
