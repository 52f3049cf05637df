"""``tether admin team|user|token|quota ...``: manage who may use the pool."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from tether.cli._poolcli import add_client_args, client_from, print_json, table


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="manage the pool's teams, users, tokens and quotas",
        description="Manage the pool's teams, users, API tokens and quotas. Needs an admin "
        "token (the first one is printed by `tether pool serve` on first start).",
        epilog="Example: tether admin team create ml && tether admin user create ann --team ml "
        "&& tether admin token create --user ann",
    )
    kinds = parser.add_subparsers(dest="admin_kind", metavar="WHAT", required=True)

    team = kinds.add_parser("team", help="teams and their members").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    _cmd(team, "list", "list teams", _team_list)
    p = _cmd(team, "create", "create a team", _team_create)
    p.add_argument("name")
    p = _cmd(team, "delete", "delete a team that has no sessions on record", _team_delete)
    p.add_argument("name")
    p = _cmd(team, "add-member", "add a user to a team", _member_add)
    p.add_argument("team")
    p.add_argument("user")
    p = _cmd(team, "remove-member", "remove a user from a team", _member_remove)
    p.add_argument("team")
    p.add_argument("user")

    user = kinds.add_parser("user", help="users").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    _cmd(user, "list", "list users", _user_list)
    p = _cmd(user, "create", "create a user", _user_create)
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may manage the pool")
    p.add_argument(
        "--team", action="append", default=[], metavar="TEAM", help="a team (repeatable)"
    )

    token = kinds.add_parser("token", help="API tokens and node tokens").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = _cmd(token, "list", "list tokens (never their secrets)", _token_list)
    p.add_argument("--user", help="only this user's tokens")
    p = _cmd(
        token,
        "create",
        "issue a token; its secret is printed once, alone on stdout",
        _token_create,
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user's API token")
    who.add_argument(
        "--node",
        nargs="?",
        const="",
        metavar="NAME",
        help="a node token for an acceptor (with NAME: only that node name may register)",
    )
    p.add_argument("--label", default="", help="a note to tell tokens apart")
    p = _cmd(token, "revoke", "revoke a token: it stops working at once", _token_revoke)
    p.add_argument("id", help="the token's id (the part after tu_/tn_, see `token list`)")

    quota = kinds.add_parser("quota", help="team quotas").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = _cmd(quota, "show", "show a team's quota", _quota_show)
    p.add_argument("team")
    p = _cmd(
        quota,
        "set",
        "set a team's quota (limits not given become unlimited)",
        _quota_set,
    )
    p.add_argument("team")
    p.add_argument(
        "--max-share", type=float, metavar="DEVICES", help="devices' worth held at once, e.g. 2.5"
    )
    p.add_argument("--max-memory", metavar="SIZE", help="device memory held at once, e.g. 80GiB")
    p.add_argument(
        "--device-hours", type=float, metavar="H", help="fraction-weighted device-hours a month"
    )


def _cmd(sub: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text + ".")
    add_client_args(p)
    p.set_defaults(handler=handler)
    return p


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _team_list(args: argparse.Namespace) -> int:
    teams = client_from(args).teams()
    if args.json:
        print_json(teams)
    else:
        print(table(["TEAM", "CREATED"], [[t["name"], _when(t["created_at"])] for t in teams]))
    return 0


def _team_create(args: argparse.Namespace) -> int:
    team = client_from(args).create_team(args.name)
    print_json(team) if args.json else print(f"created team {team['name']}")
    return 0


def _team_delete(args: argparse.Namespace) -> int:
    client_from(args).delete_team(args.name)
    print_json({"deleted": args.name}) if args.json else print(f"deleted team {args.name}")
    return 0


def _member_add(args: argparse.Namespace) -> int:
    user = client_from(args).add_member(args.team, args.user)
    if args.json:
        print_json(user)
    else:
        print(f"{user['name']} is now in: {', '.join(user['teams'])}")
    return 0


def _member_remove(args: argparse.Namespace) -> int:
    client_from(args).remove_member(args.team, args.user)
    if args.json:
        print_json({"team": args.team, "removed": args.user})
    else:
        print(f"removed {args.user} from {args.team}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    users = client_from(args).users()
    if args.json:
        print_json(users)
    else:
        rows = [
            [u["name"], "yes" if u["admin"] else "", ", ".join(u["teams"]), _when(u["created_at"])]
            for u in users
        ]
        print(table(["USER", "ADMIN", "TEAMS", "CREATED"], rows))
    return 0


def _user_create(args: argparse.Namespace) -> int:
    user = client_from(args).create_user(args.name, admin=args.admin, teams=args.team)
    if args.json:
        print_json(user)
    else:
        teams = ", ".join(user["teams"]) or "no team yet"
        print(f"created {'admin ' if user['admin'] else ''}user {user['name']} ({teams})")
    return 0


def _token_list(args: argparse.Namespace) -> int:
    tokens = client_from(args).tokens(args.user)
    if args.json:
        print_json(tokens)
    else:
        rows = [
            [
                t["id"],
                t["kind"],
                t["user"] or (t["node"] or "any node" if t["kind"] == "node" else ""),
                t["label"],
                _when(t["created_at"]),
                "revoked " + _when(t["revoked_at"]) if t["revoked_at"] else "active",
            ]
            for t in tokens
        ]
        print(table(["ID", "KIND", "FOR", "LABEL", "CREATED", "STATE"], rows))
    return 0


def _token_create(args: argparse.Namespace) -> int:
    client = client_from(args)
    if args.node is not None:
        token = client.create_token(kind="node", node=args.node or None, label=args.label)
    else:
        token = client.create_token(kind="user", user=args.user, label=args.label)
    if args.json:
        print_json(token)
        return 0
    # stdout carries the token alone (`... > token-file` writes a usable file, as
    # with `gh auth token`); what people read goes to stderr.
    owner = token["user"] or (f"node {token['node']}" if token["node"] else "any node")
    print(f"token {token['id']} for {owner} (shown once; it cannot be recovered):", file=sys.stderr)
    print(token["token"], flush=True)
    if sys.stdout.isatty():
        print(
            "Give it to its owner over a safe channel; revoke with `tether admin token revoke`.",
            file=sys.stderr,
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    token = client_from(args).revoke_token(args.id)
    print_json(token) if args.json else print(f"revoked token {token['id']}")
    return 0


def _quota_text(q: dict[str, Any]) -> str:
    from tether._units import format_memory

    def show(v: Any, fmt: Any = str) -> str:
        return "unlimited" if v is None else fmt(v)

    return "\n".join(
        [
            f"team {q['team']}",
            f"  max share:            {show(q['max_share'], lambda v: f'{v:g} devices')}",
            f"  max memory:           {show(q['max_memory_bytes'], format_memory)}",
            f"  device-hours a month: {show(q['device_hours_per_month'], lambda v: f'{v:g}')}",
        ]
    )


def _quota_show(args: argparse.Namespace) -> int:
    q = client_from(args).quota(args.team)
    print_json(q) if args.json else print(_quota_text(q))
    return 0


def _quota_set(args: argparse.Namespace) -> int:
    q = client_from(args).set_quota(
        args.team,
        max_share=args.max_share,
        max_memory=args.max_memory,
        device_hours_per_month=args.device_hours,
    )
    print_json(q) if args.json else print(_quota_text(q))
    return 0
