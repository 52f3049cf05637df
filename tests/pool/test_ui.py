"""The web dashboard over plain HTTP: a real `tether pool serve`, real tokens, real cookies.

What a browser does is done by hand here (forms posted urlencoded, the cookie
sent back, redirects not followed) so each answer's status, headers and body
can be checked: login, cookie flags, team scoping, CSRF and origin refusal,
cancel, logout, CSV. test_ui_browser.py drives a real Chromium.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tether.poolapi import PoolClient

from ._pooltest import DEVICES, PoolServer, http, run_pool_server

pytestmark = pytest.mark.slow

MiB = 1 << 20


@dataclass
class Answer:
    status: int
    headers: Message
    text: str

    def location(self) -> str:
        return self.headers.get("location", "")

    def set_cookie(self) -> str:
        return "; ".join(self.headers.get_all("set-cookie") or [])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the test reads each 303 itself


_opener = urllib.request.build_opener(_NoRedirect)


def web(
    method: str,
    url: str,
    *,
    cookie: str | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One browser-like request: urlencoded form, the session cookie, no redirects."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    h = {"Content-Type": "application/x-www-form-urlencoded"} if data is not None else {}
    if cookie is not None:
        h["Cookie"] = f"tether_ui={cookie}"
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with _opener.open(req, timeout=30) as resp:
            return Answer(resp.status, resp.headers, resp.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.headers, exc.read().decode())


def cookie_of(answer: Answer) -> str:
    match = re.search(r"tether_ui=([^;]+)", answer.set_cookie())
    assert match, answer.set_cookie()
    return match.group(1)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page[:2000]
    return match.group(1)


@dataclass
class World:
    server: PoolServer
    admin: PoolClient
    ann: PoolClient  # team ml
    cat: PoolClient  # team ml too, not ann
    bob: PoolClient  # team vision
    tokens: dict[str, str]
    node_token: str
    registration: str

    @property
    def url(self) -> str:
        return self.server.url

    def login(self, who: str) -> str:
        answer = web("POST", self.url + "/ui/login", form={"token": self.tokens[who]})
        assert answer.status == 303, answer.text
        return cookie_of(answer)

    def page(self, cookie: str, path: str) -> str:
        answer = web("GET", self.url + path, cookie=cookie)
        assert answer.status == 200, (path, answer.status, answer.text[:500])
        return answer.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("pool-ui")
    with run_pool_server(root, None, "--node-timeout", "600", "--lease-timeout", "600") as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_team("vision")
        tokens = {"admin": server.admin_token}
        for user, team in (("ann", "ml"), ("cat", "ml"), ("bob", "vision")):
            admin.create_user(user, teams=[team])
            tokens[user] = admin.create_token(user=user)["token"]
        admin.set_quota("ml", max_share=4, max_memory="100GiB", device_hours_per_month=500)
        node_token = admin.create_token(kind="node", node="gpu1")["token"]
        reg = PoolClient(server.url, node_token).register_node(
            "gpu1", "tcp://127.0.0.1:7447", DEVICES
        )
        yield World(
            server=server,
            admin=admin,
            ann=PoolClient(server.url, tokens["ann"]),
            cat=PoolClient(server.url, tokens["cat"]),
            bob=PoolClient(server.url, tokens["bob"]),
            tokens=tokens,
            node_token=node_token,
            registration=reg["registration"],
        )


@pytest.fixture
def leases(world: World) -> Iterator[dict[str, str]]:
    """ann and bob each hold a slice on gpu1; ann also waits for two whole devices."""
    ann = world.ann.request_slice(fraction=0.5, memory="8GiB")
    bob = world.bob.request_slice(fraction=0.25)
    queued = world.ann.request_slice(count=2, wait=True, queue_timeout_s=600)
    assert (ann["state"], bob["state"], queued["state"]) == ("placed", "placed", "queued")
    beat = {
        "sent_at": time.time(),
        "registration": world.registration,
        "sessions": [
            {
                "session_id": ann["id"], "wall_seconds": 1.0, "memory_hwm": 300 * MiB,
                "memory_byte_seconds": 300.0 * MiB, "device_memory_hwm": 244 * MiB,
                "device_memory_byte_seconds": 244.0 * MiB, "device_util_mean": 37.0,
                "device_util_max": 80.0, "samples": 2,
            }
        ],
    }  # fmt: skip
    status, body = http("POST", world.url + "/v1/nodes/gpu1/heartbeat", world.node_token, beat)
    assert status == 200, body
    yield {"ann": ann["id"], "bob": bob["id"], "queued": queued["id"]}
    for s in world.admin.sessions():
        world.admin.release(s["id"])


# --------------------------------------------------------------------------- login


def test_every_page_sends_a_logged_out_browser_to_the_login_form(world: World) -> None:
    for path in ("/ui", "/ui/devices", "/ui/sessions", "/ui/queue", "/ui/quotas", "/ui/usage",
                 "/ui/usage.csv"):  # fmt: skip
        for cookie in (None, "forged-session-id"):
            answer = web("GET", world.url + path, cookie=cookie)
            assert (answer.status, answer.location()) == (303, "/ui/login"), path
    form = web("GET", world.url + "/ui/login")
    assert form.status == 200 and 'name="token"' in form.text and 'type="password"' in form.text


def test_login_sets_a_strict_httponly_session_cookie_that_is_not_the_token(world: World) -> None:
    token = world.tokens["ann"]
    answer = web("POST", world.url + "/ui/login", form={"token": token})
    assert (answer.status, answer.location()) == (303, "/ui/devices")
    header = answer.set_cookie()
    flags = {part.strip().lower() for part in header.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags, header
    assert "secure" not in flags  # plain http here; over https the cookie is Secure
    cookie = cookie_of(answer)
    assert len(cookie) >= 40
    secret = token.split("_", 2)[2]
    assert secret not in header and secret not in answer.location()
    page = world.page(cookie, "/ui/devices")
    assert '<span id="viewer">ann</span>' in page
    assert secret not in page and token not in page


def test_wrong_tokens_node_tokens_and_tokens_in_the_url_do_not_log_in(world: World) -> None:
    cases = {
        "empty": ("", 400),
        "garbage": ("hunter2", 401),
        "wrong secret": (world.tokens["ann"][:-4] + "AAAA", 401),
        "node token": (world.node_token, 403),
    }
    for what, (token, status) in cases.items():
        answer = web("POST", world.url + "/ui/login", form={"token": token})
        assert answer.status == status, what
        assert 'id="login-error"' in answer.text, what
        assert "tether_ui" not in answer.set_cookie(), what
    huge = web("POST", world.url + "/ui/login", form={"token": world.tokens["ann"] + "x" * 20000})
    assert huge.status == 413 and "tether_ui" not in huge.set_cookie()
    query = urllib.parse.urlencode({"token": world.tokens["ann"]})
    answer = web("GET", f"{world.url}/ui/login?{query}")
    assert answer.status == 200 and "tether_ui" not in answer.set_cookie()
    answer = web("GET", f"{world.url}/ui/devices?{query}")
    assert (answer.status, answer.location()) == (303, "/ui/login")


def test_a_login_posted_from_another_site_is_refused(world: World) -> None:
    other_port = urllib.parse.urlsplit(world.url)._replace(netloc="127.0.0.1:1").geturl()
    for header in (
        {"Origin": "http://evil.example"},
        {"Referer": "http://evil.example/x"},
        {"Origin": other_port},  # same host, another port: another origin
        {"Origin": "null"},  # an opaque origin: a sandboxed frame, a data: URL
    ):
        answer = web(
            "POST", world.url + "/ui/login", form={"token": world.tokens["ann"]}, headers=header
        )
        assert answer.status == 403, header
        assert "posted from another site" in answer.text
        assert "tether_ui" not in answer.set_cookie()
    # Behind a proxy that ends TLS the browser's origin is https, the pool sees http.
    https = world.url.replace("http://", "https://")
    proxied = web(
        "POST", world.url + "/ui/login", form={"token": world.tokens["ann"]},
        headers={"Origin": https},
    )  # fmt: skip
    assert proxied.status == 303
    same = web(
        "POST", world.url + "/ui/login", form={"token": world.tokens["ann"]},
        headers={"Origin": world.url},
    )  # fmt: skip
    assert same.status == 303


def test_logout_needs_the_form_token_and_ends_the_session(world: World) -> None:
    cookie = world.login("ann")
    csrf = csrf_of(world.page(cookie, "/ui/sessions"))
    refused = web("POST", world.url + "/ui/logout", cookie=cookie, form={"csrf": "nope"})
    assert refused.status == 403
    world.page(cookie, "/ui/sessions")  # still logged in
    answer = web("POST", world.url + "/ui/logout", cookie=cookie, form={"csrf": csrf})
    assert (answer.status, answer.location()) == (303, "/ui/login")
    cleared = answer.set_cookie().lower()
    assert 'tether_ui=""' in cleared and "max-age=0" in cleared, cleared
    after = web("GET", world.url + "/ui/sessions", cookie=cookie)
    assert (after.status, after.location()) == (303, "/ui/login")


def test_logging_in_again_replaces_the_old_session(world: World) -> None:
    old = world.login("ann")
    answer = web("POST", world.url + "/ui/login", cookie=old, form={"token": world.tokens["bob"]})
    new = cookie_of(answer)
    assert new != old
    assert '<span id="viewer">bob</span>' in world.page(new, "/ui/devices")
    gone = web("GET", world.url + "/ui/devices", cookie=old)
    assert (gone.status, gone.location()) == (303, "/ui/login")


def test_the_dashboard_is_not_part_of_the_api_schema(world: World) -> None:
    status, schema = http("GET", world.url + "/v1/openapi.json")
    assert status == 200 and schema["paths"]
    assert [p for p in schema["paths"] if p.startswith("/ui")] == []


def test_a_revoked_token_logs_its_browsers_out_at_once(world: World) -> None:
    issued = world.admin.create_token(user="ann", label="browser")
    answer = web("POST", world.url + "/ui/login", form={"token": issued["token"]})
    cookie = cookie_of(answer)
    world.page(cookie, "/ui/devices")
    world.admin.revoke_token(issued["id"])
    after = web("GET", world.url + "/ui/devices", cookie=cookie)
    assert (after.status, after.location()) == (303, "/ui/login")


# --------------------------------------------------------------------------- scoping


def test_users_see_their_own_team_and_admins_see_all(world: World, leases: dict[str, str]) -> None:
    ann, admin = world.login("ann"), world.login("admin")
    mine = world.page(ann, "/ui/sessions")
    assert f'data-session="{leases["ann"]}"' in mine
    assert leases["bob"] not in mine and ">vision<" not in mine
    everything = world.page(admin, "/ui/sessions")
    assert leases["ann"] in everything and leases["bob"] in everything
    assert 'id="scope">(all teams)' in everything and 'id="scope">(team ml)' in mine

    queue = world.page(ann, "/ui/queue")
    assert f'data-session="{leases["queued"]}"' in queue and "2 device(s)" in queue
    assert re.search(r'class="num position">1<', queue)
    assert leases["queued"] not in world.page(world.login("bob"), "/ui/queue")

    quotas = world.page(ann, "/ui/quotas")
    assert 'data-team="ml"' in quotas and 'data-team="vision"' not in quotas
    assert "0.50 of 4.00" in quotas and "8GiB of 100GiB" in quotas
    admin_quotas = world.page(admin, "/ui/quotas")
    assert 'data-team="ml"' in admin_quotas and 'data-team="vision"' in admin_quotas

    csv_ann = web("GET", world.url + "/ui/usage.csv", cookie=ann).text
    csv_admin = web("GET", world.url + "/ui/usage.csv", cookie=admin).text
    assert ",ml,ann," in csv_ann and ",vision," not in csv_ann
    assert ",ml,ann," in csv_admin and ",vision,bob," in csv_admin


def test_devices_show_allocation_and_metered_use(world: World, leases: dict[str, str]) -> None:
    page = world.page(world.login("ann"), "/ui/devices")
    assert 'data-node="gpu1"' in page and "status-ready" in page
    rows = re.findall(r'<tr class="device".*?</tr>', page)
    assert len(rows) == len(DEVICES)
    shares = sorted(re.findall(r'class="share">([0-9.]+)<', page))
    assert shares == ["0.25", "0.50"] or shares == ["0.00", "0.75"], shares
    assert "244MiB" in page and "37%" in page  # ann's metered peak and mean utilisation


def test_only_sessions_the_viewer_may_cancel_have_a_button(
    world: World, leases: dict[str, str]
) -> None:
    def buttons(who: str) -> set[str]:
        page = world.page(world.login(who), "/ui/sessions")
        return set(re.findall(r'<button type="submit" data-session="([^"]+)"', page))

    assert buttons("ann") == {leases["ann"]}
    assert buttons("cat") == set()  # same team, but only the owner or an admin may cancel
    assert buttons("admin") == {leases["ann"], leases["bob"]}


# --------------------------------------------------------------------------- cancel


def test_cancel_is_refused_without_the_right_form_token_or_from_another_site(
    world: World, leases: dict[str, str]
) -> None:
    cookie = world.login("ann")
    csrf = csrf_of(world.page(cookie, "/ui/sessions"))
    other_csrf = csrf_of(world.page(world.login("ann"), "/ui/sessions"))  # another login's
    url = f"{world.url}/ui/sessions/{leases['ann']}/cancel"
    attempts = {
        "no form token": ({}, {}),
        "wrong form token": ({"csrf": "x" * 43}, {}),
        "another session's token": ({"csrf": other_csrf}, {}),
        "from another site": ({"csrf": csrf}, {"Origin": "http://evil.example"}),
    }
    for what, (form, headers) in attempts.items():
        answer = web("POST", url, cookie=cookie, form=form, headers=headers)
        assert answer.status == 403, what
        why = "posted from another site" if headers else "token is missing or wrong"
        assert why in answer.text, what
        assert world.ann.session(leases["ann"])["state"] == "placed", what
    logged_out = web("POST", url, form={"csrf": csrf})
    assert (logged_out.status, logged_out.location()) == (303, "/ui/login")
    assert world.ann.session(leases["ann"])["state"] == "placed"


def test_cancel_follows_the_api_rules(world: World, leases: dict[str, str]) -> None:
    url = f"{world.url}/ui/sessions/{leases['ann']}/cancel"
    for who, status in (("bob", 404), ("cat", 403)):  # another team's: not even found
        cookie = world.login(who)
        csrf = csrf_of(world.page(cookie, "/ui/sessions"))
        answer = web("POST", url, cookie=cookie, form={"csrf": csrf})
        assert answer.status == status, who
        assert 'id="error"' in answer.text
        assert world.ann.session(leases["ann"])["state"] == "placed", who

    cookie = world.login("ann")
    csrf = csrf_of(world.page(cookie, "/ui/sessions"))
    answer = web(
        "POST", url, cookie=cookie, form={"csrf": csrf, "back": "sessions"},
        headers={"Origin": world.url},
    )  # fmt: skip
    assert (answer.status, answer.location()) == (303, "/ui/sessions")
    ended = world.ann.session(leases["ann"])
    assert (ended["state"], ended["end_reason"]) == ("ended", "released")
    assert leases["ann"] not in world.page(cookie, "/ui/sessions")

    # An admin withdraws bob's queued-or-placed session from the queue page's form.
    admin = world.login("admin")
    csrf = csrf_of(world.page(admin, "/ui/queue"))
    answer = web(
        "POST", f"{world.url}/ui/sessions/{leases['queued']}/cancel", cookie=admin,
        form={"csrf": csrf, "back": "queue"},
    )  # fmt: skip
    assert (answer.status, answer.location()) == (303, "/ui/queue")
    assert world.ann.session(leases["queued"])["state"] == "ended"


# --------------------------------------------------------------------------- usage


def test_usage_page_draws_charts_and_exports_the_apis_csv(
    world: World, leases: dict[str, str]
) -> None:
    admin = world.login("admin")
    page = world.page(admin, "/ui/usage?months=3")
    for chart in ("chart-device-hours", "chart-memory-gib-hours"):
        svg = re.search(rf'<svg [^>]*id="{chart}".*?</svg>', page, re.S)
        assert svg, chart
        bars = re.findall(r'<rect class="column"[^>]*data-series="([^"]+)"', svg.group(0))
        assert sorted(set(bars)) == ["ml", "vision"] and len(bars) == 2 * 3, bars
    assert 'href="/ui/usage.csv?months=3"' in page

    answer = web("GET", world.url + "/ui/usage.csv?months=3", cookie=admin)
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = answer.text.splitlines()
    status, api_csv = http("GET", world.url + "/v1/usage?format=csv", world.tokens["admin"])
    assert status == 200
    assert lines[0] == api_csv.splitlines()[0]  # the same columns as the API's export
    month = time.strftime("%Y-%m", time.gmtime())
    this_month = {tuple(line.split(",")[:3]) for line in lines[1:] if line.startswith(month)}
    api_rows = {tuple(line.split(",")[:3]) for line in api_csv.splitlines()[1:]}
    assert this_month == api_rows and (month, "ml", "ann") in this_month


def test_pages_are_self_contained_and_sent_with_a_strict_policy(world: World) -> None:
    cookie = world.login("admin")
    for path in ("/ui/login", "/ui/devices", "/ui/sessions", "/ui/queue", "/ui/quotas",
                 "/ui/usage"):  # fmt: skip
        answer = web("GET", world.url + path, cookie=cookie)
        assert answer.status == 200, path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in answer.text, path
        # Nothing is fetched from elsewhere (the SVG namespace is a name, not a fetch).
        outside = re.findall(r'(?:src|href)="(https?:[^"]*)"', answer.text)
        assert outside == [], (path, outside)
