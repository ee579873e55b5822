"""The web UI's files at /ui/ (the page itself runs in tests/test_ui_page.py): served from the
package, under a policy that allows no inline code, and naming only files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.api.test_web_headers import csp
from tests.helpers import LOCAL
from timedb.app import UI_FILES, create_app
from timedb.settings import Settings

UI = Path(__file__).resolve().parents[2] / "timedb" / "static" / "ui"
SHIPPED = {"vendor/uplot/LICENSE", "vendor/uplot/VERSION"}  # in the package, not served


def test_every_file_of_the_ui_is_served_and_nothing_else():
    files = {p.relative_to(UI).as_posix() for p in UI.rglob("*") if p.is_file()}
    assert files - SHIPPED == {name or "index.html" for name in UI_FILES}


@pytest.mark.parametrize("name", list(UI_FILES))
def test_ui_files_have_their_types(session_client, name):
    resp = session_client.get(f"/ui/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == UI_FILES[name]
    assert resp.content == (UI / (name or "index.html")).read_bytes()
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_the_page_and_its_modules_name_only_served_files(session_client):
    html = session_client.get("/ui/").text
    named = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    for script in UI.glob("*.js"):
        named += re.findall(r"""from "\\./([^"]+)\"""", script.read_text(encoding="utf-8"))
    local = {n for n in named if not n.startswith("../")}  # (../ : the API's doc pages)
    assert local and local <= set(UI_FILES), local - set(UI_FILES)


def test_the_ui_allows_no_inline_code(session_client):
    resp = session_client.get("/ui/")
    assert csp(resp) == {
        "default-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "connect-src": ["'self'"],
    }
    # and the page needs none: no inline script, style element, style or event attribute
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", resp.text)
    for script in UI.glob("*.js"):
        assert "innerHTML" not in script.read_text(encoding="utf-8"), script.name


def test_ui_redirects_to_its_folder_under_the_root_path(app_dsn, session_client):
    resp = session_client.get("/ui", follow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["location"] == "/ui/"
    with create_app(Settings(dsn=app_dsn)).test_client(root_path="/tdb", **LOCAL) as client:
        assert client.get("/tdb/ui", follow_redirects=False).headers["location"] == "/tdb/ui/"


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/vendor/uplot/LICENSE", "/ui/vendor/", "/ui/index.html"])
def test_other_paths_under_ui_are_not_found(session_client, path):
    assert session_client.get(path).status_code == 404
