"""``tether run``: run a program whose remoted modules execute on a worker."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tether.cli._slice import add_slice_arguments, request_from_args, wants_pool

DESCRIPTION = """\
Run COMMAND (usually `python script.py`) unchanged, while every use of the
modules named with --remote, and of everything they return, executes in a
worker on an acceptor. The script's output, exceptions and files behave as if
it ran on the acceptor's host; the local machine needs no framework installed.

With no --connect (and no TETHER_CONNECT), an acceptor is started on loopback
for this run, using this machine's devices (the CPU if it has nothing else).

With --pool (or any of --gpus, --gpu-memory, --vendor, --model), the slice comes
from a pool: tether asks it for one, waits in its queue if nothing is free
(showing the position), runs COMMAND on the acceptor the pool chose, and
releases the slice when COMMAND exits, however it exits.
"""

EPILOG = """\
examples:
  tether run --remote torch -- python train.py
  tether run --connect tcp://gpuhost:7070 --token-file token --remote torch -- python train.py
  TETHER_CONNECT=tcp://gpuhost:7070 TETHER_TOKEN=... tether run --remote numpy -- python job.py
  tether run --pool http://pool:8600 --gpus 0.5 --remote torch -- python train.py
  tether run --gpus 1 --gpu-memory 40GiB --model '*H100*' --remote torch -- python train.py

environment:
  TETHER_CONNECT     acceptor address when --connect is not given
  TETHER_TOKEN       session token (or TETHER_TOKEN_FILE: a file holding it)
  TETHER_TLS_CA      CA file that tls:// acceptors and https:// pools are verified with
  TETHER_POOL, TETHER_POOL_TOKEN (or TETHER_POOL_TOKEN_FILE)
                     the pool and your API token when --pool/--pool-token-file are
                     not given (else the [pool] table of ~/.config/tether/config.toml,
                     which `tether up` writes)
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a script with some modules executing on a remote worker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--remote",
        action="append",
        metavar="MODULE",
        required=True,
        help="a module to execute remotely, with its submodules (repeatable)",
    )
    p.add_argument("--connect", metavar="URL", help="acceptor address, e.g. tcp://gpuhost:7070")
    p.add_argument("--token-file", metavar="PATH", type=Path, help="file holding the token")
    p.add_argument(
        "--tls-ca", metavar="PATH", type=Path,
        help="CA file to verify a tls:// acceptor or https:// pool with "
        "(default $TETHER_TLS_CA, else the system's trust)",
    )  # fmt: skip
    add_slice_arguments(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, after --")
    p.set_defaults(handler=run)


def _bootstrap_env(env: dict[str, str]) -> None:
    import tether

    pkg_parent = str(Path(tether.__file__).resolve().parent.parent)
    boot = str(Path(tether.__file__).resolve().parent / "_bootstrap")
    parts = [boot, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p], pkg_parent]
    env["PYTHONPATH"] = os.pathsep.join(parts)


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "tether run: give the program to run after --, e.g. -- python train.py", file=sys.stderr
        )
        return 2
    remote = sorted({m.strip() for item in args.remote for m in item.split(",") if m.strip()})
    env = dict(os.environ)
    env["TETHER_REMOTE"] = ",".join(remote)
    if args.tls_ca is not None:
        env["TETHER_TLS_CA"] = str(args.tls_ca.resolve())
    embedded = None
    url = args.connect or env.get("TETHER_CONNECT")
    pool_wanted = wants_pool(args)
    if pool_wanted:
        if args.connect:
            print("tether run: give either --connect or --pool, not both", file=sys.stderr)
            return 2
        return _run_pool(args, command, env)
    if url:
        env["TETHER_CONNECT"] = url
        if args.token_file is not None:
            try:
                args.token_file.read_text()
            except OSError as exc:
                print(f"tether run: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)
                return 2
            # The script reads the file itself: the token stays out of its environment.
            env.pop("TETHER_TOKEN", None)
            env["TETHER_TOKEN_FILE"] = str(args.token_file.resolve())
        elif "TETHER_TOKEN" not in env and "TETHER_TOKEN_FILE" not in env:
            print(
                f"tether run: no token for {url}: use --token-file or TETHER_TOKEN",
                file=sys.stderr,
            )
            return 2
    else:
        from tether.acceptor._server import EmbeddedAcceptor

        embedded = EmbeddedAcceptor()
        env["TETHER_CONNECT"] = str(embedded.start())
        env["TETHER_TOKEN"] = embedded.token
    _bootstrap_env(env)
    try:
        return _run_child(command, env)
    finally:
        if embedded is not None:
            embedded.stop()


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end; its exit status (128 + N when killed by signal N)."""
    try:
        proc = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"tether run: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    # Ctrl-C reaches the child through the terminal; don't die before it does.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    forward = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, forward)
    return code if code >= 0 else 128 - code


def _run_pool(args: argparse.Namespace, command: list[str], env: dict[str, str]) -> int:
    """Lease a slice, run the command against it, release it whatever happens."""
    import shutil
    import tempfile

    from tether._config import config_path, resolve_pool
    from tether._errors import AuthenticationError, ConnectError, PoolError, TetherError
    from tether.client._lease import DEFAULT_HEARTBEAT_S, acquire
    from tether.pool._client import PoolClient

    try:
        cfg = resolve_pool(
            args.pool, args.pool_token, token_file=args.pool_token_file, ca=args.tls_ca
        )
    except TetherError as exc:
        print(f"tether run: {exc}", file=sys.stderr)
        return 2
    if not cfg.url or not cfg.token:
        missing = "pool URL (--pool, $TETHER_POOL)" if not cfg.url else "API token"
        print(
            f"tether run: no {missing}: pass --pool URL and --pool-token-file PATH, set "
            f"TETHER_POOL and TETHER_POOL_TOKEN, or put them under [pool] in {config_path()} "
            "(`tether up` does)",
            file=sys.stderr,
        )
        return 2
    if cfg.ca:
        env["TETHER_TLS_CA"] = str(Path(cfg.ca).resolve())
    try:
        request = request_from_args(args)
    except ValueError as exc:
        print(f"tether run: {exc}", file=sys.stderr)
        return 2
    interval = float(os.environ.get("TETHER_LEASE_HEARTBEAT_S") or DEFAULT_HEARTBEAT_S)
    private = Path(tempfile.mkdtemp(prefix="tether-run-"))  # mode 0700: it holds the ticket

    def on_term(*_: object) -> None:
        raise SystemExit(143)  # withdraws a queued request on the way out

    old_term = signal.signal(signal.SIGTERM, on_term)
    lease = None
    try:
        try:
            client = PoolClient(cfg.url, cfg.token, ca=cfg.ca)
            lease = acquire(client, request, ticket_file=private / "ticket")
        except (PoolError, ConnectError, AuthenticationError, TetherError) as exc:
            print(f"tether run: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, old_term)
        print(f"tether: {lease.describe()}", file=sys.stderr, flush=True)
        lease.start_heartbeat(interval)
        env["TETHER_CONNECT"] = lease.address
        env.pop("TETHER_TOKEN", None)
        env["TETHER_TOKEN_FILE"] = str(private / "ticket")
        _bootstrap_env(env)
        return _run_child(command, env)
    finally:
        if lease is not None:
            lease.release()
        shutil.rmtree(private, ignore_errors=True)
