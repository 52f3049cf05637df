"""The dashboard's pages, rendered to HTML with the standard library.

(Over 400 lines: one short function per page and the helpers they share; nothing else.)

Each function takes the views the service's public methods return
(:mod:`tether.pool._views`, :mod:`tether.pool._session_views`: what the JSON
API sends, as records) and returns a whole page. Every value
that came from outside -- names, ids, models, messages -- goes through
:func:`esc`; markup is built only from literals here. No JavaScript, no
external stylesheet, font or image: a page works offline and under a
``Content-Security-Policy`` that allows nothing from elsewhere.

Elements tests rely on carry ids or classes (``#sessions``, ``tr.session``,
``form.cancel``, ``#chart-device-hours``): the browser test reads the DOM,
never pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from tether._version import __version__
from tether.pool._ui_svg import bar_chart
from tether.pool._values import format_memory

if TYPE_CHECKING:
    from tether.pool._session_views import SessionView
    from tether.pool._usage_views import UsageView
    from tether.pool._views import DeviceView, NodeView

__all__ = [
    "PAGES",
    "QuotaLine",
    "Viewer",
    "devices_page",
    "error_page",
    "esc",
    "login_page",
    "month_labels",
    "queue_page",
    "quotas_page",
    "sessions_page",
    "usage_page",
]

#: (path under /ui, navigation label), in the navigation's order.
PAGES = (
    ("devices", "Devices"),
    ("sessions", "Sessions"),
    ("queue", "Queue"),
    ("quotas", "Quotas"),
    ("usage", "Usage"),
)


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute (quotes escaped too)."""
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """Who is looking, as :meth:`PoolService.me` describes them, and their form token."""

    user: str
    admin: bool
    teams: tuple[str, ...]
    csrf: str

    def may_cancel(self, session: SessionView) -> bool:
        """Mirrors the service's rule (admins, or the session's own user); the
        service decides again when the form is posted."""
        return self.admin or session.user == self.user


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaLine:
    """A team's quota beside its use: open leases now, device-hours this month."""

    team: str
    max_share: float | None
    max_memory_bytes: int | None
    device_hours_per_month: float | None
    share_used: float
    memory_used: int
    device_hours_used: float
    queued: int


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f2937;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cbd5e1;text-decoration:none;padding:4px 8px;border-radius:4px}
header a.active{background:#374151;color:#fff}
header .who{margin-left:auto;display:flex;gap:8px;align-items:center}
header .brand{font-weight:600;color:#fff}
main{padding:16px;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 24px;background:#fff}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#f3f4f6;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{white-space:nowrap}
.bar{display:inline-block;width:120px;height:10px;background:#e5e7eb;border-radius:2px;
 vertical-align:middle;margin-right:6px;overflow:hidden}
.bar span{display:block;height:100%;background:#0072B2}
.bar span.over{background:#D55E00}
.badge{font-size:12px;padding:1px 6px;border-radius:8px;background:#e5e7eb}
.badge.admin{background:#fde68a}
.status-ready{color:#047857}.status-lost,.status-drained{color:#b91c1c}
.status-cordoned{color:#b45309}
.muted{color:#6b7280}
.error{background:#fee2e2;border:1px solid #fca5a5;padding:8px;border-radius:4px}
.notice{background:#e0f2fe;border:1px solid #7dd3fc;padding:8px;border-radius:4px}
button{font:inherit;cursor:pointer}
form.inline{display:inline;margin:0}
.login{max-width:420px;margin:64px auto;background:#fff;padding:24px;border:1px solid #e5e7eb}
.login input[type=password]{width:100%;box-sizing:border-box;padding:6px;font:inherit}
"""


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Tether pool</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _layout(title: str, active: str, viewer: Viewer, content: str, notice: str = "") -> str:
    nav = "".join(
        f'<a href="/ui/{path}"{" class=active" if path == active else ""}>{esc(label)}</a>'
        for path, label in PAGES
    )
    role = '<span class="badge admin">admin</span>' if viewer.admin else ""
    teams = ", ".join(viewer.teams) or "no team"
    scope = "all teams" if viewer.admin else f"team {teams}"
    header = (
        f'<header><span class="brand">Tether pool</span><nav>{nav}</nav>'
        f'<span class="who"><span id="viewer">{esc(viewer.user)}</span> {role}'
        f'<span class="muted" id="scope">({esc(scope)})</span>'
        '<form class="inline" method="post" action="/ui/logout">'
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        '<button type="submit" id="logout">Log out</button></form></span></header>'
    )
    note = f'<p class="notice" id="notice">{esc(notice)}</p>' if notice else ""
    footer = f'<p class="muted">tether {esc(__version__)}</p>'
    return _document(title, f"{header}<main><h1>{esc(title)}</h1>{note}{content}{footer}</main>")


def _table(table_id: str, heads: Sequence[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="muted" id="{esc(table_id)}-empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    return (
        f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _bar(part: float, whole: float | None) -> str:
    if not whole:
        return ""
    ratio = part / whole
    over = " over" if ratio > 1.0 + 1e-9 else ""
    width = max(0.0, min(ratio, 1.0)) * 100
    return (
        f'<span class="bar"><span class="{over.strip()}" style="width:{width:.1f}%"></span></span>'
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _mem(value: Any) -> str:
    return format_memory(int(value)) if isinstance(value, int | float) else "-"


def _num(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _cancel_form(session: SessionView, viewer: Viewer, label: str, back: str) -> str:
    if not viewer.may_cancel(session):
        return '<span class="muted">-</span>'
    sid = esc(session.id)
    return (
        f'<form class="inline cancel" method="post" action="/ui/sessions/{sid}/cancel">'
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        f'<input type="hidden" name="back" value="{esc(back)}">'
        f'<button type="submit" data-session="{sid}">{esc(label)}</button></form>'
    )


def _model(device: DeviceView) -> str:
    vendor, model = device.vendor or "", device.model or ""
    return model if vendor.lower() in model.lower() else f"{vendor} {model}".strip()


def _request_text(request: Mapping[str, Any]) -> str:
    parts = []
    if request.get("count"):
        parts.append(f"{request['count']} device(s)")
    if request.get("fraction") is not None:
        parts.append(f"{request['fraction']:g} of a device")
    if request.get("memory_bytes") is not None:
        parts.append(format_memory(int(request["memory_bytes"])))
    for key in ("vendor", "model", "node"):
        if request.get(key):
            parts.append(f"{key} {request[key]}")
    for spec in request.get("frameworks") or ():
        parts.append(str(spec))
    return ", ".join(parts) or "one device"


# ------------------------------------------------------------------- pages


def login_page(message: str = "", *, status_note: str = "") -> str:
    """The login form. ``message`` explains a failed try (escaped)."""
    error = f'<p class="error" id="login-error">{esc(message)}</p>' if message else ""
    note = f'<p class="notice">{esc(status_note)}</p>' if status_note else ""
    return _document(
        "Log in",
        '<div class="login"><h1>Tether pool</h1>'
        f"{note}{error}"
        '<form method="post" action="/ui/login" id="login">'
        '<label for="token">API token</label><br>'
        '<input type="password" id="token" name="token" autocomplete="current-password" '
        'placeholder="tu_..." required autofocus><br><br>'
        '<button type="submit" id="login-submit">Log in</button></form>'
        '<p class="muted">Use the token <code>tether admin token create</code> gave you. '
        "It is sent once, in this form; the pool keeps it and gives your browser only a "
        "session cookie.</p></div>",
    )


def devices_page(
    viewer: Viewer,
    nodes: Sequence[NodeView],
    sessions: Sequence[SessionView],
    *,
    now: float,
) -> str:
    """Devices per node: allocated share and memory; metered use of the visible sessions."""
    used: dict[tuple[str, str], list[float]] = {}
    for s in sessions:
        if s.state != "placed" or not s.devices:
            continue
        metering = s.metering or {}
        peak, util = metering.get("device_memory_hwm"), metering.get("device_util_mean")
        devices = s.devices
        for held in devices:
            slot = used.setdefault((s.node or "", held.id), [0.0, 0.0, 0.0])
            if isinstance(peak, int | float):
                slot[0] += peak / len(devices)  # a multi-device session's peak is split evenly
            if isinstance(util, int | float):
                slot[1] += util
                slot[2] += 1
    parts = []
    for n in nodes:
        status = esc(n.status)
        beat = _duration(now - n.last_heartbeat) + " ago" if n.last_heartbeat else "-"
        rows = []
        for d in n.devices:
            metered = used.get((n.name, d.id))
            memory = int(d.memory_bytes)
            share = float(d.allocated_share)
            alloc_mem = int(d.allocated_memory_bytes)
            used_mem = _mem(round(metered[0])) if metered and metered[0] else "-"
            util = f"{metered[1] / metered[2]:.0f}%" if metered and metered[2] else "-"
            rows.append(
                f'<tr class="device" data-node="{esc(n.name)}" data-device="{esc(d.id)}">'
                f"<td>{esc(d.id)}</td><td>{esc(_model(d))}</td>"
                f'<td class="num">{esc(format_memory(memory))}</td>'
                f'<td>{_bar(share, 1.0)}<span class="share">{share:.2f}</span></td>'
                f"<td>{_bar(alloc_mem, memory)}{esc(format_memory(alloc_mem))}</td>"
                f'<td class="num used">{esc(used_mem)}</td><td class="num">{esc(util)}</td></tr>'
            )
        heads = ("device", "model", "memory", "allocated share", "allocated memory")
        table = _table(
            f"node-{n.name}",
            (*heads, "used memory (peak)", "utilisation (mean)"),
            rows,
            "no devices",
        )
        parts.append(
            f'<section class="node" data-node="{esc(n.name)}">'
            f'<h2>{esc(n.name)} <span class="status-{status}">{status}</span> '
            f'<span class="muted">{esc(n.address)} · heartbeat {esc(beat)}</span></h2>'
            f"{table}</section>"
        )
    scope = "" if viewer.admin else " of your team's sessions"
    content = (
        "".join(parts) or '<p class="muted" id="nodes-empty">No node has registered.</p>'
    ) + (
        f'<p class="muted">Used memory and utilisation are what the acceptors metered{scope} '
        "(peak device memory, mean utilisation since each session began); "
        "“-” where a device reports none.</p>"
    )
    return _layout("Devices", "devices", viewer, content)


def sessions_page(
    viewer: Viewer, sessions: Sequence[SessionView], *, now: float, notice: str = ""
) -> str:
    """Open leases with owner, team, slice, age, metered use and a cancel button."""
    rows = []
    for s in sessions:
        if s.state != "placed":
            continue
        metering = s.metering or {}
        devices = ", ".join(d.id for d in s.devices)
        util = metering.get("device_util_mean")
        started = s.started_at if s.started_at is not None else now
        rows.append(
            f'<tr class="session" id="session-{esc(s.id)}" data-session="{esc(s.id)}">'
            f"<td><code>{esc(s.id)}</code></td>"
            f'<td class="name">{esc(s.name or "")}</td><td>{esc(s.user)}</td>'
            f"<td>{esc(s.team)}</td><td>{esc(s.node)}</td><td>{esc(devices)}</td>"
            f'<td class="num">{float(s.share or 0):.2f}</td>'
            f'<td class="num">{esc(_mem(s.memory_bytes))}</td>'
            f'<td class="num age">{esc(_duration(now - started))}</td>'
            f'<td class="num">{esc(_mem(metering.get("device_memory_hwm")))}</td>'
            f'<td class="num">{esc(_mem(metering.get("memory_hwm")))}</td>'
            f'<td class="num">{esc(f"{util:.0f}%" if isinstance(util, int | float) else "-")}'
            f"</td><td>{_cancel_form(s, viewer, 'Cancel', 'sessions')}</td></tr>"
        )
    heads = (
        "session", "name", "user", "team", "node", "devices", "share", "memory", "age",
        "device memory used (peak)", "host memory (peak)", "utilisation", "",
    )  # fmt: skip
    table = _table("sessions", heads, rows, "No open sessions.")
    return _layout("Sessions", "sessions", viewer, table, notice)


def queue_page(
    viewer: Viewer, sessions: Sequence[SessionView], *, now: float, notice: str = ""
) -> str:
    """Queued requests in queue order, with their wait so far and time left."""
    queued = sorted(
        (s for s in sessions if s.state == "queued"),
        key=lambda s: (s.position is None, s.position or 0, s.submitted_at),
    )
    rows = []
    for s in queued:
        deadline = s.queue_deadline
        left = _duration(deadline - now) if deadline is not None else "no limit"
        rows.append(
            f'<tr class="queued" data-session="{esc(s.id)}">'
            f'<td class="num position">{esc(s.position or "?")}</td>'
            f"<td><code>{esc(s.id)}</code></td><td>{esc(s.user)}</td>"
            f"<td>{esc(s.team)}</td><td>{esc(_request_text(s.request))}</td>"
            f'<td class="num wait">{esc(_duration(now - s.submitted_at))}</td>'
            f'<td class="num">{esc(left)}</td><td>{esc(s.reason or "")}</td>'
            f"<td>{_cancel_form(s, viewer, 'Withdraw', 'queue')}</td></tr>"
        )
    heads = ("position", "session", "user", "team", "asks for", "waiting", "gives up in", "why", "")
    table = _table("queue", heads, rows, "Nothing is waiting.")
    return _layout("Queue", "queue", viewer, table, notice)


def _limit_cell(used: float, limit: float | None, text_used: str, text_limit: str) -> str:
    if limit is None:
        return f"<td>{esc(text_used)} <span class='muted'>of unlimited</span></td>"
    return f"<td>{_bar(used, limit)}{esc(text_used)} of {esc(text_limit)}</td>"


def quotas_page(viewer: Viewer, lines: Sequence[QuotaLine]) -> str:
    """Each visible team's limits against its use."""
    rows = []
    for q in lines:
        mem_limit = q.max_memory_bytes
        rows.append(
            f'<tr class="quota" data-team="{esc(q.team)}"><td>{esc(q.team)}</td>'
            + _limit_cell(
                q.share_used, q.max_share, f"{q.share_used:.2f}", f"{q.max_share or 0:.2f}"
            )
            + _limit_cell(
                q.memory_used,
                mem_limit,
                format_memory(q.memory_used),
                format_memory(mem_limit or 0),
            )
            + _limit_cell(
                q.device_hours_used,
                q.device_hours_per_month,
                _num(q.device_hours_used),
                _num(q.device_hours_per_month or 0),
            )
            + f'<td class="num">{q.queued}</td></tr>'
        )
    heads = ("team", "share (devices)", "memory", "device-hours this month", "queued")
    table = _table("quotas", heads, rows, "You belong to no team.")
    return _layout("Quotas", "quotas", viewer, table)


def usage_page(
    viewer: Viewer,
    months: Sequence[str],
    totals: Sequence[UsageView],
    *,
    csv_href: str,
) -> str:
    """Per-team charts (device-hours, memory-GiB-hours) over ``months``, and the table.

    ``totals``: the service's usage rows with ``user == "*"`` (one per team and month).
    """
    teams = sorted({r.team for r in totals})
    index = {(r.team, r.month): r for r in totals}

    def series(field: str) -> dict[str, list[float]]:
        return {
            t: [
                float(getattr(index[(t, m)], field)) / 3600.0 if (t, m) in index else 0.0
                for m in months
            ]
            for t in teams
        }

    charts = (
        "<h2>Device-hours</h2>"
        + bar_chart(
            title="Device-hours per team and month",
            unit="device-hours",
            groups=months,
            series=series("device_seconds"),
            element_id="chart-device-hours",
        )
        + "<h2>Memory-GiB-hours</h2>"
        + bar_chart(
            title="Memory-GiB-hours per team and month",
            unit="GiB-hours",
            groups=months,
            series=series("memory_gib_seconds"),
            element_id="chart-memory-gib-hours",
        )
    )
    rows = [
        f'<tr class="usage" data-team="{esc(r.team)}" data-month="{esc(r.month)}">'
        f"<td>{esc(r.month)}</td><td>{esc(r.team)}</td>"
        f'<td class="num">{_num(r.device_seconds / 3600.0)}</td>'
        f'<td class="num">{_num(r.memory_gib_seconds / 3600.0)}</td>'
        f'<td class="num">{int(r.sessions)}</td>'
        f'<td class="num">{float(r.peak_share):.2f}</td></tr>'
        for r in sorted(totals, key=lambda r: (r.month, r.team))
    ]
    table = _table(
        "usage",
        ("month", "team", "device-hours", "memory-GiB-hours", "sessions", "peak share"),
        rows,
        "No usage in these months.",
    )
    span = f"{months[0]} to {months[-1]}" if months else ""
    content = (
        f'<p>UTC months {esc(span)}. <a id="csv" href="{esc(csv_href)}" download>'
        "Download CSV</a> (per team and user, with team totals as user <code>*</code>).</p>"
        f'<div class="charts">{charts}</div>{table}'
    )
    return _layout("Usage", "usage", viewer, content)


def month_labels(now: float, count: int) -> list[str]:
    """The ``count`` UTC months up to and including the one of ``now``, oldest first."""
    d = datetime.fromtimestamp(now, UTC)
    year, month = d.year, d.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def error_page(viewer: Viewer | None, status: int, message: str) -> str:
    """A refusal or failure, said in one line; with the navigation when logged in."""
    content = (
        f'<p class="error" id="error" data-status="{status}">{esc(message)}</p>'
        '<p><a href="/ui/sessions">Back to the sessions</a></p>'
    )
    if viewer is None:
        return _document("Error", f"<main><h1>Error {status}</h1>{content}</main>")
    return _layout(f"Error {status}", "", viewer, content)
