"""``tether up``: a pool and an acceptor on this machine, ready for ``tether run --pool``.

Starts ``tether pool serve`` (SQLite in the data directory) and ``tether serve
--pool`` as child processes, and supervises them until Ctrl-C or SIGTERM, when
it stops both. On the first start (an empty database) it also sets the pool
up: a team ``local``, a user for you in it (an admin of this pool: it is
yours) with an API token, a node token for the acceptor (named for its node,
so no other node can take it over), and the pool's ticket secret
(``DATA/pool-secret``, mode 0600, outside the database); it writes the pool's
URL and your token to your Tether config file (mode 0600), so ``tether run
--pool URL --gpus 0.5 ...`` (or just ``--gpus 0.5``) and ``tether admin ...``
work in another terminal with nothing pasted. The pool's bootstrap admin token
is revoked once your user exists: it is never printed, logged or kept. Later
starts reuse the same database, tokens and config (a restart with or without
``--tls`` re-points the config at the pool's URL as it is now, and at the CA).

With ``--tls`` the pool serves HTTPS and the acceptor ``tls://``, both with a
certificate signed by a private CA that ``tether up`` makes (with the
``openssl`` command) in the data directory on first use; the CA's own key is
deleted once it has signed. The config file names the CA file (``ca = ...``),
so ``tether run`` verifies both links with no further option; other machines
need a copy of that CA file (``--tls-ca`` or ``TETHER_TLS_CA``).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tether._errors import TetherError

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""

EPILOG = """\
examples:
  tether up                                   # pool on 127.0.0.1:8600, acceptor on :7070
  tether run --gpus 0.5 --remote torch -- python train.py       # in another terminal
  tether pool status                          # what is placed where
  tether up --listen 0.0.0.0:8600 --acceptor-listen tcp://0.0.0.0:7070 --advertise tcp://HOST:7070
  tether up --tls                             # HTTPS and tls:// with a self-signed CA
"""

START_TIMEOUT_S = 120.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "up",
        help="start a pool and an acceptor on this machine (a one-host pool)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen", default="127.0.0.1:8600", metavar="HOST:PORT",
        help="the pool's address (default 127.0.0.1:8600; port 0 picks one)",
    )  # fmt: skip
    p.add_argument(
        "--acceptor-listen", default="tcp://127.0.0.1:7070", metavar="URL",
        help="the acceptor's address (default tcp://127.0.0.1:7070; port 0 picks one)",
    )  # fmt: skip
    p.add_argument("--advertise", metavar="URL", help="the acceptor address clients are given")
    p.add_argument(
        "--data-dir", type=Path, metavar="PATH",
        help="database, node token and logs (default $XDG_DATA_HOME/tether/up)",
    )  # fmt: skip
    p.add_argument("--devices", default="all", metavar="SPEC", help="devices to offer")
    p.add_argument("--name", metavar="NAME", help="the node's name (default: the host name)")
    p.add_argument("--user", metavar="NAME", help="your user name in the pool (default: $USER)")
    p.add_argument(
        "--ready-file", type=Path, metavar="PATH",
        help="write the pool's URL here once the acceptor is registered",
    )  # fmt: skip
    p.add_argument(
        "--tls", action="store_true",
        help="HTTPS for the pool and tls:// for sessions, with a self-signed CA made in the "
        "data directory (needs the openssl command)",
    )  # fmt: skip
    p.set_defaults(handler=up)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tether" / "up"


def _clean_name(text: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", text).strip("-._")[:64]
    return name if name and name[0].isalnum() else fallback


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _wait_file(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            why = f"exited with status {proc.returncode}" if proc.poll() is not None else "hung"
            raise _UpError(f"the {what} {why}; its log ({log}) ends:\n{tail}")
        time.sleep(0.05)
    return path.read_text().strip()


class _UpError(Exception):
    pass


def up(args: argparse.Namespace) -> int:
    from tether._config import config_path, write_pool
    from tether.cli._poolcli import require_pool_extra
    from tether.poolapi import PoolClient

    require_pool_extra("tether up")
    data = args.data_dir or _default_data_dir()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    node = _clean_name(args.name or socket.gethostname().split(".")[0], "local")
    user = _clean_name(args.user or getpass.getuser(), "me")
    if user == "admin":
        user = "me"  # 'admin' is the pool's first user
    node_token_file = data / "node-token"
    admin_file = data / "admin-token.new"
    for stale in (data / "pool.url", data / "acceptor.addr", admin_file):
        stale.unlink(missing_ok=True)
    try:
        tls = _certificates(args, data) if args.tls else None
    except TetherError as exc:
        print(f"tether up: {exc}", file=sys.stderr)
        return 1
    acceptor_listen = args.acceptor_listen
    if tls is not None and acceptor_listen.startswith("tcp://"):
        acceptor_listen = "tls://" + acceptor_listen.removeprefix("tcp://")
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "wb") as f:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        procs.append(proc)
        return proc

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        pool_log = data / "pool.log"
        pool = spawn(
            [
                sys.executable, "-m", "tether", "pool", "serve",
                "--listen", args.listen,
                "--db", str(data / "pool.db"),
                "--secret-file", str(data / "pool-secret"),
                "--bootstrap-token-file", str(admin_file),
                "--ready-file", str(data / "pool.url"),
                *([] if tls is None else ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]),
            ],
            pool_log,
        )  # fmt: skip
        url = _wait_file(data / "pool.url", pool, "pool", pool_log)
        first = admin_file.exists()
        if first:  # first start: set the pool up
            admin_token = admin_file.read_text().strip()
            admin_file.unlink()
            admin = PoolClient(url, admin_token, ca=None if tls is None else tls.ca)
            _set_up(admin, node, user, node_token_file, write_pool, tls)
        elif not node_token_file.exists():
            raise _UpError(
                f"{data} has a pool database but no node token: it was not made by "
                "`tether up`, or the node token was deleted; use another --data-dir"
            )
        else:
            _follow_scheme(url, tls)
        acc_log = data / "acceptor.log"
        serve_argv = [
            sys.executable, "-m", "tether", "serve",
            "--listen", acceptor_listen, "--pool", url,
            "--node-token-file", str(node_token_file), "--name", node, "--replace",
            "--devices", args.devices, "--ready-file", str(data / "acceptor.addr"),
        ]  # fmt: skip
        if args.advertise:
            serve_argv += ["--advertise", args.advertise]
        if shutil.which("bwrap") is None:
            # One machine, one user: run without the sandbox rather than not at
            # all, and say so (a shared acceptor must not: tether serve refuses).
            print(
                "tether up: bubblewrap (bwrap) is not installed, so sessions run "
                "unsandboxed as this user; apt-get install bubblewrap to isolate them",
                file=sys.stderr,
            )
            serve_argv.append("--no-sandbox")
        if tls is not None:
            serve_argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
            serve_argv += ["--tls-ca", str(tls.ca)]
        acceptor = spawn(serve_argv, acc_log)
        address = _wait_file(data / "acceptor.addr", acceptor, "acceptor", acc_log)
        _announce(url, address, node, user if first else None, config_path(), data)
        if args.ready_file is not None:
            tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
            tmp.write_text(url + "\n")
            tmp.replace(args.ready_file)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = next(p for p in procs if p.poll() is not None)
        which = "pool" if dead is pool else "acceptor"
        log = pool_log if dead is pool else acc_log
        print(f"tether up: the {which} exited (status {dead.returncode}); see {log}",
              file=sys.stderr)  # fmt: skip
        return 1
    except _UpError as exc:
        print(f"tether up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tether up: stopping", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):  # the acceptor first: its workers end with it
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        signal.signal(signal.SIGTERM, old_term)


def _certificates(args: argparse.Namespace, data: Path) -> Any:
    """The self-signed CA and server certificate in ``data/tls``, made on first use."""
    from tether.transport import parse_address
    from tether.transport._selfsigned import SelfSigned, make_self_signed

    directory = data / "tls"
    made = SelfSigned(ca=directory / "ca.crt", cert=directory / "server.crt",
                      key=directory / "server.key")  # fmt: skip
    if all(p.exists() for p in (made.ca, made.cert, made.key)):
        return made
    hosts = ["127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()]
    pool_host = args.listen.rpartition(":")[0].strip("[]")
    hosts.append(pool_host)
    for url in (args.acceptor_listen, args.advertise):
        with contextlib.suppress(ValueError, TypeError):
            hosts.append(parse_address(url).host)
    wildcard = ("", "0.0.0.0", "::")
    names = list(dict.fromkeys(h for h in hosts if h and h not in wildcard))
    return make_self_signed(
        directory, hosts=names, ca_name=f"Tether up CA ({socket.gethostname()})"
    )


def _follow_scheme(url: str, tls: Any) -> None:
    """A later start with or without --tls: point the config written at the first
    start at the pool's URL as it is now (http or https) and at the CA, if the
    config names this same pool."""
    import tomllib

    from tether._config import config_path, write_pool

    path = config_path()
    try:
        section = tomllib.loads(path.read_text()).get("pool", {})
    except (OSError, ValueError):
        return  # no config, or one we cannot read: the user's to fix
    old, token = section.get("url"), section.get("token")
    if not isinstance(old, str) or not isinstance(token, str) or old == url:
        return
    if old.split("://", 1)[-1] == url.split("://", 1)[-1]:
        write_pool(url, token, path, ca=None if tls is None else tls.ca)


def _set_up(
    admin: Any, node: str, user: str, node_token_file: Path, write_pool: Any, tls: Any
) -> None:
    """First start: team 'local', the user in it, their token in the config, a node token."""
    from tether.poolapi import Conflict

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # the pool listens before its first request is served
        try:
            admin.me()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with contextlib.suppress(Conflict):
        admin.create_team("local")
    with contextlib.suppress(Conflict):
        # An admin: the pool is this user's own, and `tether admin` must work
        # with the config as written (no token pasted by hand).
        admin.create_user(user, admin=True, teams=["local"])
    token = admin.create_token(user=user, label="tether up")["token"]
    write_pool(admin.url, token, ca=None if tls is None else tls.ca)
    node_token = admin.create_token(kind="node", node=node, label="tether up")["token"]
    _write_secret(node_token_file, node_token)
    # The bootstrap token was only for this set-up: nothing may keep it.
    admin.revoke_token(admin.token.split("_")[1])


def _announce(
    url: str, address: str, node: str, new_user: str | None, config: Path, data: Path
) -> None:
    lines = [
        f"tether up: pool      {url}  (database and logs in {data})",
        f"tether up: acceptor  {address}  (node {node!r}, registered)",
    ]
    if new_user:
        lines += [
            f"tether up: wrote {config} (mode 0600): the pool's URL and the API token of "
            f"{new_user!r}, an admin of this pool in team 'local'",
        ]
    else:
        lines.append(f"tether up: using the pool set up before; your config is {config}")
    lines += [
        "In another terminal:",
        f"  tether run --pool {url} --gpus 0.5 --remote torch -- python train.py",
        "  tether pool status; tether admin user list",
        "Ctrl-C stops both.",
    ]
    print("\n".join(lines), flush=True)
