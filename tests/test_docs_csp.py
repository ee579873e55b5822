"""The doc pages run under their Content-Security-Policy: headless Chromium reports no violation."""

from __future__ import annotations

import pytest

from tests.browser import run_chromium

pytestmark = pytest.mark.browser

# redoc.standalone.js shows a "by Redocly" logo from cdn.redoc.ly; blocking it is the point
EXPECTED = ("https://cdn.redoc.ly/",)


def violations(url: str) -> tuple[str, list[str]]:
    """The rendered DOM of url and the CSP violations Chromium logged on its console."""
    result = run_chromium(url, timeout=90, log_console=True)
    lines = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "Content Security Policy" in line]
    return result.stdout, [line for line in lines if not any(e in line for e in EXPECTED)]


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        ("/docs/", "opblock-summary-path"),
        ("/docs/#/series/create_series", "opblock-body"),  # an operation opened: parameters, examples
        ("/redoc", 'operation/create_series"'),
    ],
)
def test_doc_page_runs_without_csp_violations(live_server, chromium, page, rendered):
    dom, found = violations(live_server + page)
    assert rendered in dom, f"{page} did not render"
    assert found == []


def test_violations_are_seen(live_server, chromium):
    """Swagger UI's oauth2-redirect.html (unused here) gets the strictest policy: its inline script
    is refused, and that shows on the console this check reads."""
    _dom, found = violations(live_server + "/docs/oauth2-redirect.html")
    assert any("script" in line for line in found), found
