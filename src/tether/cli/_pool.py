"""``tether pool serve`` and ``tether pool status``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tether.cli._poolcli import add_client_args, ago, client_from, print_json, table

BAR_WIDTH = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pool",
        help="run the pool service, or look at it",
        description="The pool places sessions on shared accelerator hosts, enforces team "
        "quotas and records usage. `tether pool serve` runs it; `tether pool status` shows "
        "its nodes, devices and sessions.",
    )
    sub = parser.add_subparsers(dest="pool_command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the pool service",
        description="Run the pool's HTTP API. On first start with an empty database it "
        "creates the user 'admin' and prints its API token once (and writes it to "
        "--bootstrap-token-file if given).",
        epilog="Example: tether pool serve --listen 0.0.0.0:8600 "
        "--db postgresql://tether@db/tether",
    )
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8600",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8600; port 0 picks a free one)",
    )
    serve.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="a SQLite file path (created on first start; default "
        "$XDG_DATA_HOME/tether/pool.db) or postgresql://user@host/dbname; surrounding "
        "whitespace is ignored",
    )
    serve.add_argument(
        "--bootstrap-token-file",
        type=Path,
        metavar="PATH",
        help="on first start, write the admin's token here (mode 0600)",
    )
    serve.add_argument(
        "--ready-file", type=Path, metavar="PATH", help="write the pool's URL here once listening"
    )
    serve.add_argument(
        "--secret-file", type=Path, metavar="PATH", help="the ticket secret every session "
        "ticket's key derives from, kept out of the database (created mode 0600 on first "
        "start; default $XDG_CONFIG_HOME/tether/pool-secret; $TETHER_POOL_SECRET instead). "
        "Replicas need the same one",
    )  # fmt: skip
    serve.add_argument(
        "--node-timeout", type=float, default=30.0, metavar="S", help="a node silent this long "
        "is lost and its leases end (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--lease-timeout", type=float, default=90.0, metavar="S",
        help="a lease without heartbeat this long expires (default 90)",
    )  # fmt: skip
    serve.add_argument(
        "--queue-timeout", type=float, default=300.0, metavar="S",
        help="how long a request waits in the queue unless it says (default 300)",
    )  # fmt: skip
    serve.add_argument(
        "--max-queue-timeout", type=float, default=86400.0, metavar="S",
        help="the longest queue timeout a request may ask for (default 86400)",
    )  # fmt: skip
    serve.add_argument(
        "--heartbeat-skew", type=float, default=30.0, metavar="S",
        help="reject node heartbeats whose clock is further off than this (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--ticket-ttl", type=float, default=300.0, metavar="S",
        help="life of the signed tickets clients show acceptors (default 300)",
    )  # fmt: skip
    serve.add_argument(
        "--policy",
        choices=("best-fit", "spread", "first-fit"),
        default="best-fit",
        help="how fractions are packed onto devices (default best-fit)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, metavar="PATH",
        help="serve HTTPS with this PEM certificate (default $TETHER_TLS_CERT)",
    )  # fmt: skip
    serve.add_argument(
        "--tls-key", type=Path, metavar="PATH",
        help="the certificate's unencrypted PEM key (default $TETHER_TLS_KEY)",
    )  # fmt: skip
    serve.add_argument(
        "--public-metrics",
        action="store_true",
        help="serve /metrics without a token (default: any valid token)",
    )
    serve.set_defaults(handler=_serve)

    rotate = sub.add_parser(
        "rotate-secret",
        help="replace the pool's ticket secret, without downtime",
        description="Write a new ticket secret into the secret file. The running pool "
        "picks it up within a second and signs with it at once; the old secret stays "
        "valid for --grace seconds, so tickets already handed out keep working and "
        "acceptors get the new keys on their next heartbeat.",
    )
    rotate.add_argument("--secret-file", type=Path, metavar="PATH", help="the pool's secret file "
                        "(default $XDG_CONFIG_HOME/tether/pool-secret)")  # fmt: skip
    rotate.add_argument(
        "--grace", type=float, default=600.0, metavar="S",
        help="seconds the old secret is still accepted (default 600: longer than a ticket lives)",
    )  # fmt: skip
    rotate.set_defaults(handler=_rotate)

    status = sub.add_parser(
        "status",
        help="nodes, devices (allocated share as bars) and sessions",
        description="Show the pool: nodes, each device with its allocated share drawn as a "
        "bar, and the sessions your token may see (admins: all).",
    )
    add_client_args(status)
    status.set_defaults(handler=_status)


def _default_db() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "tether" / "pool.db")


def _default_secret_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tether" / "pool-secret"


def _rotate(args: argparse.Namespace) -> int:
    import sys
    import time

    from tether._errors import PoolError
    from tether.pool._secrets import rotate_secret_file

    path = args.secret_file or _default_secret_file()
    try:
        rotate_secret_file(path, now=time.time(), grace_s=args.grace)
    except PoolError as exc:
        print(f"tether pool rotate-secret: {exc}", file=sys.stderr)
        return 1
    print(f"tether pool: rotated the ticket secret in {path}; the old one is accepted "
          f"for {args.grace:g}s more", file=sys.stderr)  # fmt: skip
    return 0


def _db_arg(value: str | None) -> str | None:
    """``--db`` without surrounding whitespace: a URL from a Secret or an env file
    keeps the newline ``echo`` wrote, and neither SQLite nor psycopg ignores it."""
    return None if value is None else value.strip()


def _serve(args: argparse.Namespace) -> int:
    import logging
    import sys

    from tether.cli._poolcli import require_pool_extra

    require_pool_extra("tether pool serve")
    from tether.pool import PoolConfig, PoolInputError
    from tether.pool._server import ServeOptions, serve
    from tether.pool._service import ServiceConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        policy = PoolConfig(
            node_timeout_s=args.node_timeout,
            lease_timeout_s=args.lease_timeout,
            default_queue_timeout_s=args.queue_timeout,
            max_queue_timeout_s=args.max_queue_timeout,
            policy=args.policy,
        )
    except PoolInputError as exc:
        print(f"tether pool serve: {exc}", file=sys.stderr)
        return 2
    db = _db_arg(args.db)
    if db == "":
        print("tether pool serve: --db is empty (an empty Secret or env file?)", file=sys.stderr)
        return 2
    options = ServeOptions(
        listen=args.listen,
        db=db or _default_db(),
        config=ServiceConfig(
            policy=policy, heartbeat_skew_s=args.heartbeat_skew, ticket_ttl_s=args.ticket_ttl
        ),
        bootstrap_token_file=args.bootstrap_token_file,
        ready_file=args.ready_file,
        public_metrics=args.public_metrics,
        secret_file=args.secret_file
        or (None if os.environ.get("TETHER_POOL_SECRET") else _default_secret_file()),
        tls_cert=args.tls_cert or _env_path("TETHER_TLS_CERT"),
        tls_key=args.tls_key or _env_path("TETHER_TLS_KEY"),
    )
    return serve(options)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """``[########------------]`` for a share in [0, 1]."""
    filled = max(0, min(width, round(share * width)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _memory(n: int | None) -> str:
    if not n:
        return "-"
    from tether._units import format_memory

    return format_memory(int(n))


def _status(args: argparse.Namespace) -> int:
    client = client_from(args)
    data = client.status()
    if args.json:
        print_json(data)
        return 0
    nodes = data["nodes"]
    print(f"Nodes ({len(nodes)})")
    if nodes:
        print(
            table(
                ["NAME", "STATUS", "ADDRESS", "DEVICES", "HEARTBEAT"],
                [
                    [
                        n["name"],
                        n["status"],
                        n["address"],
                        len(n["devices"]),
                        ago(n["last_heartbeat"]),
                    ]
                    for n in nodes
                ],
            )
        )
    devices = [d for n in nodes for d in n["devices"]]
    print(f"\nDevices ({len(devices)})")
    if devices:
        print(
            table(
                ["NODE", "DEVICE", "MODEL", "MEMORY", "ALLOCATED", "SHARE", "MEM USED"],
                [
                    [
                        d["node"],
                        d["id"],
                        d["model"] or d["vendor"],
                        _memory(d["memory_bytes"]),
                        bar(d["allocated_share"]),
                        f"{d['allocated_share']:.2f}",
                        _memory(d["allocated_memory_bytes"]),
                    ]
                    for d in devices
                ],
            )
        )
    sessions = data["sessions"]
    print(f"\nSessions ({len(sessions)}, {data['queue_length']} queued)")
    if sessions:
        rows = []
        for x in sessions:
            where = (
                f"{x['node']}:{','.join(d['id'] for d in x['devices'])}"
                if x["state"] == "placed"
                else f"position {x.get('position') or '?'}"
            )
            rows.append(
                [
                    x["id"],
                    x["team"],
                    x["user"],
                    x["state"],
                    where,
                    f"{x['share']:.2f}" if x["state"] == "placed" else "-",
                    _memory(x["memory_bytes"]),
                    ago(x["started_at"] or x["submitted_at"]),
                ]
            )
        print(
            table(["SESSION", "TEAM", "USER", "STATE", "WHERE", "SHARE", "MEMORY", "SINCE"], rows)
        )
    return 0
