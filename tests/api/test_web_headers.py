"""Browser-facing headers: CORS from TIMEDB_CORS_ORIGINS, security headers on the HTML doc pages."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.helpers import LOCAL, make_series
from tests.processes import server_env, start_server, stop_process
from timedb.app import create_app
from timedb.settings import Settings

ORIGIN = "https://app.example"
OTHER = "https://evil.example"
HTML_ONLY = ("content-security-policy", "x-frame-options", "referrer-policy")


@contextmanager
def client_for(dsn: str, **settings) -> Iterator:
    with create_app(Settings(dsn=dsn, validate_responses=True, **settings)).test_client(**LOCAL) as client:
        yield client


@pytest.fixture(scope="module")
def cors(app_dsn: str) -> Iterator:
    """An app that lets two origins call it (one a dev server on localhost)."""
    with client_for(app_dsn, cors_origins=(ORIGIN, "http://localhost:5173")) as client:
        yield client


@pytest.fixture(scope="module")
def cors_any(app_dsn: str) -> Iterator:
    with client_for(app_dsn, cors_origins=("*",)) as client:
        yield client


def preflight(
    client, origin: str, method: str = "POST", headers: str = "authorization, content-type", path: str = "/values"
):
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def cors_headers(resp) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


# -- CORS --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", "authorization, content-type, idempotency-key, x-request-id"),
        ("PATCH", "authorization, content-type"),
        ("PUT", "content-type"),
        ("GET", "authorization"),
    ],
)
def test_preflight_from_an_allowed_origin(cors, method, headers):
    resp = preflight(cors, ORIGIN, method, headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert method in resp.headers["access-control-allow-methods"].split(", ")
    allowed = {h.lower() for h in resp.headers["access-control-allow-headers"].split(", ")}
    assert set(headers.split(", ")) <= allowed
    assert "access-control-allow-credentials" not in resp.headers  # tokens travel in a header, not a cookie
    assert "Origin" in resp.headers["vary"]


def test_second_origin_is_allowed_too(cors):
    assert preflight(cors, "http://localhost:5173").headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize("origin", [OTHER, "https://app.example.evil.example", "http://app.example", "null"])
def test_preflight_from_another_origin_is_refused(cors, origin):
    resp = preflight(cors, origin)
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize(("method", "headers"), [("DELETE", "content-type"), ("POST", "x-anything-else")])
def test_preflight_for_a_method_or_header_the_api_does_not_use_is_refused(cors, method, headers):
    assert preflight(cors, ORIGIN, method, headers).status_code == 400


def test_preflight_needs_no_token_and_a_refusal_is_readable(app_dsn):
    """The browser sends no Authorization header in a preflight: it must not meet access control;
    the 401 of the request itself must reach the script (with WWW-Authenticate)."""
    with client_for(app_dsn, cors_origins=(ORIGIN,), auth="tokens") as client:
        resp = preflight(client, ORIGIN, "POST", "authorization, content-type", path="/series")
        assert resp.status_code == 200, resp.text
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        refused = client.get("/series", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]


def test_request_from_an_allowed_origin_can_read_the_answer(cors):
    resp = cors.get("/healthz", headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in resp.headers["vary"]  # a shared cache must not serve it to another origin
    exposed = {h.strip() for h in resp.headers["access-control-expose-headers"].split(",")}
    assert {"Link", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate", "X-Request-ID"} <= exposed


def test_error_answers_carry_cors_headers(cors):
    """A script must be able to read a problem (404, 401, 413 ...), not see an opaque CORS failure."""
    resp = cors.get("/no-such-path", headers={"Origin": ORIGIN})
    assert resp.status_code == 404
    assert resp.headers["access-control-allow-origin"] == ORIGIN


def test_request_from_another_origin_gets_no_allow_origin(cors):
    resp = cors.get("/healthz", headers={"Origin": OTHER})
    assert resp.status_code == 200  # CORS is enforced by the browser: the server just does not allow it
    assert "access-control-allow-origin" not in resp.headers


def test_star_allows_any_origin_without_credentials(cors_any):
    resp = preflight(cors_any, OTHER)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    simple = cors_any.get("/healthz", headers={"Origin": OTHER})
    assert simple.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    assert "access-control-allow-credentials" not in simple.headers


def test_no_cors_headers_when_timedb_cors_origins_is_unset(app_dsn):
    settings = Settings.from_env({"TIMEDB_DSN": app_dsn})
    assert settings.cors_origins == ()
    with create_app(settings).test_client(**LOCAL) as client:
        assert cors_headers(client.get("/healthz", headers={"Origin": ORIGIN})) == {}
        resp = preflight(client, ORIGIN, path="/series")
        assert resp.status_code != 200
        assert cors_headers(resp) == {}


def test_cors_origins_from_the_environment(app_dsn):
    env = {"TIMEDB_DSN": app_dsn, "TIMEDB_CORS_ORIGINS": f" {ORIGIN} , ,http://localhost:5173,"}
    with create_app(Settings.from_env(env)).test_client(**LOCAL) as client:
        assert preflight(client, ORIGIN).headers["access-control-allow-origin"] == ORIGIN
        assert preflight(client, OTHER).status_code == 400


# -- security headers ----------------------------------------------------------------------------------


def csp(resp) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    directives = (d.split() for d in resp.headers["content-security-policy"].split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


def sha256_sources(html: str, tag: str) -> set[str]:
    bodies = re.findall(rf"<{tag}(?![^>]*\bsrc=)[^>]*>(.*?)</{tag}>", html, flags=re.DOTALL)
    return {"'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in bodies}


@pytest.mark.parametrize("page", ["/docs", "/docs/", "/docs/index.html", "/redoc", "/ui", "/ui/"])
def test_doc_pages_have_security_headers(session_client, page):
    resp = session_client.get(page, follow_redirects=True)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"
    policy = csp(resp)
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    # scripts: the server's own files, and inline ones only by hash
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert all(s == "'self'" or s.startswith("'sha256-") for s in policy["script-src"])
    # no other host anywhere in the policy
    assert not re.search(r"https?:|\*", resp.headers["content-security-policy"])


@pytest.mark.parametrize("page", ["/docs/", "/redoc"])
def test_every_inline_script_of_a_doc_page_is_allowed_by_its_hash(session_client, page):
    resp = session_client.get(page)
    scripts = sha256_sources(resp.text, "script")
    assert scripts, "the page starts its UI from an inline script"
    assert scripts <= set(csp(resp)["script-src"])


def test_swagger_ui_inline_style_is_allowed_by_its_hash(session_client):
    resp = session_client.get("/docs/")
    styles = sha256_sources(resp.text, "style")
    assert styles
    assert set(csp(resp)["style-src"]) == {"'self'"} | styles


def test_redoc_may_run_its_search_worker(session_client):
    assert csp(session_client.get("/redoc"))["worker-src"] == ["blob:"]


def test_swagger_ui_policy_follows_the_root_path(app_dsn):
    """Behind a proxy that mounts timedb under a prefix, the start script names /prefix/openapi.json."""
    with create_app(Settings(dsn=app_dsn)).test_client(root_path="/tdb", **LOCAL) as client:
        resp = client.get("/tdb/docs/")
        assert resp.status_code == 200
        assert '"/tdb/openapi.json"' in resp.text
        assert sha256_sources(resp.text, "script") <= set(csp(resp)["script-src"])


def test_any_other_html_gets_the_strictest_policy(session_client):
    resp = session_client.get("/docs/oauth2-redirect.html")  # shipped by Swagger UI, unused here
    assert resp.headers["content-type"].startswith("text/html")
    assert csp(resp) == {
        "default-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/series", "/no-such-path", "/docs/swagger-ui.css"])
def test_other_responses_get_nosniff_only(session_client, path):
    """HTML-only headers would be dead bytes on JSON; nosniff keeps a browser from ever running one as HTML."""
    resp = session_client.get(path)
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert not resp.headers["content-type"].startswith("text/html")
    for name in HTML_ONLY:
        assert name not in resp.headers, name


def test_method_not_allowed_keeps_its_allow_header(session_client):
    resp = session_client.delete("/series")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD, POST"
    assert resp.headers["x-content-type-options"] == "nosniff"


# -- streamed reads through both middlewares (real server) ------------------------------------------------


@pytest.fixture(scope="module")
def cors_server(app_dsn: str) -> Iterator[str]:
    proc, url = start_server(
        [sys.executable, "-m", "uvicorn", "timedb.api:app", "--port", "0"],
        server_env(app_dsn, TIMEDB_CORS_ORIGINS=ORIGIN),
    )
    yield url
    stop_process(proc)


def test_large_read_still_streams(cors_server, clean_db):
    n = 20_000
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    data = [{"valid_time": (t0 + timedelta(minutes=15 * i)).isoformat(), "value": float(i)} for i in range(n)]
    with httpx.Client(base_url=cors_server, timeout=60, headers={"Origin": ORIGIN}) as live:
        sid = make_series(live, name="big")
        assert live.post("/values", json={"series_id": sid, "data": data}).status_code == 200
        with live.stream("GET", "/values", params={"series_id": sid}) as resp:
            assert resp.status_code == 200
            # sent in chunks as it is read: nothing on the way buffered the body to count it
            assert "content-length" not in resp.headers
            assert resp.headers["transfer-encoding"] == "chunked"
            assert resp.headers["access-control-allow-origin"] == ORIGIN
            assert resp.headers["x-content-type-options"] == "nosniff"
            chunks = list(resp.iter_raw())
    assert len(chunks) > 1
    body = json.loads(b"".join(chunks))
    assert body["count"] == n
    assert [r["value"] for r in body["data"]] == [p["value"] for p in data]
