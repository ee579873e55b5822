"""Headless Chromium driven through the DevTools protocol, for pages that need interaction.

    with Browser(live_server + "/ui/") as page:
        page.goto(live_server + "/ui/")
        page.wait_for("document.body.getAttribute('aria-busy') === 'false'")
        page.click("#series-rows a")
        page.errors  # console errors, uncaught exceptions and CSP violations so far

The protocol goes over a pipe (--remote-debugging-pipe: requests on fd 3, answers and events
on fd 4, one JSON message per NUL-terminated chunk), so no port is opened and nothing beyond
the standard library is needed. The security properties are tests/browser.py's: a fresh
profile and HOME in a temporary folder, host resolution blocked except for loopback, and the
whole process group killed afterwards.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.browser import chromium_args, kill_group, private_env


def _above_4(fd: int) -> int:
    """The same pipe end as a file descriptor numbered 5 or more (the original is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
    os.close(fd)
    return moved


class ProtocolError(RuntimeError):
    """Chromium answered a DevTools request with an error, or not in time."""


class Browser:
    """One headless Chromium with one blank page (see goto); besides loopback, it may reach only
    the host of *url*."""

    def __init__(self, url: str, *, window_size: str = "1280,900", timeout: float = 30) -> None:
        self.url = url
        self.window_size = window_size
        self.timeout = timeout
        self.errors: list[str] = []
        self.downloads: dict[str, str] = {}  # guid -> state of each download
        self._answers: dict[int, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._next_id = 0
        self._session = ""

    # -- the process and the pipe ---------------------------------------------------------------------

    def __enter__(self) -> Browser:
        self.tmp = tempfile.mkdtemp(prefix="timedb-chromium-")
        self.download_dir = Path(self.tmp, "downloads")
        self.download_dir.mkdir()
        self.log = open(Path(self.tmp, "chromium.log"), "wb")  # (closed in __exit__)
        to_chromium, self._commands = os.pipe()
        self._events, from_chromium = os.pipe()
        # (above 4, so that placing one end at fd 3 or 4 cannot overwrite the other)
        to_chromium, from_chromium = (_above_4(fd) for fd in (to_chromium, from_chromium))
        args = chromium_args(self.tmp, self.url, window_size=self.window_size)
        # bash (dash takes only one-digit fds) puts the two pipe ends at fds 3 and 4, where Chromium
        # expects them, then becomes Chromium
        shell = ["bash", "-c", f'exec "$@" 3<&{to_chromium} 4>&{from_chromium}', "bash"]
        self.proc = subprocess.Popen(
            [*shell, *args, "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=private_env(self.tmp),
            cwd=self.tmp,
            pass_fds=(to_chromium, from_chromium),
            start_new_session=True,  # own process group: every helper is killed with it
        )
        os.close(to_chromium)
        os.close(from_chromium)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._attach()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        kill_group(self.proc.pid)
        self.proc.wait(timeout=30)
        os.close(self._commands)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._events, 1 << 20):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._receive(json.loads(raw))
        os.close(self._events)
        with self._changed:
            self._changed.notify_all()

    def _receive(self, message: dict[str, Any]) -> None:
        with self._changed:
            if "id" in message:
                self._answers[message["id"]] = message
            else:
                self._event(message["method"], message.get("params", {}))
            self._changed.notify_all()

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Browser.downloadWillBegin":
            self.downloads[params["guid"]] = "started"
        elif method == "Browser.downloadProgress" and params["state"] != "inProgress":
            self.downloads[params["guid"]] = params["state"]

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """One DevTools request (to the page's session unless session=False); its result."""
        with self._changed:
            self._next_id += 1
            number = self._next_id
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._changed:
            if not self._changed.wait_for(lambda: number in self._answers, timeout=self.timeout):
                log = Path(self.tmp, "chromium.log").read_text(errors="replace")[-2000:]
                raise ProtocolError(f"{method}: no answer within {self.timeout} s; Chromium said:\n{log}")
            answer = self._answers.pop(number)
        if "error" in answer:
            raise ProtocolError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def _attach(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not (pages := [t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page"]):
            if time.monotonic() > deadline:
                raise ProtocolError("Chromium opened no page")
            time.sleep(0.05)
        attached = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Browser.setDownloadBehavior",
            {"behavior": "allowAndName", "downloadPath": str(self.download_dir), "eventsEnabled": True},
            session=False,
        )

    # -- what a test does -------------------------------------------------------------------------------

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise ProtocolError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """The first truthy value of *expression*, polled (a page still loading may throw: polled
        again); fails after *timeout* seconds with the last value or error."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                if value := self.evaluate(expression):
                    return value
            except ProtocolError as error:
                value = error
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout or self.timeout} s: {expression} (last: {value!r})")
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def click_at(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", clickCount=1)
        self.mouse("mouseReleased", x, y, button="left", clickCount=1)

    def click(self, selector: str) -> None:
        """Click the middle of the first element *selector* matches (scrolled into view)."""
        box = self.evaluate(
            f"(e => {{ e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})(document.querySelector({json.dumps(selector)}))"
        )
        self.click_at(*box)

    def press(self, key: str, code: int) -> None:
        """Press and release a key (e.g. "ArrowLeft", 37) in the focused element."""
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code})

    def type_text(self, selector: str, text: str) -> None:
        """Focus a field, select what it holds and type *text* over it."""
        self.evaluate(f"(e => {{ e.focus(); e.select(); }})(document.querySelector({json.dumps(selector)}))")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def downloaded(self, count: int = 1) -> list[Path]:
        """The files downloaded so far, once *count* downloads have finished."""
        deadline = time.monotonic() + self.timeout
        while len(done := [g for g, state in self._download_states().items() if state == "completed"]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} downloads did not finish: {self._download_states()}")
            time.sleep(0.05)
        return [self.download_dir / guid for guid in done]

    def _download_states(self) -> dict[str, str]:
        with self._changed:
            return dict(self.downloads)
