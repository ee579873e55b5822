"""Tiny helper to render a page with headless Chromium and get the DOM after JS ran.

Used by the docs-page tests (ReDoc at /redoc, Swagger UI at /docs) to check that
the JavaScript UIs actually render the spec, not just that the HTML is served.

    from tests.browser import chromium_path, render_dom
    if chromium_path() is None: pytest.skip("chromium not installed")
    dom = render_dom("http://127.0.0.1:8000/redoc")

Runs as root safely: --no-sandbox (required as root) is confined to a fresh,
throw-away --user-data-dir and HOME, every background/network feature is off,
and by default host resolution is blocked for everything except localhost, so a
page that tries to reach a CDN simply fails instead of leaking traffic.
The whole Chromium process group is killed on timeout and after each run.
tests/cdp.py starts Chromium with the same arguments and environment (chromium_args,
private_env) for pages that need clicks and key presses (the web UI).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "ChromiumResult",
    "chromium_args",
    "chromium_path",
    "kill_group",
    "private_env",
    "render_dom",
    "run_chromium",
]

_CANDIDATES = (
    "/usr/bin/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome-headless-shell",
)


def chromium_path() -> str | None:
    """Path of a Chromium executable, or None. ``$CHROMIUM`` overrides the search."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if shutil.which(override) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class ChromiumResult:
    returncode: int | None
    stdout: str  # the dumped DOM
    stderr: str  # chromium logs; includes console messages when log_console=True


def chromium_args(tmp: str, url: str, *, block_external: bool = True, window_size: str = "1280,1024") -> list[str]:
    """Headless Chromium's command line, with a fresh profile in *tmp* and every background and
    network feature off; with *block_external* only loopback (and the host of *url*) resolve."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-domain-reliability",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
        "--disable-dev-shm-usage",
        "--metrics-recording-only",
        "--mute-audio",
        "--hide-scrollbars",
        "--password-store=basic",
        "--use-mock-keychain",
        f"--window-size={window_size}",
        f"--user-data-dir={profile}",
    ]
    if block_external:
        # Only loopback (and the host of *url*) resolve -> no CDN/Google traffic.
        allowed = ["localhost", "127.0.0.1", "[::1]"]
        host = urlsplit(url).hostname
        if host and host not in ("localhost", "127.0.0.1", "::1"):
            allowed.append(f"[{host}]" if ":" in host else host)
        rules = ", ".join(["MAP * ~NOTFOUND"] + [f"EXCLUDE {h}" for h in allowed])
        args.append(f"--host-resolver-rules={rules}")
    return args


def private_env(tmp: str) -> dict[str, str]:
    """The environment of a Chromium run: ~/.pki, ~/.config etc. in *tmp*, not the real home."""
    env = dict(os.environ)
    env["HOME"] = tmp
    env["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
    env["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
    return env


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_chromium(
    url: str,
    timeout: float = 60,
    *,
    virtual_time_budget_ms: int = 15000,
    block_external: bool = True,
    log_console: bool = False,
    window_size: str = "1280,1024",
    extra_args: tuple[str, ...] = (),
) -> ChromiumResult:
    """Run headless Chromium with ``--dump-dom`` on *url*.

    ``virtual_time_budget_ms``: virtual time given to the page before the DOM is
    dumped (timers/network are fast-forwarded; it is *not* wall-clock time).
    ``timeout``: hard wall-clock limit; the process group is killed when hit and
    ``subprocess.TimeoutExpired`` is raised.
    """
    tmp = tempfile.mkdtemp(prefix="timedb-chromium-")
    try:
        args = chromium_args(tmp, url, block_external=block_external, window_size=window_size)
        args.append(f"--virtual-time-budget={int(virtual_time_budget_ms)}")
        if log_console:
            # console.log/errors from the page go to stderr as "CONSOLE(...)" lines.
            args += ["--enable-logging=stderr", "--v=0"]
        args += list(extra_args)
        args += ["--dump-dom", url]
        env = private_env(tmp)

        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp,
            start_new_session=True,  # own process group -> we can kill all helpers
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.communicate()
            raise
        finally:
            kill_group(proc.pid)  # stray zygote/renderer/gpu helpers
        return ChromiumResult(
            proc.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render_dom(url: str, timeout: float = 60, **kwargs) -> str:
    """Rendered DOM (serialized HTML after scripts ran) of *url*.

    Raises RuntimeError if Chromium produced no DOM, subprocess.TimeoutExpired on
    timeout, FileNotFoundError if Chromium is missing. kwargs -> run_chromium().
    """
    res = run_chromium(url, timeout, **kwargs)
    if not res.stdout.strip():
        raise RuntimeError(f"chromium returned no DOM for {url} (rc={res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout
