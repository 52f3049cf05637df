"""``tether run``: run a program whose remoted modules execute on a worker."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tether._config import read_token_file
from tether._errors import TetherError
from tether.cli._slice import add_slice_arguments, slice_kwargs, wants_pool

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
  tether run -v --remote torch -- python train.py     # stderr says where torch runs
  tether run --gpus 1 --gpu-memory 40GiB --model '*H100*' --remote torch -- python train.py

environment:
  TETHER_CONNECT     acceptor address when --connect is not given
  TETHER_TOKEN       session token (or TETHER_TOKEN_FILE: a file holding it)
  TETHER_TLS_CA      CA file that tls:// acceptors and https:// pools are verified with
  TETHER_POOL, TETHER_POOL_TOKEN (or TETHER_POOL_TOKEN_FILE)
                     the pool and your API token when --pool/--token-file are not
                     given (else the [pool] table of ~/.config/tether/config.toml,
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
    p.add_argument(
        "--token-file", metavar="PATH", type=Path,
        help="file holding the token of what you connect to: the acceptor's with --connect, "
        "your pool API token with --pool",
    )  # fmt: skip
    p.add_argument(
        "--token", metavar="TOKEN",
        help="the token itself (other local users can read a command line: prefer --token-file)",
    )  # fmt: skip
    p.add_argument(
        "--tls-ca", metavar="PATH", type=Path,
        help="CA file to verify a tls:// acceptor or https:// pool with "
        "(default $TETHER_TLS_CA, else the system's trust)",
    )  # fmt: skip
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="say on stderr where the session runs (acceptor, worker pid, device)",
    )  # fmt: skip
    p.add_argument(
        "--name", metavar="NAME",
        help="name the pool session (shown by `tether sessions`; `tether session show NAME`)",
    )  # fmt: skip
    add_slice_arguments(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, after --")
    p.set_defaults(handler=run)


def _is_python(program: str) -> bool:
    """True if ``program`` names a Python interpreter (python, python3.11, a venv's)."""
    return re.fullmatch(r"python(\d+(\.\d+)?)?", os.path.basename(program)) is not None


def _bootstrap_env(env: dict[str, str], scratch: Path) -> None:
    """PYTHONPATH for the command: Tether's bootstrap first, the caller's entries,
    then where Tether and its one dependency, cloudpickle, are found.

    The command's interpreter need not be this one (``tether`` installed with
    pipx, the script run by its project's venv). Where cloudpickle does not sit
    beside Tether (an editable install), ``scratch`` gets a link to it, so that
    such an interpreter loads the client with the cloudpickle it was made for;
    if it still cannot, the bootstrap says so and stops before the script runs.
    """
    import importlib.util

    package = Path(__file__).resolve().parent.parent  # src/tether, without importing the face
    pkg_parent = package.parent
    boot = str(package / "_bootstrap")
    parts = [boot, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    parts.append(str(pkg_parent))
    spec = importlib.util.find_spec("cloudpickle")  # found, not imported
    where = list(spec.submodule_search_locations or ()) if spec is not None else []
    if where and Path(where[0]).parent != pkg_parent:
        (scratch / "cloudpickle").symlink_to(where[0], target_is_directory=True)
        parts.append(str(scratch))
    env["PYTHONPATH"] = os.pathsep.join(parts)


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _fail("give the program to run after --, e.g. -- python train.py", 2)
    remote = sorted({m.strip() for item in args.remote for m in item.split(",") if m.strip()})
    env = dict(os.environ)
    env["TETHER_REMOTE"] = ",".join(remote)
    # The script's interpreter opens the session before the script's first line
    # (tether.client._bootstrap): a --remote typo or an unreachable acceptor
    # then fails at once, in one line, before anything runs on the wrong machine.
    # Only when the command is Python itself: under a shell (`bash -c "pip list;
    # python train.py"`) the first interpreter may not be the script's, and a pool
    # ticket opens one session only; there the script connects at its first import.
    if _is_python(command[0]):
        env["TETHER_CONNECT_NOW"] = "1"
    else:
        env.pop("TETHER_CONNECT_NOW", None)
    env.pop("TETHER_LOCAL_ACCEPTOR", None)
    if args.verbose:
        env["TETHER_VERBOSE"] = "1"
    else:
        env.pop("TETHER_VERBOSE", None)
    if args.tls_ca is not None:
        env["TETHER_TLS_CA"] = str(args.tls_ca.resolve())
    embedded = None
    url = args.connect or env.get("TETHER_CONNECT")
    pool_wanted = wants_pool(args) or (args.name is not None and args.connect is None)
    if args.name is not None and not pool_wanted:
        return _fail("--name names a pool session: use it with --pool, not --connect", 2)
    if pool_wanted:
        if args.connect:
            return _fail("give either --connect or --pool, not both", 2)
        return _run_pool(args, command, env)
    if url:
        from tether.transport import parse_address

        try:
            parse_address(url)
        except ValueError as exc:
            where = "--connect" if args.connect else "TETHER_CONNECT"
            return _fail(f"{where}: {exc}", 2)
        env["TETHER_CONNECT"] = url
        if args.token is not None:
            # Already on the command line: the environment hides nothing more.
            env.pop("TETHER_TOKEN_FILE", None)
            env["TETHER_TOKEN"] = args.token
        elif args.token_file is not None:
            try:
                read_token_file(args.token_file)  # fail here, in one line, not in the script
            except TetherError as exc:
                return _fail(str(exc), 2)
            # The script reads the file itself: the token stays out of its environment.
            env.pop("TETHER_TOKEN", None)
            env["TETHER_TOKEN_FILE"] = str(args.token_file.resolve())
        elif "TETHER_TOKEN" not in env and "TETHER_TOKEN_FILE" not in env:
            return _fail(f"no token for {url}: pass --token-file PATH or set TETHER_TOKEN", 2)
    else:
        if args.token is not None or args.token_file is not None:
            return _fail("--token and --token-file go with --connect or --pool", 2)
        from tether.acceptor._server import EmbeddedAcceptor

        embedded = EmbeddedAcceptor()
        env["TETHER_CONNECT"] = str(embedded.start())
        env["TETHER_TOKEN"] = embedded.token
        env["TETHER_LOCAL_ACCEPTOR"] = "1"  # for -v: "torch ran in a local worker"
    try:
        with tempfile.TemporaryDirectory(prefix="tether-run-") as scratch:
            _bootstrap_env(env, Path(scratch))
            return _run_child(command, env)
    finally:
        if embedded is not None:
            embedded.stop()


def _fail(message: str, code: int = 1) -> int:
    """Print the one-line error every command uses; return ``code``."""
    print(f"tether: error: {message}", file=sys.stderr)
    return code


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end; its exit status (128 + N when killed by signal N)."""
    try:
        proc = subprocess.Popen(command, env=env)
    except OSError as exc:
        return _fail(f"cannot start {command[0]}: {exc.strerror}", 127)
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

    from tether._api import lease as take_lease
    from tether._config import require_pool
    from tether._errors import ConfigError
    from tether.cli import error_line

    # --token/--token-file name the credential of what you connect to: here the
    # pool (--pool-token/--pool-token-file say the same, and %tether shares them).
    given = [a for a in ("token", "token_file", "pool_token", "pool_token_file")
             if getattr(args, a) is not None]  # fmt: skip
    if len(given) > 1:
        flags = " and ".join("--" + a.replace("_", "-") for a in given)
        return _fail(f"{flags} each name the pool token: give one of them", 2)
    try:
        cfg = require_pool(
            args.pool,
            args.token or args.pool_token,
            token_file=args.token_file or args.pool_token_file,
            ca=args.tls_ca,
        )
        slice_options = slice_kwargs(args)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), 2)
    if cfg.ca:
        env["TETHER_TLS_CA"] = str(Path(cfg.ca).resolve())
    private = Path(tempfile.mkdtemp(prefix="tether-run-"))  # mode 0700: it holds the ticket

    def on_term(*_: object) -> None:
        raise SystemExit(143)  # withdraws a queued request on the way out

    old_term = signal.signal(signal.SIGTERM, on_term)
    lease = None
    try:
        try:
            lease = take_lease(
                cfg.url,
                cfg.token,
                tls_ca=cfg.ca,
                name=args.name,
                ticket_file=private / "ticket",
                **slice_options,
            )
        except TetherError as exc:  # pool refusals, unreachable pool, bad token
            print(error_line(exc), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, old_term)
        print(f"tether: {lease.describe()}", file=sys.stderr, flush=True)
        env["TETHER_CONNECT"] = lease.address
        env.pop("TETHER_TOKEN", None)
        env["TETHER_TOKEN_FILE"] = str(private / "ticket")
        _bootstrap_env(env, private)
        return _run_child(command, env)
    finally:
        if lease is not None:
            lease.release()
        shutil.rmtree(private, ignore_errors=True)
