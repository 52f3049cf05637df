"""The dashboard in a real headless Chromium, against a real pool.

Log in through the form; start a real session (a slice from the pool, its
ticket shown to a real acceptor, a worker process); see it appear on the
sessions page with the worker's metered memory; cancel it with its button and
see the acceptor stop the worker; read the usage chart; log out. What must be on each page
is checked in the DOM (never in pixels); screenshots are taken and checked to
be PNGs of the window's size. Needs Debian's ``chromium`` (``.ci/run``
installs it); without it, or if it will not start, the test skips and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from _serving import sandbox_flags
from tether.poolapi import PoolClient

from ._browser import Browser, BrowserUnavailable, open_browser
from ._pooltest import PoolServer, http, repo_env, run_pool_server, wait_until

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1280, 800


@dataclass
class Pool:
    server: PoolServer
    ann_token: str
    acceptor: str  # the address of node "a", a real `tether serve --pool`


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A pool with team ml and user ann, and a real acceptor registered as node "a"."""
    root = tmp_path_factory.mktemp("pool-ui-browser")
    with run_pool_server(root, None, "--node-timeout", "600", "--lease-timeout", "600") as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        ann_token = admin.create_token(user="ann")["token"]
        token_file, ready = root / "node-a", root / "acceptor.addr"
        token_file.write_text(admin.create_token(kind="node", node="a")["token"])
        env = {**repo_env(), "XDG_CONFIG_HOME": str(root / "config")}
        argv = [
            sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
            "--pool", server.url, "--node-token-file", str(token_file), "--name", "a",
            "--heartbeat-interval", "1", "--ready-file", str(ready), *sandbox_flags(),
        ]  # fmt: skip
        with (root / "acceptor.log").open("wb") as log:
            proc = subprocess.Popen(
                argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=90)
            assert proc.poll() is None, (root / "acceptor.log").read_text()
            yield Pool(server=server, ann_token=ann_token, acceptor=ready.read_text().strip())
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@pytest.fixture
def browser() -> Iterator[Browser]:
    try:
        with open_browser(width=WIDTH, height=HEIGHT) as b:
            yield b
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless Chromium: {exc}")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _count(browser: Browser, selector: str) -> int:
    return int(browser.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _worker_host_pid(session_id: str) -> int:
    """The host pid of a session's worker (a sandboxed worker is pid 2 in its own namespace)."""
    needle = f"--session\0{session_id}\0".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in b"\0".join(argv) and argv[1:3] == [b"-m", b"tether.acceptor._worker"]:
                return int(name)
    raise AssertionError(f"no worker process for session {session_id}")


def test_log_in_see_a_session_appear_cancel_it_and_log_out(
    pool: Pool, browser: Browser, tmp_path: Path
) -> None:
    import tether

    url, ann_token = pool.server.url, pool.ann_token
    browser.goto(url + "/ui/sessions")  # logged out: sent to the form
    browser.wait_for("location.pathname === '/ui/login' && !!document.querySelector('#token')")
    browser.evaluate(
        f"document.querySelector('#token').value = {json.dumps(ann_token)};"
        "document.querySelector('#login-submit').click()"
    )
    browser.wait_for(
        "location.pathname === '/ui/devices' && document.readyState === 'complete' "
        "&& !!document.querySelector('#viewer')"
    )
    assert browser.evaluate("document.querySelector('#viewer').textContent") == "ann"
    assert ann_token not in browser.evaluate("location.href")
    # The page's scripts (it has none, but an injected one would) cannot read the cookie.
    assert browser.evaluate("document.cookie") == ""
    (cookie,) = [c for c in browser.cookies(url + "/ui/") if c["name"] == "tether_ui"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert _count(browser, "section.node[data-node=a] tr.device") >= 1
    assert _count(browser, "header nav a") == 5

    browser.goto(url + "/ui/sessions")
    assert _count(browser, "#sessions-empty") == 1

    # A real session: a slice from the pool, its ticket shown to the real acceptor,
    # a worker process running this test's calls.
    client = PoolClient(url, ann_token)
    lease = client.request_slice(fraction=0.5, node="a", wait=False, name="notebook-1")
    sid = lease["id"]
    session = tether.connect(pool.acceptor, token=lease["ticket"], ordered_output=False)
    try:
        worker_pid = _worker_host_pid(session.session_id)  # not its getpid(): own PID namespace
        assert worker_pid != os.getpid() and _alive(worker_pid)
        # The acceptor's heartbeats carry the worker's metering to the pool.
        wait_until(lambda: (client.session(sid).get("metering") or {}).get("memory_hwm"))

        row = f"tr.session[data-session={json.dumps(sid)}]"
        browser.goto(url + "/ui/sessions")
        browser.wait_for(f"!!document.querySelector({json.dumps(row)})")
        cells = browser.evaluate(
            f"[...document.querySelector({json.dumps(row)}).cells].map(c => c.textContent.trim())"
        )
        assert cells[:5] == [sid, "notebook-1", "ann", "ml", "a"], cells
        assert cells[6] == "0.50", cells
        assert cells[10].endswith(("MiB", "GiB")), cells  # the worker's metered host memory
        assert _count(browser, f"{row} form.cancel button") == 1
        shot = browser.screenshot(tmp_path / "sessions.png")
        assert _png_size(shot)[0] == WIDTH

        browser.evaluate(
            f"document.querySelector({json.dumps(row + ' form.cancel button')}).click()"
        )
        browser.wait_for(
            "location.pathname === '/ui/sessions' && document.readyState === 'complete' "
            f"&& !document.querySelector({json.dumps(row)}) "
            "&& !!document.querySelector('#sessions-empty')"
        )
        status, body = http("GET", f"{url}/v1/sessions/{sid}", ann_token)
        assert status == 200 and (body["state"], body["end_reason"]) == ("ended", "released")
        # The acceptor hears of the ended lease at its next heartbeat and stops the worker.
        wait_until(lambda: not _alive(worker_pid), timeout=60)
    finally:
        with contextlib.suppress(Exception):
            session.close()

    browser.goto(url + "/ui/usage")
    browser.wait_for("document.querySelectorAll('#chart-device-hours rect.column').length > 0")
    series = browser.evaluate(
        "[...document.querySelectorAll('#chart-device-hours rect.column')]"
        ".map(r => r.dataset.series)"
    )
    assert set(series) == {"ml"}
    # Laid out as columns inside the chart (a page style leaking onto the SVG once
    # stretched them into stripes across it).
    widths = browser.evaluate(
        "[...document.querySelectorAll('#chart-device-hours rect.column')]"
        ".map(r => r.getBoundingClientRect().width)"
    )
    chart_width = browser.evaluate(
        "document.querySelector('#chart-device-hours').getBoundingClientRect().width"
    )
    assert widths and all(0 < w < chart_width / 6 for w in widths), (widths, chart_width)
    assert _count(browser, "#chart-memory-gib-hours") == 1
    assert _count(browser, "a#csv") == 1
    assert _png_size(browser.screenshot(tmp_path / "usage.png"))[0] == WIDTH

    browser.evaluate("document.querySelector('#logout').click()")
    browser.wait_for("location.pathname === '/ui/login' && document.readyState === 'complete'")
    assert [c for c in browser.cookies(url + "/ui/") if c["name"] == "tether_ui"] == []
    browser.goto(url + "/ui/sessions")
    browser.wait_for("location.pathname === '/ui/login'")
