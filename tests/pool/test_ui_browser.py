"""The dashboard in a real headless Chromium, against a real pool.

Log in through the form, see a session placed through the API appear on the
sessions page, cancel it with its button, log out. What must be on each page
is checked in the DOM (never in pixels); screenshots are taken and checked to
be PNGs of the window's size. Needs Debian's ``chromium`` (``.ci/run``
installs it); without it, or if it will not start, the test skips and says why.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.pool._client import PoolClient

from ._browser import Browser, BrowserUnavailable, open_browser
from ._pooltest import DEVICES, PoolServer, http, run_pool_server

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1280, 800


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, str, str]]:
    """A pool with team ml, user ann and node gpu1: (server, ann's token, node token)."""
    root = tmp_path_factory.mktemp("pool-ui-browser")
    with run_pool_server(root, None, "--node-timeout", "600", "--lease-timeout", "600") as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        ann_token = admin.create_token(user="ann")["token"]
        node_token = admin.create_token(kind="node", node="gpu1")["token"]
        PoolClient(server.url, node_token).register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
        yield server, ann_token, node_token


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


def test_log_in_see_a_session_appear_cancel_it_and_log_out(
    pool: tuple[PoolServer, str, str], browser: Browser, tmp_path: Path
) -> None:
    server, ann_token, _node_token = pool
    url = server.url

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
    assert _count(browser, "tr.device") == len(DEVICES)
    assert _count(browser, "header nav a") == 5

    browser.goto(url + "/ui/sessions")
    assert _count(browser, "#sessions-empty") == 1
    session = PoolClient(url, ann_token).request_slice(fraction=0.5, memory="8GiB")
    assert session["state"] == "placed"
    sid = session["id"]
    row = f"tr.session[data-session={json.dumps(sid)}]"

    browser.goto(url + "/ui/sessions")
    browser.wait_for(f"!!document.querySelector({json.dumps(row)})")
    cells = browser.evaluate(
        f"[...document.querySelector({json.dumps(row)}).cells].map(c => c.textContent.trim())"
    )
    assert cells[:6] == [sid, "ann", "ml", "gpu1", "cuda:0", "0.50"], cells
    assert cells[6] == "8GiB"
    assert _count(browser, f"{row} form.cancel button") == 1
    shot = browser.screenshot(tmp_path / "sessions.png")
    assert _png_size(shot)[0] == WIDTH

    browser.evaluate(f"document.querySelector({json.dumps(row + ' form.cancel button')}).click()")
    browser.wait_for(
        "location.pathname === '/ui/sessions' && document.readyState === 'complete' "
        f"&& !document.querySelector({json.dumps(row)}) "
        "&& !!document.querySelector('#sessions-empty')"
    )
    status, body = http("GET", f"{url}/v1/sessions/{sid}", ann_token)
    assert status == 200 and (body["state"], body["end_reason"]) == ("ended", "released")

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
