"""The web UI at /ui/ in headless Chromium (DevTools protocol, tests/cdp.py), against a real server
with data the tests write: a series is picked, the chart drawn, as_of moved, a point's audit trail
opened and a CSV downloaded; every expectation is computed here from what was written."""

from __future__ import annotations

import csv
import io
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.api.test_auth import make_token
from tests.cdp import Browser
from tests.helpers import insert, make_series
from tests.processes import server_env, start_server, stop_process

pytestmark = pytest.mark.browser

DAY = datetime(2025, 1, 2, tzinfo=UTC)  # the valid day of the forecasts
HOURS = 6
ISSUED = {DAY - timedelta(hours=24): 10.0, DAY - timedelta(hours=18): 20.0, DAY - timedelta(hours=12): 30.0}
CORRECTED_HOUR, CORRECTED_VALUE = 2, 99.0
CORRECTION = {"annotation": "checked against the meter", "tags": ["reviewed"], "changed_by": "ana@example.com"}
AUDIT_COLUMNS = ["known_time", "change_time", "value", "changed_by", "annotation", "tags", "batch_id"]
WINDOW = {"start": "2025-01-02T00:00:00Z", "end": "2025-01-02T06:00:00Z"}
GOTLAND = "site=Gotland"  # the labels filter of the seeded series
IDLE = "document.body.getAttribute('aria-busy') === 'false'"
# pixels of a drawn line: coloured, unlike the white background and the grey grid and axes
COLOURED_PIXELS = """(() => {
  const canvas = document.querySelector('#chart canvas');
  if (!canvas) return 0;
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  }
  return n;
})()"""


def iso(t: datetime) -> str:
    return t.isoformat()  # as the server prints it: 2025-01-02T00:00:00+00:00


def hour(h: int) -> str:
    return iso(DAY + timedelta(hours=h))


def forecast(base: float) -> list[tuple[str, float | None]]:
    return [(hour(h), base + h) for h in range(HOURS)]


@pytest.fixture(scope="module")
def seeded(live_server: str, emptier) -> dict[str, Any]:
    """Three forecasts of one day (issued D-1 00:00, 06:00 and 12:00; values base + hour), one
    correction of the newest at hour 2, and a flat series; ids as the API gave them."""
    emptier()
    with httpx.Client(base_url=live_server, timeout=60) as client:
        wind = make_series(client, name="wind", labels={"site": "Gotland"}, overlapping=True, description="Day-ahead")
        make_series(client, name="wind_measured", labels={"site": "Gotland"})
        batches = {
            kt: insert(client, wind, forecast(base), known_time=iso(kt))["batch_id"] for kt, base in ISSUED.items()
        }
        newest = max(ISSUED)
        fix = {"series_id": wind, "batch_id": batches[newest], "valid_time": hour(CORRECTED_HOUR)}
        resp = client.put("/values", json={"updates": [{**fix, "value": CORRECTED_VALUE, **CORRECTION}]})
        assert resp.status_code == 200, resp.text
    return {"wind": wind}


def text(page: Browser, element_id: str) -> str:
    return str(page.evaluate(f"document.getElementById('{element_id}').textContent"))


def message(page: Browser) -> str:
    """The message the page shows (waited for)."""
    shown = "!document.getElementById('message').hidden && document.getElementById('message').innerText"
    return str(page.wait_for(f"{IDLE} && {shown}"))


def ui_url(server: str, **state: Any) -> str:
    return f"{server}/ui/#{urlencode({k: v for k, v in state.items() if v is not None})}"


@pytest.fixture
def page(live_server: str, seeded: dict[str, Any], chromium: str) -> Iterator[Browser]:
    with Browser(live_server + "/ui/") as browser:
        yield browser
    # (each test checks browser.errors itself where it matters)


def open_view(page: Browser, url: str) -> None:
    page.goto(url)
    page.wait_for(f"location.href === {url!r} && {IDLE} && document.getElementById('status').dataset.points")


def at(page: Browser, valid_time: str) -> tuple[float, float]:
    """Where a valid_time is on the chart (whose x axis spans WINDOW), halfway up."""
    left, top, width, height = page.evaluate(
        "(() => { const r = document.querySelector('#chart .u-over').getBoundingClientRect();"
        " return [r.x, r.y, r.width, r.height]; })()"
    )
    start, end = (datetime.fromisoformat(WINDOW[k]) for k in ("start", "end"))
    return left + (datetime.fromisoformat(valid_time) - start) / (end - start) * width, top + height / 2


def hover(page: Browser, valid_time: str) -> str:
    """Move the mouse over a valid_time of the chart; the read-out of that point."""
    page.mouse("mouseMoved", *at(page, valid_time))
    readout = "(r => r.dataset.validTime === {0!r} && r.textContent)(document.getElementById('readout'))"
    return str(page.wait_for(readout.format(valid_time)))


def plotted(readout: str, line: str) -> float:
    found = re.search(rf"{line}: (\S+) MW", readout)
    assert found, readout
    return float(found.group(1))


def latest_as_of(as_of: datetime | None, h: int) -> float:
    """What the test wrote, as known at as_of: the newest forecast issued by then; the correction
    (made now, long after the forecasts) only without as_of."""
    if as_of is None and h == CORRECTED_HOUR:
        return CORRECTED_VALUE
    return max((kt, base) for kt, base in ISSUED.items() if as_of is None or kt <= as_of)[1] + h


# -- the page ------------------------------------------------------------------------------------


def test_the_browser_lists_the_series_without_console_errors(page, live_server):
    page.goto(ui_url(live_server, labels=GOTLAND))  # (the speed test adds a series without labels)
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent")
    assert text(page, "count") == "2 series; 1-2 shown"
    names = page.evaluate("[...document.querySelectorAll('#series-rows tr td:first-child a')].map(a => a.textContent)")
    assert names == ["wind", "wind_measured"]
    assert page.errors == []


def test_csp_violations_would_be_seen(page, live_server):
    """The errors the tests check include the page's CSP violations: markup with an inline style
    (as an HTML string would bring) is refused, and reported."""
    page.goto(live_server + "/ui/")
    page.wait_for(IDLE)
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">injected</p>')")
    deadline = time.monotonic() + 10
    while not page.errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("Content Security Policy" in error and "style-src" in error for error in page.errors), page.errors


def test_the_label_filter_narrows_the_list(page, live_server, seeded):
    page.goto(ui_url(live_server, labels="site=Nowhere"))
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent")
    assert text(page, "count") == "No series match."
    page.goto(ui_url(live_server, name="wind", labels=GOTLAND))
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent.startsWith('1 ')")
    assert page.errors == []


def test_the_browser_pages_through_the_series(page, live_server):
    """55 series, 50 a page: Next follows the Link cursor, Previous goes back."""
    names = [f"paged_{i:02d}" for i in range(55)]
    with httpx.Client(base_url=live_server, timeout=60) as client:
        resp = client.post("/series/bulk", json={"series": [{"name": n, "labels": {"set": "paging"}} for n in names]})
        assert resp.status_code == 200, resp.text
    listed = "[...document.querySelectorAll('#series-rows a')].map(a => a.textContent)"
    page.goto(ui_url(live_server, labels="set=paging"))
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent === '55 series; 1-50 shown'")
    assert page.evaluate(listed) == names[:50]
    page.click("#next")
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent === '55 series; 51-55 shown'")
    assert page.evaluate(listed) == names[50:]
    assert page.evaluate("document.getElementById('next').disabled") is True
    page.click("#prev")
    page.wait_for(f"{IDLE} && document.getElementById('count').textContent === '55 series; 1-50 shown'")
    assert page.evaluate(listed) == names[:50]
    assert page.errors == []


def test_picking_a_series_draws_its_latest_values(page, live_server, seeded):
    page.goto(ui_url(live_server, labels=GOTLAND, **WINDOW))
    page.wait_for(f"{IDLE} && !!document.querySelector('#series-rows a')")
    assert page.evaluate(COLOURED_PIXELS) == 0  # no chart before a series is picked
    page.click("#series-rows a")  # the first row: wind
    page.wait_for(f"{IDLE} && document.getElementById('status').dataset.points === '{HOURS}'")
    assert f"series={seeded['wind']}" in page.evaluate("location.hash")
    assert text(page, "series-title") == "wind (MW)"
    assert page.evaluate(COLOURED_PIXELS) > 200
    for h in range(HOURS):
        assert plotted(hover(page, hour(h)), "latest") == latest_as_of(None, h)
    assert page.errors == []


def test_the_as_of_slider_redraws_what_was_known_then(page, live_server, seeded):
    open_view(page, ui_url(live_server, series=seeded["wind"], view="fan", **WINDOW))
    readout = hover(page, hour(CORRECTED_HOUR))
    assert plotted(readout, "latest") == CORRECTED_VALUE
    assert "3 revisions" in readout
    before = page.evaluate(COLOURED_PIXELS)
    page.evaluate("document.getElementById('as-of-slider').focus()")
    for as_of in sorted(ISSUED, reverse=True):  # one step back per known_time
        page.press("ArrowLeft", 37)
        page.wait_for(f"decodeURIComponent(location.hash).includes('as_of={iso(as_of)}') && {IDLE}")
        known = len([k for k in ISSUED if k <= as_of])
        page.wait_for(f"document.getElementById('status').dataset.points === '{HOURS * (known + 1)}'")
        for h in range(HOURS):
            readout = hover(page, hour(h))
            assert plotted(readout, "latest") == latest_as_of(as_of, h), (as_of, h)
            assert f"{known} revisions" in readout
    assert page.evaluate(COLOURED_PIXELS) != before
    assert page.errors == []


def test_the_day_ahead_view(page, live_server, seeded):
    """days_ahead=1 at 06:00: for each hour of the day, the newest forecast issued by the day before at 06:00."""
    cutoff = DAY - timedelta(hours=18)
    open_view(
        page, ui_url(live_server, series=seeded["wind"], view="dayahead", days_ahead=1, issue_time="06:00", **WINDOW)
    )
    for h in range(HOURS):
        readout = hover(page, hour(h))
        assert plotted(readout, "day-ahead") == latest_as_of(cutoff, h)
        assert plotted(readout, "latest") == latest_as_of(None, h)
    assert page.errors == []


def test_clicking_a_point_lists_its_audit_trail(page, live_server, seeded):
    """Every version of the clicked valid_time and the correction, with their audit fields."""
    open_view(page, ui_url(live_server, series=seeded["wind"], **WINDOW))
    valid_time = hour(CORRECTED_HOUR)
    page.click_at(*at(page, valid_time))
    page.wait_for(f"!document.getElementById('audit').hidden && {IDLE}")
    assert page.evaluate("decodeURIComponent(location.hash)").endswith(f"audit={valid_time}")
    rows = page.evaluate(
        "[...document.querySelectorAll('#audit-rows tr')].map(tr => [...tr.cells].map(td => td.textContent))"
    )
    listed = [dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in rows]
    versions = [(iso(kt), base + CORRECTED_HOUR, "", "", "") for kt, base in sorted(ISSUED.items())]
    fix = (iso(max(ISSUED)), CORRECTED_VALUE, CORRECTION["changed_by"], CORRECTION["annotation"], "reviewed")
    assert [(r["known_time"], float(r["value"]), r["changed_by"], r["annotation"], r["tags"]) for r in listed] == [
        *versions,
        fix,
    ]
    assert all(r["change_time"] and r["batch_id"] for r in listed)
    assert listed[-1]["change_time"] > listed[-2]["change_time"]  # the correction came after the version
    assert text(page, "audit-title") == f"Audit trail of {valid_time}: 4 rows"
    assert page.errors == []


def test_the_csv_holds_the_plotted_rows(page, live_server, seeded):
    """The fan as known at the second forecast: its two revisions and the latest line as of then."""
    as_of = DAY - timedelta(hours=18)
    open_view(page, ui_url(live_server, series=seeded["wind"], view="fan", as_of=iso(as_of), **WINDOW))
    page.click("#csv")
    (path,) = page.downloaded()
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert rows[0] == ["line", "known_time", "valid_time", "value"]
    revisions = [
        ["revision", iso(kt), t, str(v)]
        for kt, base in sorted(ISSUED.items())
        if kt <= as_of
        for t, v in forecast(base)
    ]
    latest = [["latest", "", hour(h), str(latest_as_of(as_of, h))] for h in range(HOURS)]
    assert [[*r[:3], str(float(r[3]))] for r in rows[1:]] == revisions + latest
    assert page.errors == []


# -- problems ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        ({"series": 999999, **WINDOW}, "(404)"),
        ({"series": 1, "view": "dayahead", "tz": "Not/AZone", **WINDOW}, "(400)"),
        ({"labels": "no pairs here"}, "Write key=value pairs"),
    ],
)
def test_problems_are_shown_as_messages(page, live_server, seeded, state, shown):
    page.goto(ui_url(live_server, **state))
    said = message(page)
    assert shown in said
    assert "{" not in said  # a sentence, never the raw document


@pytest.fixture(scope="module")
def token_server(make_database) -> Iterator[tuple[str, str]]:
    """A server that requires tokens (TIMEDB_AUTH=tokens), with one series and a read token."""
    dsn = make_database()
    secret = make_token(dsn, "ui", "read")
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"], server_env(dsn, TIMEDB_AUTH="tokens")
    )
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {make_token(dsn, 'seed', 'write')}"}) as client:
        make_series(client, name="guarded")
    yield url, secret
    stop_process(proc)


def test_a_token_server_asks_for_a_token_then_works_with_one(token_server, chromium):
    url, secret = token_server
    with Browser(url + "/ui/") as page:
        page.goto(url + "/ui/")
        said = message(page)
        assert "Unauthorized (401)" in said
        assert "needs an access token" in said
        page.type_text("#token", secret)
        page.click("#token-form button")
        page.wait_for(f"{IDLE} && document.getElementById('count').textContent === '1 series; 1-1 shown'")
        assert page.evaluate("document.getElementById('message').hidden") is True
        assert page.evaluate("sessionStorage.getItem('timedb-token')") == secret
        assert not [e for e in page.errors if "401" not in e]  # (Chromium logs each refused request)


# -- speed ---------------------------------------------------------------------------------------


def test_100000_points_render_time(page, live_server, record_property):
    """Measured, not asserted (a wall-clock limit would fail on a busy machine): printed with -s
    and recorded in the junit XML; bench/ui_render.py measures it on its own."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with httpx.Client(base_url=live_server, timeout=120) as client:
        big = make_series(client, name="big")
        insert(client, big, [(iso(start + timedelta(minutes=i)), float(i % 1000)) for i in range(100_000)])
    end = start + timedelta(minutes=100_000)
    open_view(page, ui_url(live_server, series=big, start=iso(start), end=iso(end)))
    status = page.evaluate("({...document.getElementById('status').dataset})")
    assert status["points"] == "100000"
    assert page.evaluate(COLOURED_PIXELS) > 1000
    record_property("ui_render_ms_100000_points", status["ms"])
    print(f"\n100,000 points rendered in {status['ms']} ms ({text(page, 'status')})")
