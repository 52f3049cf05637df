"""``tether node list|cordon|drain|uncordon``: an admin's hand on the pool's nodes."""

from __future__ import annotations

import argparse
from typing import Any

from tether.cli._poolcli import add_client_args, ago, client_from, print_json, table

_ACTIONS = {
    "cordon": "stop new sessions on a node; its running sessions go on",
    "drain": "end every session on a node now and take no new ones",
    "uncordon": "let a cordoned or drained node take sessions again",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "node",
        help="list, cordon, drain or uncordon the pool's nodes",
        description="Nodes are acceptor hosts registered with the pool. Cordon one before "
        "maintenance, drain it to end its sessions, uncordon it when it is back.",
        epilog="Example: tether node cordon gpu7 && tether node drain gpu7",
    )
    sub = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    p = sub.add_parser("list", help="nodes and their status", description="List the nodes.")
    add_client_args(p)
    p.set_defaults(handler=_list)
    for action, text in _ACTIONS.items():
        p = sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("name", help="the node's name")
        add_client_args(p)
        p.set_defaults(handler=_act, action=action)


def _list(args: argparse.Namespace) -> int:
    nodes = client_from(args).nodes()
    if args.json:
        print_json(nodes)
        return 0
    rows = [
        [n["name"], n["status"], n["address"], len(n["devices"]), ago(n["last_heartbeat"])]
        for n in nodes
    ]
    print(table(["NODE", "STATUS", "ADDRESS", "DEVICES", "HEARTBEAT"], rows))
    return 0


def _act(args: argparse.Namespace) -> int:
    result = client_from(args).node_action(args.name, args.action)
    if args.json:
        print_json(result)
    else:
        print(f"node {result['name']} is now {result['status']}")
    return 0
