"""Small factories and assertions shared by the tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx

PROBLEM = "application/problem+json"
# the address test clients call from: a client on the server's own machine, which a server
# without access tokens serves (Starlette's default, "testclient", is no address at all)
LOOPBACK = ("127.0.0.1", 50000)
# keyword arguments of app.test_client() for such a client, which also names the server as a
# local one (Host: 127.0.0.1), as local clients must while no token exists
LOCAL = {"client": LOOPBACK, "base_url": "http://127.0.0.1"}


def assert_problem(resp: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    """resp is an RFC 9457 problem with this status (and type); returns the body."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers["content-type"]
    body = resp.json()
    assert body["status"] == status
    assert body["title"]
    if type_ is not None:
        assert body["type"] == type_, body
    text = resp.text.lower()
    for leak in ("traceback", "psycopg", "select ", "insert into", 'relation "', 'constraint "'):
        assert leak not in text, body
    return body


def make_series(client: Any, **overrides: Any) -> int:
    """Create a series through the API; returns its id."""
    body = {"name": "series", "unit": "MW", "labels": {}, "overlapping": False, **overrides}
    resp = client.post("/series", json=body)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["series_id"])


def insert(
    client: Any, series_id: int, points: list[tuple[str, float | None]], known_time: str | None = None, **extra: Any
) -> dict[str, Any]:
    """POST /values for [(valid_time, value), ...]; asserts 200."""
    body: dict[str, Any] = {
        "series_id": series_id,
        "data": [{"valid_time": vt, "value": v} for vt, v in points],
        **extra,
    }
    if known_time is not None:
        body["known_time"] = known_time
    resp = client.post("/values", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def read(client: Any, **params: Any) -> list[dict[str, Any]]:
    """GET /values; asserts 200 and a consistent count; returns data."""
    resp = client.get("/values", params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == len(body["data"])
    return body["data"]


def parallel(base_url: str, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
    """Run each call on its own connection to a live server, all released at once."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            barrier.wait(timeout=30)
            return call(c)

    with ThreadPoolExecutor(max_workers=len(calls)) as executor:
        return list(executor.map(run, calls))


def posts(base_url: str, path: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body to path at once (parallel)."""
    return parallel(base_url, [partial(_post, path=path, body=b) for b in bodies])


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body)


class TableEmptier:
    """Empties every timedb table but the settings, identities starting at 1 again, in one round
    trip on a connection kept open (the `clean_db` fixture runs it before nearly every test).

    DELETE, not TRUNCATE: on tables of a few rows it is ~7x faster (TRUNCATE makes and syncs new
    files for every table and index).
    """

    def __init__(self, dsn: str) -> None:
        import psycopg

        from timedb.db.schema import TABLES

        self.dsn, self.conn = dsn, psycopg.connect(dsn, autocommit=True)
        sequences = self.conn.execute(
            "SELECT s FROM (SELECT pg_get_serial_sequence(format('%I', table_name), column_name) AS s"
            "  FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES') AS c"
            # (partitions share their parent's identity from PostgreSQL 17 on, without a sequence of their own)
            " WHERE s IS NOT NULL"
        ).fetchall()
        # children before parents (TABLES lists parents first)
        deletes = [f"DELETE FROM {t}" for t in reversed(TABLES) if t != "timedb_settings"]
        restarts = ", ".join(f"setval('{name}', 1, false)" for (name,) in sequences)
        self.sql = "; ".join([*deletes, f"SELECT {restarts}"])

    def __call__(self) -> None:
        import psycopg

        try:
            with self.conn.transaction():
                self.conn.execute(self.sql)
        except psycopg.OperationalError:  # (closed, or a test terminated its database's backends)
            self.conn.close()
            self.conn = psycopg.connect(self.dsn, autocommit=True)
            with self.conn.transaction():
                self.conn.execute(self.sql)

    def close(self) -> None:
        self.conn.close()


def empty_tables(dsn: str) -> None:
    """TableEmptier once, for a database other than the session's."""
    emptier = TableEmptier(dsn)
    try:
        emptier()
    finally:
        emptier.close()


def make_partitions(dsn: str, *months: str) -> None:
    """Make the partitions of these months (e.g. "2025-01") of both fact tables ahead of a test
    that compares identity values: a write that makes a partition runs again, and its first
    attempt spends identity values."""
    import psycopg

    firsts = [f"{m}-01T00:00:00+00:00" for m in months]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("flat", "overlapping"):
            conn.execute("SELECT timedb_ensure_partitions(%s::regclass, %s::timestamptz[])", (table, firsts))


def table_rows(dsn: str, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of these tables, in id order: what 'nothing was stored' compares."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}


# ways of naming a series that does not exist (the series "meter" exists, without a label site=x)
UNKNOWN_SERIES = [
    {"series_id": 999},
    {"series_id": 9223372036854775807},
    {"name": "nope"},
    {"name": "meter", "labels": {"site": "x"}},
]
UNKNOWN_SERIES_IDS = ["id", "max-id", "name", "name-labels"]

# the members of an audit record (include_updates=true) without valid_time_end, in the reference's
# order (written here from the spec, not taken from the server's code)
AUDIT_KEYS = "known_time valid_time change_time value changed_by annotation tags batch_id inserted_by".split()
