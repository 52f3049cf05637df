"""``tether sessions`` and ``tether session show|cancel ID``: the pool's sessions.

A thin shell over the pool's session API (``GET /v1/sessions``, ``GET`` and
``DELETE /v1/sessions/{id}``). The pool decides who sees what: users see their
teams' sessions and change only their own; admins see and end any. Tickets are
never printed: they open sessions.
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
    show.add_argument("id", help="the session's id (see `tether sessions`)")
    add_client_args(show)
    show.set_defaults(handler=_show)
    cancel = sub.add_parser(
        "cancel", help="end a session or withdraw a request", description="Cancel a session."
    )
    cancel.add_argument("id", help="the session's id (see `tether sessions`)")
    add_client_args(cancel)
    cancel.set_defaults(handler=_cancel)


def _public(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k not in ("ticket", "ticket_expires_at")}


def _slice(s: dict[str, Any]) -> str:
    from tether.pool import format_memory

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
    print(table(["ID", "STATE", "TEAM", "USER", "NODE", "SLICE", "AGE", "WHY"], rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    session = _public(client_from(args).session(args.id))
    if args.json:
        print_json(session)
        return 0
    lines = [
        f"session {session['id']}  ({session['state']})",
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
    before = client.session(args.id)
    after = _public(client.release(args.id) or before)
    if args.json:
        print_json(after)
    elif before["state"] == "queued":
        print(f"withdrew the queued request {args.id}")
    elif before["state"] == "placed":
        print(
            f"ended session {args.id} on node {before.get('node')}: its worker stops at the "
            "acceptor's next heartbeat, and its script ends with a line that says so"
        )
    else:
        print(f"session {args.id} had already ended ({before.get('end_reason')})")
    return 0
