"""``tether usage``: device and memory use per team, user and month."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tether.cli._poolcli import add_client_args, check_month, client_from, print_json, table


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "usage",
        help="usage per team, user and month",
        description="Usage computed from leases: device-hours weighted by fraction, "
        "memory GiB-hours, sessions started, and the peak share held at once. Users see "
        "their own teams; admins see all. The row with user * is the team's total.",
        epilog="Example: tether usage --team ml --month 2026-11 --csv > ml-2026-11.csv",
    )
    parser.add_argument("--team", help="one team (default: every team you may see)")
    parser.add_argument("--user", help="one user")
    parser.add_argument("--month", metavar="YYYY-MM", help="a UTC month (default: this one)")
    add_client_args(parser)
    parser.add_argument("--csv", action="store_true", help="print CSV for spreadsheets")
    parser.add_argument(
        "--groups", action="store_true",
        help="one row per group request (tether submit): its members' use summed",
    )  # fmt: skip
    parser.set_defaults(handler=_usage)


def _usage(args: argparse.Namespace) -> int:
    args.month = check_month(args.month)
    client = client_from(args)
    if args.groups:
        return _group_usage(args, client)
    if args.csv:
        sys.stdout.write(client.usage_csv(team=args.team, user=args.user, month=args.month))
        return 0
    rows = client.usage(team=args.team, user=args.user, month=args.month)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no usage recorded for that month")
        return 0
    print(
        table(
            ["MONTH", "TEAM", "USER", "DEVICE-HOURS", "MEM GIB-HOURS", "SESSIONS", "PEAK SHARE"],
            [
                [
                    r["month"],
                    r["team"],
                    r["user"],
                    f"{r['device_seconds'] / 3600:.3f}",
                    f"{r['memory_gib_seconds'] / 3600:.3f}",
                    r["sessions"],
                    f"{r['peak_share']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    return 0


def _group_usage(args: argparse.Namespace, client: Any) -> int:
    if args.csv:
        sys.stdout.write(client.group_usage_csv(team=args.team, month=args.month))
        return 0
    rows = client.group_usage(team=args.team, month=args.month)
    if args.user is not None:
        rows = [r for r in rows if r["user"] == args.user]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no group usage recorded for that month")
        return 0
    print(
        table(
            [
                "MONTH",
                "TEAM",
                "GROUP",
                "ID",
                "USER",
                "MEMBERS",
                "DEVICE-HOURS",
                "MEM GIB-HOURS",
                "PEAK SHARE",
            ],
            [
                [
                    r["month"],
                    r["team"],
                    r["group"],
                    r["group_id"],
                    r["user"],
                    r["members"],
                    f"{r['device_seconds'] / 3600:.3f}",
                    f"{r['memory_gib_seconds'] / 3600:.3f}",
                    f"{r['peak_share']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    return 0
