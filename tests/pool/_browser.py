"""A headless Chromium driven through its DevTools protocol over a pipe.

Standard library only: Chromium started with ``--remote-debugging-pipe`` reads
JSON commands from fd 3 and writes answers and events to fd 4, each message
ended by a NUL byte. No websocket, no Playwright, no browser download: the
Debian ``chromium`` package (``apt-get install chromium``; ``.ci/run`` installs
it) is all it needs. Used by ``test_ui_browser.py`` and by
``bench/dashboard_screenshots.py``.

Single-threaded: :meth:`Browser.call` writes a command and reads until its
answer arrives, dropping the events it reads on the way; every read is bounded
by a deadline, so a browser that hangs fails the caller instead of hanging it.
:meth:`Browser.close` ends the browser's whole process group.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserError", "BrowserUnavailable", "find_chromium", "open_browser"]

#: Flags that let Chromium run headless as root in a container, reaching nothing.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0


class BrowserError(Exception):
    """The browser answered a command with an error, or did not answer in time."""


class BrowserUnavailable(Exception):
    """There is no Chromium to run, or it would not start (the message says why)."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$TETHER_CHROMIUM``, else ``chromium`` on PATH."""
    return os.environ.get("TETHER_CHROMIUM") or shutil.which("chromium")


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are numbered 10 or above, clear of the fds 3 and 4 the child needs."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Browser:
    """One Chromium process and one page (tab) in it."""

    def __init__(self, executable: str, profile: Path, *, width: int, height: int) -> None:
        to_browser_r, self._to_browser = _pipe()
        self._from_browser, from_browser_w = _pipe()

        # Chromium wants its pipe on fds 3 and 4 exactly; bash moves ours there.
        # (A preexec_fn cannot: subprocess closes fds it was not told to pass
        # after running it.)
        r, w = to_browser_r, from_browser_w
        argv = [
            "bash", "-c", f'exec "$0" "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-',
            executable, *FLAGS, f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        self._log = profile / "chromium.log"
        with self._log.open("wb") as log:
            try:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(r, w),
                    start_new_session=True,
                )
            except OSError as exc:
                for fd in (r, w, self._to_browser, self._from_browser):
                    os.close(fd)
                raise BrowserUnavailable(f"cannot run {executable}: {exc}") from None
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        try:
            self._attach(width, height)
        except BrowserError as exc:
            self.close()
            raise BrowserUnavailable(f"chromium did not start: {exc}\n{self.log()}") from None
        except BaseException:
            self.close()
            raise

    def _attach(self, width: int, height: int) -> None:
        """Open one page and attach to it; its commands then go to that page."""
        version = self.call("Browser.getVersion", timeout=START_TIMEOUT_S, page=False)
        self.version = str(version.get("product", "?"))
        target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, page=False
        )
        self._session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-3000:] if self._log.exists() else ""

    # ----------------------------------------------------------- protocol

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for the browser")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser closed its pipe (exit {self.proc.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = CALL_TIMEOUT_S,
        page: bool = True,
    ) -> dict[str, Any]:
        """Send one command (to the page unless ``page`` is false); its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self._session is not None:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._to_browser, data) :]
        except OSError as exc:
            raise BrowserError(f"cannot write to the browser: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == message["id"]:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            # Anything else is an event: nothing here waits on events (pages are
            # waited on by polling the DOM), so they are dropped.

    # ------------------------------------------------------------- page

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} raised {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = CALL_TIMEOUT_S) -> Any:
        """Poll ``expression`` until it is truthy (navigations in between are fine)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:  # the page was replaced mid-evaluation
                last = exc
            else:
                if value:
                    return value
                last = value
            time.sleep(0.05)
        try:
            where = self.evaluate("location.href + '\\n' + document.body.innerText.slice(0, 600)")
        except BrowserError as exc:
            where = str(exc)
        raise BrowserError(
            f"{expression!r} not true within {timeout:.0f}s (last: {last!r}); the page:\n{where}"
        )

    def goto(self, url: str) -> None:
        """Load ``url`` and wait until the new document (after any redirects) has loaded."""
        # A mark on the old document tells it from the new one, whatever URL the
        # new one ends up at.
        self.evaluate("window.__tetherOld = true")
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot load {url}: {answer['errorText']}")
        self.wait_for("!window.__tetherOld && document.readyState === 'complete'")

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page, written to ``path`` and returned."""
        data = base64.b64decode(
            self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})[
                "data"
            ]
        )
        path.write_bytes(data)
        return data

    def cookies(self, url: str) -> list[dict[str, Any]]:
        """The browser's cookies for ``url``, with their flags as it sees them."""
        return list(self.call("Network.getCookies", {"urls": [url]}).get("cookies", []))

    def close(self) -> None:
        """Ask the browser to quit, then end its whole process group, and close the pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(BrowserError):
                self.call("Browser.close", page=False, timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers (zygote, GPU) too
        self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def open_browser(*, width: int = 1280, height: int = 800) -> Iterator[Browser]:
    """A browser with a new empty profile, closed (and its profile removed) afterwards.

    Raises :class:`BrowserUnavailable` when there is no Chromium or it will not start.
    """
    executable = find_chromium()
    if executable is None:
        raise BrowserUnavailable(
            "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        )
    with tempfile.TemporaryDirectory(prefix="tether-chromium-") as profile:
        browser = Browser(executable, Path(profile), width=width, height=height)
        try:
            yield browser
        finally:
            browser.close()
