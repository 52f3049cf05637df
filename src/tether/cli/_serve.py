"""``tether serve``: the acceptor on a device host.

(Over 400 lines: the options and their help are most of it.) It only parses: the
options, their checks, and the records they become;
:class:`~tether.acceptor._service.AcceptorService` runs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.acceptor._service import MetricsEndpoint

DESCRIPTION = """\
Accept Tether sessions on this host. Each session gets its own worker process,
which executes the client's remoted modules (torch, numpy, ...) here, and
exits when the client disconnects or dies.

Clients authenticate with the token in --token-file; the file is created with a
new random token if it does not exist (copy it to the clients).

With --listen tls://HOST:PORT and --tls-cert/--tls-key, sessions run over TLS:
clients verify the certificate (against --tls-ca FILE or $TETHER_TLS_CA on
their side, else their system's trust) and the token never travels in clear.

With --pool, the acceptor instead registers this host's devices with a pool
(authenticated by the node token in --node-token-file), heartbeats with each
session's metering, and accepts only sessions that show a ticket the pool
signed for this node; each session's worker is held to the ticket's slice.
"""

EPILOG = """\
examples:
  tether serve --listen tcp://0.0.0.0:7070 --token-file token
  tether run --connect tcp://THISHOST:7070 --token-file token --remote torch -- python train.py

  # over TLS (the certificate must name THISHOST; clients trust its CA)
  tether serve --listen tls://0.0.0.0:7070 --tls-cert host.crt --tls-key host.key
  tether run --connect tls://THISHOST:7070 --tls-ca ca.crt --token-file token --remote torch -- ...

  # in a pool (an admin issued the node token: tether admin token create --node gpu7)
  tether serve --listen tcp://0.0.0.0:7070 --pool http://pool:8600 \
      --node-token-file /etc/tether/node-token --name gpu7 --devices nvidia
"""


def _default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "tether" / "acceptor-token"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="accept sessions on this host (the acceptor)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        default="tcp://127.0.0.1:7070",
        metavar="URL",
        help="address to listen on (default tcp://127.0.0.1:7070; port 0 picks one)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"token clients must present (default $TETHER_TOKEN_FILE, else "
        f"{_default_token_file()})",
    )
    p.add_argument(
        "--ready-file", type=Path, metavar="PATH", help="write the address here once listening"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    box = p.add_argument_group("worker sandbox (docs/security.md)")
    box.add_argument(
        "--worker-uids", metavar="FIRST-LAST",
        help="uids for sessions' workers, one per live session (root only; default "
        "61000-61999 when root)",
    )  # fmt: skip
    box.add_argument(
        "--no-sandbox", action="store_true",
        help="run every worker as this user, unsandboxed: only if you trust every client",
    )  # fmt: skip
    tls = p.add_argument_group("TLS")
    tls.add_argument(
        "--tls-cert", type=Path, metavar="PATH",
        help="PEM certificate (chain) for tls:// sessions (default $TETHER_TLS_CERT)",
    )  # fmt: skip
    tls.add_argument(
        "--tls-key", type=Path, metavar="PATH",
        help="its unencrypted PEM private key (default $TETHER_TLS_KEY)",
    )  # fmt: skip
    tls.add_argument(
        "--tls-ca", type=Path, metavar="PATH",
        help="CA file to verify an https:// pool with (default $TETHER_TLS_CA, else system trust)",
    )  # fmt: skip
    pool = p.add_argument_group("pool mode")
    pool.add_argument(
        "--pool", metavar="URL", help="register with this pool, e.g. http://pool:8600 "
        "(default: $TETHER_POOL when --node-token-file or $TETHER_NODE_TOKEN is given)",
    )  # fmt: skip
    pool.add_argument(
        "--node-token-file", type=Path, metavar="PATH",
        help="file holding this node's token (or $TETHER_NODE_TOKEN_FILE, $TETHER_NODE_TOKEN)",
    )  # fmt: skip
    pool.add_argument(
        "--name", metavar="NAME", help="this node's name in the pool (default: the host name)"
    )
    pool.add_argument(
        "--advertise", metavar="URL", help="the address clients should connect to "
        "(default: the listen address; the host name when listening on 0.0.0.0)",
    )  # fmt: skip
    pool.add_argument(
        "--devices", default="all", metavar="SPEC",
        help="devices to offer: all (default), vendors or ids, e.g. cpu:0,nvidia:1",
    )  # fmt: skip
    pool.add_argument(
        "--replace", action="store_true",
        help="take over this node name even if the pool still thinks it alive (after a restart)",
    )  # fmt: skip
    pool.add_argument(
        "--heartbeat-interval", type=float, default=5.0, metavar="S",
        help="seconds between heartbeats to the pool (default 5)",
    )  # fmt: skip
    met = p.add_argument_group("metrics (docs/deploy.md, Metrics)")
    met.add_argument(
        "--metrics-listen", metavar="HOST:PORT",
        help="serve Prometheus /metrics over HTTP here, e.g. 127.0.0.1:9470 (default: off)",
    )  # fmt: skip
    met.add_argument(
        "--metrics-token-file", type=Path, metavar="PATH",
        help="bearer token scrapers must send (needed unless HOST is loopback)",
    )  # fmt: skip
    met.add_argument(
        "--metrics-public", action="store_true",
        help="serve /metrics on a non-loopback HOST without a token",
    )  # fmt: skip
    p.set_defaults(handler=serve)


def _metrics_setup(args: argparse.Namespace) -> MetricsEndpoint | str | None:
    """The metrics endpoint asked for, None if none, or why it is refused."""
    from tether.acceptor._metrics import check_exposure

    if args.metrics_listen is None:
        if args.metrics_token_file or args.metrics_public:
            return "--metrics-token-file/--metrics-public need --metrics-listen HOST:PORT"
        return None
    host, sep, port_text = args.metrics_listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        return f"--metrics-listen wants HOST:PORT, e.g. 127.0.0.1:9470, not {args.metrics_listen!r}"
    token = None
    if args.metrics_token_file is not None:
        try:
            token = args.metrics_token_file.read_text().strip()
        except OSError as exc:
            return f"cannot read {args.metrics_token_file}: {exc.strerror}"
        if not token:
            return f"{args.metrics_token_file} is empty"
    why = check_exposure(host, token, args.metrics_public)
    if why is not None:
        return why
    from tether.acceptor._service import MetricsEndpoint

    return MetricsEndpoint(host=host, port=int(port_text), token=token)


def _tls_context(args: argparse.Namespace, address: Any) -> Any:
    """The server TLS context the options ask for (None for plain); TetherError if
    the options and the address disagree or the files are unusable."""
    from tether._errors import TetherError
    from tether.transport._tls import server_context

    cert = args.tls_cert or os.environ.get("TETHER_TLS_CERT") or None
    key = args.tls_key or os.environ.get("TETHER_TLS_KEY") or None
    if address.scheme != "tls":
        if args.tls_cert or args.tls_key:
            raise TetherError(f"--tls-cert/--tls-key need a tls:// address, not {address}")
        return None
    if cert is None or key is None:
        raise TetherError(
            f"{address} needs a certificate and its key: --tls-cert PATH --tls-key PATH "
            "(or $TETHER_TLS_CERT, $TETHER_TLS_KEY); `tether up --tls` can make a self-signed one"
        )
    return server_context(cert, key)


def serve(args: argparse.Namespace) -> int:
    from tether._errors import TetherError
    from tether.acceptor._server import read_or_create_token
    from tether.transport import parse_address

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        address = parse_address(args.listen)
    except ValueError as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    try:
        tls = _tls_context(args, address)
    except TetherError as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    setup = _metrics_setup(args)
    if isinstance(setup, str):
        print(f"tether serve: {setup}", file=sys.stderr)
        return 2
    pool_url = args.pool
    node_token_given = os.environ.get("TETHER_NODE_TOKEN") or os.environ.get(
        "TETHER_NODE_TOKEN_FILE"
    )
    if pool_url is None and (args.node_token_file is not None or node_token_given):
        pool_url = os.environ.get("TETHER_POOL")
    if pool_url is not None:
        return _serve_pool(args, address, pool_url, tls, setup)
    if args.devices != "all":
        print("tether serve: --devices needs --pool (it restricts what the pool may place here)",
              file=sys.stderr)  # fmt: skip
        return 2
    env_file = os.environ.get("TETHER_TOKEN_FILE")
    token_file = args.token_file or (Path(env_file) if env_file else _default_token_file())
    try:
        token, created = read_or_create_token(token_file)
    except (OSError, ValueError) as exc:
        print(f"tether serve: cannot use token file {token_file}: {exc}", file=sys.stderr)
        return 2
    if created:
        print(f"tether: created token file {token_file} (copy it to your clients)", file=sys.stderr)
    sandbox = _sandbox(args, [token_file, *_tls_secrets(args), *_metrics_secrets(args)])
    if isinstance(sandbox, int):
        return sandbox

    def listening(addr: Any, _advertised: str | None) -> None:
        print(f"tether: listening on {addr}", file=sys.stderr, flush=True)

    return _run(args, address, listening, token=token, tls=tls, metrics=setup, **sandbox)


def _metrics_ready(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"tether: metrics on http://{shown}:{port}/metrics", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, address: Any, listening: Any, **service_args: Any) -> int:
    """Run an :class:`~tether.acceptor._service.AcceptorService` of ``service_args`` until
    SIGTERM or Ctrl-C; the exit status, after one line if it failed."""
    from tether._errors import TetherError
    from tether.acceptor._service import AcceptorService

    service = AcceptorService(
        address,
        on_listening=listening,
        on_ready=lambda addr: _write_ready(args.ready_file, addr),
        on_metrics=_metrics_ready,
        **service_args,
    )

    def on_term(*_: Any) -> None:  # systemd's stop: end the workers, remove the cells
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        service.run()
    except TetherError as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tether serve: cannot listen on {address}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _metrics_secrets(args: argparse.Namespace) -> list[Path]:
    """The metrics token's file, which no worker may read."""
    return [args.metrics_token_file] if args.metrics_token_file else []


def _tls_secrets(args: argparse.Namespace) -> list[Path]:
    """The TLS private key, which no worker may read."""
    key = args.tls_key or os.environ.get("TETHER_TLS_KEY")
    return [Path(key)] if key else []


def _node_token_files(args: argparse.Namespace) -> list[Path]:
    """The node token's file, which no worker may read."""
    path = args.node_token_file or os.environ.get("TETHER_NODE_TOKEN_FILE")
    return [Path(path)] if path else []


def _sandbox(args: argparse.Namespace, secret_files: list[Path]) -> dict[str, Any] | int:
    """The Acceptor's sandbox arguments, or an exit status after saying why not."""
    from tether.acceptor._sandbox import Sandbox, SandboxError, parse_uid_range, scrub_env

    if args.no_sandbox:
        if args.worker_uids:
            print("tether serve: --worker-uids and --no-sandbox contradict", file=sys.stderr)
            return 2
        logging.getLogger("tether.acceptor").warning(
            "--no-sandbox: every session's worker runs as this user, unsandboxed"
        )
        return {"worker_env": scrub_env(os.environ)}
    try:
        uids = parse_uid_range(args.worker_uids) if args.worker_uids else None
        sandbox = Sandbox.create(uids=uids, secret_files=secret_files)
    except (ValueError, SandboxError) as exc:
        print(f"tether serve: cannot sandbox workers: {exc}; or pass --no-sandbox to run "
              "them unsandboxed as this user (only if you trust every client)",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.getLogger("tether.acceptor").info("%s", sandbox.describe())
    return {"sandbox": sandbox}


def _write_ready(path: Path | None, addr: Any) -> None:
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{addr}\n")
        tmp.replace(path)


def _serve_pool(
    args: argparse.Namespace, address: Any, pool_url: str, tls: Any, setup: MetricsEndpoint | None
) -> int:
    """``tether serve --pool``: tickets only, registered with the pool, metered."""
    from tether.acceptor._devices import DeviceFilterError, discover, discover_frameworks
    from tether.acceptor._service import PoolMembership

    node_token = os.environ.get("TETHER_NODE_TOKEN")
    token_file = args.node_token_file or os.environ.get("TETHER_NODE_TOKEN_FILE")
    if token_file:
        try:
            node_token = Path(token_file).read_text().strip()
        except OSError as exc:
            print(f"tether serve: cannot read {token_file}: {exc.strerror}",
                  file=sys.stderr)  # fmt: skip
            return 2
    if not node_token:
        print(
            "tether serve: --pool needs this node's token: --node-token-file PATH, "
            "$TETHER_NODE_TOKEN_FILE or $TETHER_NODE_TOKEN "
            "(an admin issues one: tether admin token create --node NAME)",
            file=sys.stderr,
        )
        return 2
    import socket

    name = args.name or socket.gethostname().split(".")[0]
    try:
        from tether.acceptor._devices import filter_devices

        devices = filter_devices(discover().devices, args.devices)
    except DeviceFilterError as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    if not devices:
        print("tether serve: no device to offer", file=sys.stderr)
        return 2
    if all(d.vendor == "cpu" for d in devices):
        # Versions suffice for CPU devices (every build drives a CPU), and
        # probing builds imports each framework: seconds at every start.
        frameworks = _versions_only()
    else:
        frameworks = discover_frameworks()
    sandbox = _sandbox(args, [*_node_token_files(args), *_tls_secrets(args),
                              *_metrics_secrets(args)])  # fmt: skip
    if isinstance(sandbox, int):
        return sandbox

    def listening(addr: Any, advertised: str | None) -> None:
        print(f"tether: listening on {addr}; registering node {name!r} ({advertised}) "
              f"with {pool_url}", file=sys.stderr, flush=True)  # fmt: skip

    membership = PoolMembership(
        url=pool_url,
        node_token=node_token,
        name=name,
        devices=devices,
        frameworks=frameworks,
        advertise=args.advertise,
        heartbeat_interval=args.heartbeat_interval,
        replace=args.replace,
        ca=args.tls_ca,
    )
    return _run(args, address, listening, pool=membership, tls=tls, metrics=setup, **sandbox)


def _versions_only() -> tuple[Any, ...]:
    from tether.acceptor._devices import Framework
    from tether.acceptor._devices._frameworks import _FRAMEWORKS, _distribution_version

    found = ((n, _distribution_version(*names)) for n, names in _FRAMEWORKS.items())
    return tuple(Framework(name=n, version=v, build="cpu") for n, v in found if v is not None)
