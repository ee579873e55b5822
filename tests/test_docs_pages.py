"""The documentation pages: /openapi.json, Swagger UI at /docs, ReDoc at /redoc (rendered by headless Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.browser import render_dom

pytestmark = pytest.mark.browser

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi" / "timedb.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items() if method in METHODS
    ]


@pytest.fixture(scope="module")
def swagger_dom(live_server, chromium) -> str:
    # /docs redirects to /docs/; the browser follows it
    return render_dom(live_server + "/docs", timeout=90)


@pytest.fixture(scope="module")
def redoc_dom(live_server, chromium) -> str:
    return render_dom(live_server + "/redoc", timeout=90)


# -- /openapi.json ------------------------------------------------------------------------------------


def test_openapi_json_is_the_spec(live_server, spec):
    resp = httpx.get(live_server + "/openapi.json", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    served = resp.json()
    assert served["openapi"] == spec["openapi"]
    assert served["info"]["title"] == spec["info"]["title"]
    assert served["info"]["version"] == spec["info"]["version"]
    assert set(served["paths"]) == set(spec["paths"])
    ids = {(p, m, op["operationId"]) for p, m, op in operations(spec)}
    assert {(p, m, op["operationId"]) for p, m, op in operations(served)} == ids
    assert set(served["components"]["schemas"]) == set(spec["components"]["schemas"])


def test_docs_redirects_to_docs_slash(live_server):
    resp = httpx.get(live_server + "/docs", timeout=30)
    assert resp.status_code in (301, 302, 307, 308)
    assert resp.headers["location"].endswith("/docs/")
    page = httpx.get(live_server + "/docs/", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


# -- offline: no CDN in the HTML ------------------------------------------------------------------------


def external_urls(html: str) -> list[str]:
    """http(s) URLs to non-local hosts in src/href of script/link tags (and anywhere in src=/href=)."""
    found = []
    for tag in re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html, flags=re.IGNORECASE):
        for url in re.findall(r"""(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", tag, flags=re.IGNORECASE):
            host = urlsplit(url if not url.startswith("//") else "http:" + url).hostname or ""
            if host not in LOCAL_HOSTS:
                found.append(url)
    for url in re.findall(r"""@import\s+(?:url\()?["']?(https?://[^"')\s]+)""", html):
        found.append(url)
    return found


@pytest.mark.parametrize("page", ["/docs/", "/redoc"])
def test_doc_pages_use_no_external_resources(live_server, page):
    resp = httpx.get(live_server + page, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert external_urls(resp.text) == [], f"{page} loads from outside: {external_urls(resp.text)}"


def test_swagger_ui_does_not_call_the_online_validator(live_server):
    html = httpx.get(live_server + "/docs/", timeout=30).text
    assert "validator.swagger.io" not in html
    assert re.search(r"validatorUrl\s*:\s*null", html), "Swagger UI would fetch a badge from validator.swagger.io"


def test_doc_page_assets_are_served(live_server):
    """Every local script/stylesheet the doc pages reference answers 200."""
    for page in ("/docs/", "/redoc"):
        html = httpx.get(live_server + page, timeout=30).text
        refs = re.findall(r"""<(?:script|link)\b[^>]*(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        assets = [r for r in refs if not r.startswith(("data:", "http:", "https:", "//"))]
        assert assets, page
        for ref in assets:
            url = httpx.URL(live_server + page).join(ref)
            resp = httpx.get(url, timeout=30)
            assert resp.status_code == 200, (page, ref, resp.status_code)
            assert resp.content, (page, ref)


# -- rendered by a browser --------------------------------------------------------------------------------


def test_swagger_ui_offers_the_token_scheme(swagger_dom, spec):
    """The Authorize button (it appears only when the spec declares a security scheme), and a
    lock on each protected operation, none on the public ones."""
    assert re.search(r'<button[^>]*class="[^"]*\bauthorize\b', swagger_dom), "no Authorize button"
    for _, _, op in operations(spec):
        block = swagger_dom.split(f'id="operations-{op["tags"][0]}-{op["operationId"]}"', 1)[1][:4000]
        locked = "authorization__btn" in block.split('id="operations-', 1)[0]
        assert locked == (op.get("security") != []), op["operationId"]


def test_swagger_ui_renders_every_operation(swagger_dom, spec):
    assert "Failed to load API definition" not in swagger_dom
    assert "Fetch error" not in swagger_dom
    assert spec["info"]["title"] in swagger_dom
    for path, method, op in operations(spec):
        assert f'data-path="{path}"' in swagger_dom, f"{method.upper()} {path} not rendered"
        # deepLinking ids: operations-<tag>-<operationId>
        tag = op["tags"][0]
        assert f'id="operations-{tag}-{op["operationId"]}"' in swagger_dom, (method, path, op["operationId"])
    assert swagger_dom.count("opblock-summary-path") >= len(operations(spec))


def test_redoc_renders_every_operation(redoc_dom, spec):
    assert "Something went wrong" not in redoc_dom
    assert "Error downloading" not in redoc_dom
    assert spec["info"]["title"] in redoc_dom
    for path, method, op in operations(spec):
        assert f'operation/{op["operationId"]}"' in redoc_dom, f"{method.upper()} {path} ({op['operationId']})"
        assert op["summary"] in redoc_dom, op["summary"]


def test_redoc_renders_the_schemas(redoc_dom, spec):
    # a few property names from the request bodies, as rendered in the middle panel
    for name in ("valid_time", "known_time", "overlapping", "changed_by"):
        assert name in redoc_dom, name


def test_external_url_check_itself():
    html = (
        '<script src="https://cdn.jsdelivr.net/x.js"></script><link href="//fonts.googleapis.com/css">'
        '<script src="./local.js"></script><link href="http://127.0.0.1:8000/a.css">'
        "<style>@import url('https://fonts.googleapis.com/css2');</style>"
    )
    assert external_urls(html) == [
        "https://cdn.jsdelivr.net/x.js",
        "//fonts.googleapis.com/css",
        "https://fonts.googleapis.com/css2",
    ]
