"""Time to the first and to the last byte of reads of the largest read series (cfg.revisions
revisions per valid_time: 10 M rows at default sizes): latest (1 M records), versions and audit
(10 M records each). Raw: the first and last row of the same query streamed with psycopg, and
(the server's query before the reliability issue) with count(*) OVER () leading every row."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from bench import raw
from bench.context import Bench, Group
from bench.httpclient import Request
from bench.procstat import MB
from timedb.db import read_query as read

FLAGS = {read.Mode.LATEST: "", read.Mode.VERSIONS: "&versions=true", read.Mode.AUDIT: "&include_updates=true"}


def run(bench: Bench) -> None:
    size = max(bench.cfg.read_sizes)
    sid = bench.preloaded().read_series[size]
    rows = size * bench.cfg.revisions
    out: dict[str, Any] = {}
    for mode, flag in FLAGS.items():
        expect = size if mode is read.Mode.LATEST else rows
        reply = bench.counted(Request("GET", f"/values?series_id={sid}{flag}"), expect)
        query, params = read.build_query(True, read.ReadSpec(mode=mode))
        params["series_id"] = sid
        raw_first, raw_total, _ = raw.stream_seconds(bench.conn, query, params)
        counted = sql.SQL("SELECT count(*) OVER (), q.* FROM ({}) q").format(query)
        old_first, _, _ = raw.stream_seconds(bench.conn, counted, params, first_only=True)
        out[mode.value] = {
            "records": expect,
            "api_first_byte_s": reply.first_byte,
            "api_total_s": reply.wall,
            "bytes": reply.nbytes,
            "raw_first_row_s": raw_first,
            "raw_total_s": raw_total,
            "raw_first_row_with_count_over_s": old_first,
        }
        print(
            f"  GET /values{flag or ' (latest)'} of {expect:,} records ({rows:,} rows stored): first byte "
            f"{reply.first_byte:.2f} s, last {reply.wall:.1f} s ({reply.nbytes / MB:,.0f} MB); raw: first row "
            f"{raw_first:.2f} s, last {raw_total:.1f} s; with count(*) OVER () first row {old_first:.1f} s",
            flush=True,
        )
    bench.report.extra["first_byte"] = out


GROUP = Group("firstbyte", run)
