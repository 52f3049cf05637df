"""``tether sessions`` and ``tether session show|cancel|logs ID``: the pool's sessions.

A thin shell over the pool's session API (``GET /v1/sessions``, ``GET`` and
``DELETE /v1/sessions/{id}``). The pool decides who sees what: users see their
teams' sessions and change only their own; admins see and end any. Tickets are
never printed: they open sessions. Where an id is asked for, the session's name
(``tether run --name``) does too: the newest live session of yours by that name,
else the newest ended one.

``logs`` prints what the pool knows of a session's life, not its output: a
session's stdout and stderr go from its worker straight to its client (the
terminal that ran ``tether run``), and neither the acceptor nor the pool keep
a copy (docs/pool.md, "Session logs").
"""

from __future__ import annotations

import argparse
from typing import Any

from tether.cli._poolcli import add_client_args, ago, client_from, print_json, table


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sessions",
        help="list your sessions in the pool (queued and running)",
        description="List your queued and running sessions in the pool; with --all-teams, "
        "every session you may see (admins: all teams; users: their teams).",
        epilog="Example: tether sessions --all-teams --state ended",
    )
    p.add_argument("--all-teams", action="store_true", help="not only yours")
    p.add_argument("--team", help="only this team's")
    p.add_argument(
        "--state", choices=["queued", "placed", "ended"], help="only these (default: live ones)"
    )
    add_client_args(p)
    p.set_defaults(handler=_list)

    one = subparsers.add_parser(
        "session",
        help="show or cancel one session",
        description="Show one session of the pool, or cancel it (a queued request is "
        "withdrawn; a running one ends, and its script ends with a line that says so).",
        epilog="Example: tether session show 3f2a9c01 && tether session cancel 3f2a9c01",
    )
    sub = one.add_subparsers(dest="session_command", metavar="COMMAND", required=True)
    show = sub.add_parser("show", help="one session in detail", description="Show one session.")
    show.add_argument("id", help="the session's id or name (see `tether sessions`)")
    add_client_args(show)
    show.set_defaults(handler=_show)
    cancel = sub.add_parser(
        "cancel", help="end a session or withdraw a request", description="Cancel a session."
    )
    cancel.add_argument("id", help="the session's id or name (see `tether sessions`)")
    add_client_args(cancel)
    cancel.set_defaults(handler=_cancel)
    logs = sub.add_parser(
        "logs",
        help="a session's life as the pool saw it (its output stays with its client)",
        description="Print the events of one session that the pool recorded: request, "
        "queue, placement, connection, heartbeats, metering and end, with the reason. "
        "The script's own output is not here: it goes from the worker to the client "
        "that ran it, and no server keeps a copy.",
    )
    logs.add_argument("id", help="the session's id or name (see `tether sessions`)")
    add_client_args(logs)
    logs.set_defaults(handler=_logs)


def _find(client: Any, key: str) -> dict[str, Any]:
    """The session with id ``key``, else the caller's newest one named ``key``.

    Raises the pool's NotFound (one line at the CLI) when neither exists.
    """
    from tether.poolapi._problems import NotFound

    try:
        return dict(client.session(key))
    except NotFound:
        pass
    me = client.me().get("user")
    for state in (None, "ended"):
        named = [s for s in client.sessions(state=state) if s.get("name") == key]
        mine = [s for s in named if s.get("user") == me] or named
        if mine:
            newest = max(mine, key=lambda s: s.get("submitted_at") or 0.0)
            return dict(client.session(newest["id"]))
    raise NotFound(f"no session with id or name {key!r} (see `tether sessions --all-teams`)")


def _public(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k not in ("ticket", "ticket_expires_at")}


def _slice(s: dict[str, Any]) -> str:
    from tether._units import format_memory

    if s.get("devices"):
        devices = ", ".join(f"{d['id']} x{d['fraction']:.2f}" for d in s["devices"])
        memory = s.get("memory_bytes") or 0
        return f"{devices}" + (f", {format_memory(memory)}" if memory else "")
    request = s.get("request") or {}
    parts = []
    if request.get("count"):
        parts.append(f"{request['count']} devices")
    elif request.get("fraction") is not None:
        parts.append(f"{float(request['fraction']):g} device")
    if request.get("memory"):
        parts.append(str(request["memory"]))
    return " + ".join(parts) or "-"


def _list(args: argparse.Namespace) -> int:
    client = client_from(args)
    sessions = client.sessions(state=args.state, team=args.team)
    if not args.all_teams:
        me = client.me()
        sessions = [s for s in sessions if s.get("user") == me.get("user")]
    sessions = [_public(s) for s in sessions]
    if args.json:
        print_json(sessions)
        return 0
    if not sessions:
        print("no sessions" + ("" if args.all_teams else " of yours (--all-teams for more)"))
        return 0
    rows = [
        [
            s["id"],
            s.get("name") or "-",
            s["state"] + (f" #{s['position']}" if s.get("position") else ""),
            s["team"],
            s["user"],
            s.get("node") or "-",
            _slice(s),
            ago(s.get("started_at") or s.get("submitted_at")).replace(" ago", ""),
            s.get("end_reason") or s.get("reason") or "",
        ]
        for s in sessions
    ]
    print(table(["ID", "NAME", "STATE", "TEAM", "USER", "NODE", "SLICE", "AGE", "WHY"], rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    session = _public(_find(client_from(args), args.id))
    if args.json:
        print_json(session)
        return 0
    named = f" {session['name']!r}" if session.get("name") else ""
    lines = [
        f"session {session['id']}{named}  ({session['state']})",
        f"  owner:     {session['user']} (team {session['team']})",
        f"  slice:     {_slice(session)}",
        f"  node:      {session.get('node') or '-'}  {session.get('address') or ''}".rstrip(),
        f"  submitted: {ago(session.get('submitted_at'))}",
        f"  started:   {ago(session.get('started_at'))}",
        f"  heartbeat: {ago(session.get('last_heartbeat'))}",
    ]
    if session.get("position"):
        lines.append(f"  queue:     position {session['position']}")
    if session.get("reason"):
        lines.append(f"  reason:    {session['reason']}")
    if session.get("ended_at"):
        lines.append(f"  ended:     {ago(session['ended_at'])} ({session.get('end_reason')})")
    print("\n".join(lines))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    client = client_from(args)
    before = _find(client, args.id)
    sid = before["id"]
    after = _public(client.release(sid) or before)
    if args.json:
        print_json(after)
    elif before["state"] == "queued":
        print(f"withdrew the queued request {sid}")
    elif before["state"] == "placed":
        print(
            f"ended session {sid} on node {before.get('node')}: its worker stops at the "
            "acceptor's next heartbeat, and its script ends with a line that says so"
        )
    else:
        print(f"session {sid} had already ended ({before.get('end_reason')})")
    return 0


def _when(t: float | None) -> str:
    import datetime

    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _logs(args: argparse.Namespace) -> int:
    from tether._units import format_memory

    s = _public(_find(client_from(args), args.id))
    events: list[tuple[float | None, str]] = [
        (s.get("submitted_at"), f"requested {_slice(s)} by {s['user']} (team {s['team']})")
    ]
    if s.get("started_at") and s.get("submitted_at") is not None:
        waited = max(0.0, s["started_at"] - s["submitted_at"])
        where = s.get("node") or "?"
        events.append((s["started_at"], f"placed on {where} after {waited:.1f}s: {_slice(s)}"))
    elif s["state"] == "queued":
        events.append((None, f"waiting in the queue at position {s.get('position')}: "
                             f"{s.get('reason') or ''}".rstrip(": ")))  # fmt: skip
    if s.get("last_heartbeat") and s["state"] == "placed":
        events.append((s["last_heartbeat"], "last heartbeat from its client"))
    metering = s.get("metering") or {}
    if metering:
        parts = [f"worker memory peak {format_memory(int(metering.get('memory_hwm') or 0))}"]
        if metering.get("device_memory_hwm") is not None:
            parts.append(f"device memory peak {format_memory(int(metering['device_memory_hwm']))}")
        if metering.get("device_util_mean") is not None:
            parts.append(f"mean utilisation {float(metering['device_util_mean']):.0f}%")
        events.append((None, "metering (from the acceptor): " + ", ".join(parts)))
    if s.get("ended_at"):
        events.append((s["ended_at"], f"ended: {s.get('end_reason') or 'unknown reason'}"))
    if args.json:
        print_json([{"at": at, "event": text} for at, text in events])
        return 0
    print(f"# session {s['id']}: what the pool recorded (the script's output went to its client)")
    for at, text in events:
        print(f"{_when(at) if at is not None else ' ' * 23}  {text}")
    return 0
