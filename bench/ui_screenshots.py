"""The README's screenshots of the web UI (docs/ui/*.png), from a server seeded with a made-up but
realistic week: hourly wind forecasts for one site from two models, issued every 6 hours and
revised as they come closer, the measured production, a corrected forecast value, and a few
other series for the browser.

    python bench/ui_screenshots.py [--dsn DSN] [--out docs/ui]

Makes a fresh database on the DSN's server (dropped afterwards) and one uvicorn worker; run by
hand when the page changes (not a test, not a benchmark: it lives here for bench/ui_page.py).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.config import DEFAULT_DSN
from bench.ui_page import IDLE, serving, show, view_url
from tests.cdp import Browser

T0 = datetime(2025, 3, 10, tzinfo=UTC)
CAPACITY = 420.0  # MW
ISSUES = 16  # forecasts issued every 6 hours from a day before T0
HORIZON = 48  # hours ahead each forecast covers
CORRECTED = T0 + timedelta(days=1, hours=18)
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(days=3)).isoformat()}


def truth(hours: float) -> float:
    wind = 190 + 120 * math.sin(hours / 17) + 60 * math.sin(hours / 5.3 + 1)
    return min(CAPACITY, max(0.0, wind))


def issued(k: int) -> datetime:
    return T0 - timedelta(days=1) + timedelta(hours=6 * k)


def forecast(k: int, phase: float, rng: random.Random) -> list[dict[str, Any]]:
    """Forecast k: off by more the further ahead it looks."""
    data = []
    for lead in range(1, HORIZON + 1):
        valid = issued(k) + timedelta(hours=lead)
        hours = (valid - T0).total_seconds() / 3600
        error = lead / HORIZON * 70 * math.sin(hours / 7 + phase * k) + rng.gauss(0, 3)
        data.append({"valid_time": valid.isoformat(), "value": round(min(CAPACITY, max(0.0, truth(hours) + error)), 1)})
    return data


def seed(client: httpx.Client) -> int:
    """Write the week; returns the id of the series the views show."""

    def series(**body: Any) -> int:
        return int(client.post("/series", json=body).raise_for_status().json()["series_id"])

    def write(sid: int, data: list[dict[str, Any]], known_time: datetime | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"series_id": sid, "data": data}
        if known_time is not None:
            body["known_time"] = known_time.isoformat()
        answer: dict[str, Any] = client.post("/values", json=body).raise_for_status().json()
        return answer

    rng = random.Random(15)
    ids, batches = [], []
    for model, phase in (("ecmwf", 0.9), ("icon", 2.1)):
        description = f"Wind production forecast ({model}), hourly, 48 h ahead"
        ids.append(
            series(
                name="wind_power",
                unit="MW",
                labels={"site": "Gotland", "model": model},
                overlapping=True,
                description=description,
            )
        )
        batches.append([write(ids[-1], forecast(k, phase, rng), issued(k))["batch_id"] for k in range(ISSUES)])
    # the correction goes to the newest forecast of its hour: the latest value there
    newest = max(k for k in range(ISSUES) if issued(k) < CORRECTED)
    measured = series(name="wind_power_measured", unit="MW", labels={"site": "Gotland"}, description="SCADA, hourly")
    hours = range(-24, 24 * 3)
    write(
        measured,
        [
            {"valid_time": (T0 + timedelta(hours=h)).isoformat(), "value": round(truth(h) + rng.gauss(0, 6), 1)}
            for h in hours
        ],
    )
    series(name="solar_power", unit="MW", labels={"site": "Öland"}, description="PV park output")
    series(name="price_day_ahead", unit="EUR/MWh", labels={"zone": "SE3"}, description="Day-ahead auction price")
    series(
        name="load_forecast", unit="MW", labels={"zone": "SE3"}, overlapping=True, description="Consumption forecast"
    )
    for update in (
        {"value": 212.0, "annotation": "Turbine 7 curtailed: capped at available capacity", "tags": ["curtailment"]},
        {"annotation": "Checked against the grid operator's notice", "tags": ["curtailment", "reviewed"]},
    ):
        item = {"series_id": ids[0], "batch_id": batches[0][newest], "valid_time": CORRECTED.isoformat()}
        item["changed_by"] = "ana.berg@example.com"
        client.put("/values", json={"updates": [{**item, **update}]}).raise_for_status()
    return ids[0]


def hover(page: Browser, fraction: float) -> None:
    """Put the mouse over the chart, `fraction` of the way along, so the read-out shows a point."""
    left, top, width, height = page.evaluate(
        "(r => [r.x, r.y, r.width, r.height])(document.querySelector('#chart .u-over').getBoundingClientRect())"
    )
    page.mouse("mouseMoved", left + fraction * width, top + height * 0.4)
    page.wait_for("document.getElementById('readout').textContent")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="a PostgreSQL server to make the database on")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "ui")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with serving(args.dsn) as base, httpx.Client(base_url=base, timeout=60) as client:
        wind = seed(client)
        views = {
            "latest": {"series": wind, **WINDOW},
            "fan": {"series": wind, "view": "fan", "as_of": issued(8).isoformat(), **WINDOW},
            "dayahead": {
                "series": wind,
                "view": "dayahead",
                "days_ahead": 1,
                "issue_time": "12:00",
                "tz": "Europe/Stockholm",
                **WINDOW,
            },
            "audit": {"series": wind, **WINDOW, "audit": CORRECTED.isoformat()},
        }
        with Browser(base + "/ui/", window_size="1280,960") as page:
            page.goto(view_url(base, labels="site=Gotland"))
            page.wait_for(f"{IDLE} && document.getElementById('count').textContent")
            page.type_text("#label-key", "model")
            page.click("#label-form button")
            page.wait_for(f"{IDLE} && document.querySelector('#label-values button') !== null")
            page.screenshot(args.out / "browser.png")
            for name, state in views.items():
                show(page, view_url(base, **state))
                hover(page, 0.6)
                if name == "audit":
                    page.wait_for(f"{IDLE} && !document.getElementById('audit').hidden")
                    page.evaluate("document.getElementById('audit').scrollIntoView({block: 'end', inline: 'nearest'})")
                page.screenshot(args.out / f"{name}.png")
            if page.errors:
                print("\n".join(page.errors), file=sys.stderr)
                return 1
    for path in sorted(args.out.glob("*.png")):
        print(f"{path}: {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
