"""The dashboard's pure parts: page rendering, SVG charts, the login-session table.

No server, no clock: figures in, markup (or decisions) out.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import replace

import pytest

from tether.pool import _ui_pages as pages
from tether.pool._session_views import LeaseDevice, SessionView
from tether.pool._ui_auth import LoginSessions, csrf_matches
from tether.pool._ui_svg import bar_chart, nice_ticks
from tether.pool._usage_views import UsageView
from tether.pool._views import DeviceView, NodeView

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
EVIL = '<script>alert("x")</script>&\'"'


def _viewer(**kw: object) -> pages.Viewer:
    base: dict[str, object] = {"user": "ann", "admin": False, "teams": ("ml",), "csrf": "c" * 43}
    base.update(kw)
    return pages.Viewer(**base)  # type: ignore[arg-type]


def _session(**kw: object) -> SessionView:
    base: dict[str, object] = {
        "id": "s1", "user": "ann", "team": "ml", "state": "placed", "node": "gpu1",
        "devices": [LeaseDevice(id="cuda:0", fraction=0.5, memory_bytes=1 << 33)],
        "share": 0.5, "memory_bytes": 1 << 33, "started_at": NOW - 3725.0,
        "submitted_at": NOW - 3800.0, "metering": None, "request": {"fraction": 0.5},
        "reason": None, "queue_deadline": None, "position": None, "name": None,
        "address": None, "last_heartbeat": None, "ended_at": None, "end_reason": None,
    }  # fmt: skip
    base.update(kw)
    return SessionView(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- escaping


def test_every_outside_value_is_escaped() -> None:
    """Whatever a name, model or message holds, it cannot become markup."""
    viewer = _viewer(user=EVIL, teams=(EVIL,), csrf=EVIL)
    session = _session(id=EVIL, user=EVIL, team=EVIL, node=EVIL, reason=EVIL,
                       devices=[LeaseDevice(id=EVIL, fraction=0.5, memory_bytes=1)],
                       request={"model": EVIL, "vendor": EVIL})  # fmt: skip
    device = DeviceView(node=EVIL, id=EVIL, vendor=EVIL, model=EVIL, memory_bytes=1 << 34,
                        arch="", frameworks={}, allocated_share=0.5,
                        allocated_memory_bytes=1 << 33)  # fmt: skip
    # A status is checked when a view is built: the page must still escape whatever
    # the record holds, so the record is bent past its check here.
    node = NodeView(name=EVIL, address=EVIL, status="ready", registered_at=NOW,
                    last_heartbeat=NOW, devices=(device,))  # fmt: skip
    object.__setattr__(node, "status", EVIL)
    quota = pages.QuotaLine(
        team=EVIL, max_share=1.0, max_memory_bytes=None, device_hours_per_month=None,
        share_used=0.5, memory_used=0, device_hours_used=1.0, queued=0,
    )  # fmt: skip
    total = UsageView(team=EVIL, month="2027-01", user="*", device_seconds=7200.0,
                      memory_gib_seconds=3600.0, sessions=1, peak_share=0.5)  # fmt: skip
    rendered = [
        pages.devices_page(viewer, [node], [session], now=NOW),
        pages.sessions_page(viewer, [session], now=NOW, notice=EVIL),
        pages.queue_page(viewer, [replace(session, state="queued", position=1)], now=NOW),
        pages.quotas_page(viewer, [quota]),
        pages.usage_page(viewer, ["2027-01"], [total], csv_href="/ui/usage.csv?months=1"),
        pages.login_page(EVIL),
        pages.error_page(viewer, 403, EVIL),
    ]
    for html in rendered:
        assert "<script" not in html
        assert 'alert("x")' not in html and "&lt;script&gt;alert(&quot;x&quot;)" in html
        assert "&'\"" not in html


def test_sessions_page_shows_slice_age_use_and_a_cancel_form_only_where_allowed() -> None:
    metering = {"device_memory_hwm": 244 << 20, "memory_hwm": 1 << 30, "device_util_mean": 41.6}
    mine = _session(metering=metering, name="sweep-3")
    theirs = _session(id="s2", user="cat")
    html = pages.sessions_page(_viewer(), [mine, theirs], now=NOW)
    row = re.search(r'<tr class="session" id="session-s1".*?</tr>', html)
    assert row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert cells[1] == "sweep-3", cells
    assert cells[6:12] == ["0.50", "8GiB", "1h 02m", "244MiB", "1GiB", "42%"], cells
    assert 'action="/ui/sessions/s1/cancel"' in html
    assert 'action="/ui/sessions/s2/cancel"' not in html  # cat's: ann may not cancel it
    admin = pages.sessions_page(_viewer(admin=True), [mine, theirs], now=NOW)
    assert 'action="/ui/sessions/s2/cancel"' in admin
    assert html.count(f'name="csrf" value="{"c" * 43}"') == 2  # the cancel form and logout


def test_queue_page_orders_by_position_and_shows_waits() -> None:
    first = _session(id="q1", state="queued", position=1, submitted_at=NOW - 30,
                     queue_deadline=NOW + 90, request={"count": 2})  # fmt: skip
    second = _session(id="q2", state="queued", position=2, submitted_at=NOW - 600,
                      request={"memory_bytes": 8 << 30, "model": "*H100*"})  # fmt: skip
    html = pages.queue_page(_viewer(), [second, first], now=NOW)
    assert re.findall(r'<tr class="queued" data-session="(\w+)"', html) == ["q1", "q2"]
    assert re.findall(r'class="num wait">([^<]+)<', html) == ["30s", "10m 00s"]
    assert "1m 30s" in html and "no limit" in html
    assert "2 device(s)" in html and "8GiB, model *H100*" in html


def test_month_labels_count_back_across_new_year() -> None:
    assert pages.month_labels(NOW, 3) == ["2026-11", "2026-12", "2027-01"]
    assert pages.month_labels(NOW, 1) == ["2027-01"]


# --------------------------------------------------------------------------- charts


def test_ticks_are_round_and_cover_the_top() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(126.75) == [0, 50, 100, 150]
    assert nice_ticks(0.03)[-1] >= 0.03
    for top in (0.7, 3, 42, 999, 12_345.6):
        ticks = nice_ticks(top)
        assert ticks[0] == 0 and ticks[-1] >= top and len(ticks) <= 7
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1


def test_bar_heights_are_proportional_and_every_label_escaped() -> None:
    svg = bar_chart(
        title="t", unit="h", groups=["2027-01", "2027-02"],
        series={"ml": [10.0, 40.0], EVIL: [20.0, 0.0]}, element_id="c",
    )  # fmt: skip
    bars = re.findall(r'<rect class="column"[^>]*height="([\d.]+)"[^>]*data-series="([^"]*)"'
                      r'[^>]*data-group="([^"]*)"', svg)  # fmt: skip
    heights = {(series, group): float(h) for h, series, group in bars}
    ml = heights[("ml", "2027-01")]
    assert heights[("ml", "2027-02")] == pytest.approx(4 * ml, rel=0.01)
    assert heights[(pages.esc(EVIL), "2027-01")] == pytest.approx(2 * ml, rel=0.01)
    assert heights[(pages.esc(EVIL), "2027-02")] == 0
    assert "<script" not in svg and svg.startswith("<svg ") and svg.endswith("</svg>")
    empty = bar_chart(title="t", unit="h", groups=["2027-01"], series={}, element_id="e")
    assert "no usage in these months" in empty
    with pytest.raises(ValueError, match="2 values for 1 groups"):
        bar_chart(title="t", unit="h", groups=["a"], series={"ml": [1, 2]}, element_id="x")


# --------------------------------------------------------------------------- logins


def test_a_login_session_ends_at_logout_idle_time_or_max_age() -> None:
    table = LoginSessions(idle_s=100, max_age_s=1000)
    sid, session = table.open("tu_token", NOW)
    assert session.token == "tu_token" and len(sid) >= 40 and session.csrf != sid
    assert table.get(sid, NOW + 99) is not None
    assert table.get(sid, NOW + 99 + 101) is None  # idle too long
    sid, _ = table.open("tu_token", NOW)
    for t in range(90, 1000, 90):
        assert table.get(sid, NOW + t) is not None  # kept alive by use...
    assert table.get(sid, NOW + 1001) is None  # ...but not past its maximum age
    sid, _ = table.open("tu_token", NOW)
    table.close(sid)
    assert table.get(sid, NOW) is None
    assert table.get(None, NOW) is None and table.get("", NOW) is None
    assert table.get("made-up", NOW) is None
    table.close("made-up")  # harmless


def test_the_table_is_bounded_and_drops_the_least_recently_used() -> None:
    table = LoginSessions(limit=3)
    ids = [table.open(f"t{i}", NOW)[0] for i in range(3)]
    assert table.get(ids[0], NOW) is not None  # ids[1] is now the least recently used
    newest, _ = table.open("t3", NOW)
    assert len(table) == 3
    assert table.get(ids[1], NOW) is None
    assert all(table.get(i, NOW) is not None for i in (ids[0], ids[2], newest))


def test_sessions_are_distinct_and_the_table_is_thread_safe() -> None:
    table = LoginSessions()
    out: list[str] = []
    lock = threading.Lock()

    def login() -> None:
        for _ in range(200):
            sid, _ = table.open("t", NOW)
            with lock:
                out.append(sid)

    threads = [threading.Thread(target=login) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(set(out)) == len(out) == 800 == len(table)


def test_csrf_tokens_must_match_exactly() -> None:
    assert csrf_matches("abc", "abc")
    for wrong in (None, "", "abd", "abc ", "ab", "ABC"):
        assert not csrf_matches("abc", wrong)
    with pytest.raises(ValueError):
        LoginSessions(idle_s=0)
