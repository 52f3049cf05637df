"""``tether groups`` and ``tether group show|cancel|logs NAME``: the pool's group requests.

A thin shell over the pool's group API (``GET /v1/groups``, ``GET`` and
``DELETE /v1/groups/{id-or-name}``) and, for ``logs``, over the members' output
files that ``tether submit`` wrote on this machine. Tickets are never printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tether.cli._poolcli import add_client_args, ago, client_from, print_json, table


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "groups",
        help="list your group requests in the pool",
        description="List the group requests (tether submit) of your teams (admins: all).",
    )
    p.add_argument("--team", help="only this team's")
    p.add_argument("--state", choices=["queued", "placed", "ended"], help="only these")
    add_client_args(p)
    p.set_defaults(handler=_list)

    one = subparsers.add_parser(
        "group",
        help="show, cancel or read the output of one group request",
        description="One group request, by name (the most recent of that name) or id.",
        epilog="Example: tether group show sweep ; tether group logs sweep 3",
    )
    sub = one.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
    show = sub.add_parser("show", help="the group and its members", description="Show a group.")
    show.add_argument("name", help="the group's name or id")
    add_client_args(show)
    show.set_defaults(handler=_show)
    cancel = sub.add_parser(
        "cancel",
        help="withdraw a waiting group or end every member",
        description="Cancel a group: a waiting group leaves the queue; every member's lease "
        "ends (their scripts end with a line that says so).",
    )
    cancel.add_argument("name", help="the group's name or id")
    add_client_args(cancel)
    cancel.set_defaults(handler=_cancel)
    logs = sub.add_parser(
        "logs",
        help="print the members' output (written by tether submit on this machine)",
        description="Print OUT_DIR/NAME/INDEX.out of one member, or of every member with "
        "a header line each.",
    )
    logs.add_argument("name", help="the group's name (as given to tether submit)")
    logs.add_argument("index", nargs="?", type=int, help="one member (default: all)")
    logs.add_argument(
        "--out-dir", type=Path, default=Path("tether-groups"), metavar="DIR",
        help="the --out-dir given to tether submit (default ./tether-groups)",
    )  # fmt: skip
    logs.set_defaults(handler=_logs)
    member = sub.add_parser(
        "member",
        help="run COMMAND as one member of a placed group (what each Kubernetes pod runs)",
        description="Run COMMAND as member INDEX of the placed group NAME: its slice's "
        "address and a fresh ticket from the pool, its lease renewed while COMMAND runs, "
        "released at the end. {index} and each {PARAM} in COMMAND are replaced (the "
        "parameters come from $TETHER_GROUP_PARAMS, a JSON list, one object per member). "
        "Options go before NAME: everything after it is COMMAND.",
    )
    member.add_argument("name", help="the group's name or id")
    member.add_argument(
        "--index", type=int, metavar="N",
        help="the member (default: $JOB_COMPLETION_INDEX, set by a Kubernetes Indexed Job)",
    )  # fmt: skip
    member.add_argument(
        "--remote", action="append", metavar="MODULE", help="module(s) to run remotely (torch)"
    )
    add_client_args(member, json_flag=False)
    member.add_argument("command", nargs=argparse.REMAINDER, help="the program, after --")
    member.set_defaults(handler=_member)


def _row(g: dict[str, Any]) -> list[Any]:
    count = (
        str(g["max_count"])
        if g["min_count"] == g["max_count"]
        else (f"{g['min_count']}-{g['max_count']}")
    )
    state = g["state"] + (f" #{g['position']}" if g.get("position") else "")
    shape = g["request"]
    if shape.get("count"):
        size = f"{shape['count']} devices"
    else:
        size = str(shape.get("fraction", ""))
        if shape.get("memory_bytes"):
            size += f" {shape['memory_bytes']}B"
    return [g["name"], g["id"], g["team"], g["user"], state, count, g["placed_count"],
            g["running"], size, ago(g["submitted_at"])]  # fmt: skip


_HEAD = ["NAME", "ID", "TEAM", "USER", "STATE", "COUNT", "PLACED", "RUNNING", "EACH", "SUBMITTED"]


def _list(args: argparse.Namespace) -> int:
    groups = client_from(args).groups(state=args.state, team=args.team)
    if args.json:
        print_json(groups)
    elif not groups:
        print("no group requests")
    else:
        print(table(_HEAD, [_row(g) for g in groups]))
    return 0


def _public(group: dict[str, Any]) -> dict[str, Any]:
    out = dict(group)
    out["members"] = [
        {k: v for k, v in m.items() if k not in ("ticket", "ticket_expires_at")}
        for m in group.get("members", [])
    ]
    return out


def _print_group(group: dict[str, Any]) -> None:
    print(table(_HEAD, [_row(group)]))
    if group.get("reason"):
        print(f"\nreason: {group['reason']}")
    members = group.get("members", [])
    if members:
        print()
        print(
            table(
                ["INDEX", "SESSION", "STATE", "NODE", "DEVICES", "END"],
                [
                    [
                        m.get("index"),
                        m["id"],
                        m["state"],
                        m.get("node") or "-",
                        ",".join(f"{d['id']} x{d['fraction']:.2f}" for d in m.get("devices", []))
                        or "-",
                        m.get("end_reason") or "",
                    ]
                    for m in members
                ],
            )
        )


def _show(args: argparse.Namespace) -> int:
    group = client_from(args).group(args.name)
    if args.json:
        print_json(_public(group))
    else:
        _print_group(group)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    group = client_from(args).cancel_group(args.name)
    if args.json:
        print_json(_public(group))
    else:
        print(f"group {group['name']} ({group['id']}): {group['state']}, "
              f"{group['running']} members running")  # fmt: skip
    return 0


def _logs(args: argparse.Namespace) -> int:
    folder = args.out_dir / args.name
    if args.index is not None:
        files = [folder / f"{args.index}.out"]
    else:
        files = sorted(folder.glob("*.out"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not files or not all(f.exists() for f in files):
        print(f"tether: error: no output of group {args.name} in {folder}/ "
              "(give --out-dir as given to tether submit)", file=sys.stderr)  # fmt: skip
        return 1
    for f in files:
        if args.index is None:
            print(f"==> member {f.stem} ({f}) <==", flush=True)
        sys.stdout.write(f.read_text(errors="replace"))
    return 0


def _member(args: argparse.Namespace) -> int:
    import json
    import os

    from tether.client._group import run_member

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("tether: error: give the program to run after --", file=sys.stderr)
        return 2
    index = args.index
    if index is None:
        text = os.environ.get("JOB_COMPLETION_INDEX", "")
        if not text.isdigit():
            print("tether: error: give --index N (no $JOB_COMPLETION_INDEX here)", file=sys.stderr)
            return 2
        index = int(text)
    params: dict[str, str] = {}
    grid = os.environ.get("TETHER_GROUP_PARAMS")
    if grid:
        try:
            params = {str(k): str(v) for k, v in json.loads(grid)[index].items()}
        except (ValueError, IndexError, AttributeError, TypeError):
            print(f"tether: error: $TETHER_GROUP_PARAMS has no object for member {index}",
                  file=sys.stderr)  # fmt: skip
            return 2
    remote = sorted({m for item in (args.remote or ["torch"]) for m in item.split(",") if m})
    return run_member(
        client_from(args), args.name, index, command, params=params, remote=remote,
        tls_ca=str(args.tls_ca) if args.tls_ca else None,
    )  # fmt: skip
