"""How long the web UI takes to show a long series in headless Chromium: from the request to the
chart's first draw (fetch and JSON parse, then uPlot's draw), as the page measures it itself
(`performance.measure("timedb-ui:render")`, shown in its status line).

    python bench/ui_render.py [--dsn DSN] [--points 100000] [--reps 5]

Makes a fresh database on the DSN's server (dropped afterwards), starts one uvicorn worker, writes
one flat series of `--points` minutely values, and opens the view `--reps` times (each a fresh
navigation of the same browser). Prints each time and the median; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.config import DEFAULT_DSN
from bench.ui_page import serving, show, view_url
from tests.cdp import Browser

START = datetime(2024, 1, 1, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="a PostgreSQL server to make the database on")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    end = START + timedelta(minutes=args.points)
    with serving(args.dsn) as base:
        with httpx.Client(base_url=base, timeout=300) as client:
            sid = client.post("/series", json={"name": "long", "unit": "MW"}).json()["series_id"]
            data = [
                {"valid_time": (START + timedelta(minutes=i)).isoformat(), "value": i % 997} for i in range(args.points)
            ]
            client.post("/values", json={"series_id": sid, "data": data}).raise_for_status()
        url = view_url(base, series=sid, start=START.isoformat(), end=end.isoformat())
        times = []
        with Browser(base + "/ui/", timeout=120) as page:
            for rep in range(args.reps):
                page.goto("about:blank")
                status = show(page, url)
                if status.get("points") != str(args.points):
                    print(f"the page showed {status.get('points')} points, not {args.points}", file=sys.stderr)
                    return 1
                times.append(int(status["ms"]))
                line = page.evaluate("document.getElementById('status').textContent")
                print(f"rep {rep + 1}: {status['ms']} ms  ({line})")
    print(f"{args.points:,} points: median {statistics.median(times):.0f} ms (min {min(times)}, max {max(times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
