"""``tether pool serve``: the pool's HTTP server, its clock, and its first admin.

:func:`serve` opens (creating and migrating) the database, restores the policy
from it, and runs uvicorn on a socket it binds itself, so ``--listen
127.0.0.1:0`` works and the real address is printed before the first request.
A ticker thread feeds time to the policy (lost nodes, expired leases, queue
timeouts) at the next deadline, and at least every ``tick_s`` seconds.

First start: when the database has no user, the pool creates an admin user
``admin`` and one API token for it, prints the token once, and writes it (mode
0600) to ``--bootstrap-token-file`` when given. Keep it: it is the only way in
until you issue more tokens with ``tether admin``.

The ticket secret (every session ticket's key derives from it) is read from
``--secret-file`` or ``$TETHER_POOL_SECRET``, never from the database
(:mod:`tether.pool._secrets`); the file is created on first start.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tether._errors import PoolError
from tether.pool._db import StoreUnavailable
from tether.pool._secrets import ENV_SECRET, SecretSource, create_secret_file
from tether.pool._service import PoolService, ServiceConfig
from tether.pool._store import Store

__all__ = ["ServeOptions", "bootstrap_admin", "parse_listen", "serve"]

log = logging.getLogger("tether.pool")

#: Connections the kernel may hold for the pool before it accepts them (capped
#: by ``net.core.somaxconn``).
LISTEN_BACKLOG = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    listen: str = "127.0.0.1:8600"
    db: str = "tether-pool.db"
    config: ServiceConfig = field(default_factory=ServiceConfig)
    bootstrap_token_file: Path | None = None
    ready_file: Path | None = None
    public_metrics: bool = False
    tick_s: float = 1.0
    #: PEM certificate and key: serve HTTPS instead of HTTP (both or neither).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The ticket secret's file (created, mode 0600, when absent); None: the
    #: environment variable ``TETHER_POOL_SECRET`` must hold it.
    secret_file: Path | None = None


def open_secret(options: ServeOptions, out: TextIO) -> SecretSource:
    """The pool's ticket secret: ``secret_file`` (created with a fresh secret, mode
    0600, when absent), else ``$TETHER_POOL_SECRET``. PoolError if neither."""
    if options.secret_file is None:
        value = os.environ.get(ENV_SECRET)
        if not value:
            raise PoolError(
                f"the pool needs its ticket secret: --secret-file PATH or ${ENV_SECRET}"
            )
        return SecretSource.from_env(value)
    if create_secret_file(options.secret_file):
        print(
            f"tether pool: created the ticket secret {options.secret_file} (mode 0600; keep "
            "it out of database backups, give every replica the same one)",
            file=out,
            flush=True,
        )
    return SecretSource(options.secret_file)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8600`` for IPv6) -> (host, port); PoolError if malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise PoolError(f"--listen must be HOST:PORT, such as 127.0.0.1:8600; got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def bootstrap_admin(store: Store, token_file: Path | None, out: TextIO) -> str | None:
    """Create the first admin and its token if the database has no user; return the token."""
    if store.user_count() > 0:
        return None
    store.create_user("admin", is_admin=True, teams=(), now=time.time())
    _record, text = store.create_token(
        kind="user", user="admin", label="bootstrap", now=time.time()
    )
    if token_file is not None:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        # The file is where it goes: not into a log too (`tether up` keeps ours).
        print(f"tether pool: created user 'admin'; its API token is in {token_file}", file=out)
        return text
    print(
        f"tether pool: created user 'admin'. Its API token (shown once; keep it):\n  {text}",
        file=out,
        flush=True,
    )
    return text


def _ticker(service: PoolService, stop: threading.Event, tick_s: float) -> None:
    while not stop.is_set():
        deadline = service.next_deadline()
        wait = tick_s if deadline is None else min(tick_s, max(0.05, deadline - time.time()))
        if stop.wait(wait):
            return
        try:
            service.tick()
        except StoreUnavailable as exc:  # keep ticking: the database comes back by itself
            # Its message says why and hides the password; the driver's error chained
            # to it is not redacted, so no traceback.
            log.error("pool tick failed: %s", exc)
        except Exception:  # keep ticking: a bug in one tick must not stop the clock
            log.exception("pool tick failed")


def serve(options: ServeOptions, *, out: TextIO = sys.stdout) -> int:
    """Run the pool until SIGINT/SIGTERM. Prints ``tether pool listening on URL``."""
    try:
        import uvicorn

        from tether.pool._api import create_app
        from tether.pool._front import Front
    except ImportError as exc:
        raise PoolError(
            f"the pool service needs its extra dependencies ({exc.name} is missing): "
            "pip install 'tether[pool]'"
        ) from exc

    host, port = parse_listen(options.listen)
    if (options.tls_cert is None) != (options.tls_key is None):
        raise PoolError("HTTPS needs both --tls-cert and --tls-key")
    if options.tls_cert is not None and options.tls_key is not None:
        from tether.transport._tls import server_context

        server_context(options.tls_cert, options.tls_key)  # a clear error now, not in uvicorn
    secret = open_secret(options, out)
    secret.load()  # a bad secret file stops the start with its reason
    store = Store.open(options.db)
    try:
        bootstrap_admin(store, options.bootstrap_token_file, out)
        service = PoolService(store, options.config, secret=secret)
        service.start()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise PoolError(f"cannot listen on {options.listen}: {exc.strerror}") from exc
        # A deep accept queue: with the default 128, a burst of a few hundred
        # clients overflows it, and each dropped connection waits out TCP's
        # 1 s, 3 s, 7 s retransmits (the seconds-long p99 of bench/pool_write.py).
        sock.listen(LISTEN_BACKLOG)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        scheme = "https" if options.tls_cert is not None else "http"
        url = f"{scheme}://{shown}:{bound[1]}"
        print(f"tether pool listening on {url}", file=out, flush=True)
        if options.ready_file is not None:
            tmp = options.ready_file.with_name(options.ready_file.name + ".tmp")
            tmp.write_text(url + "\n")
            tmp.replace(options.ready_file)  # atomic: readers never see half a URL
        # The hot routes first (tether.pool._front), everything else by FastAPI.
        app = Front(create_app(service, public_metrics=options.public_metrics))
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=options.tls_cert,
                ssl_keyfile=options.tls_key,
            )
        )
        stop = threading.Event()
        ticker = threading.Thread(
            target=_ticker, args=(service, stop, options.tick_s), name="pool-ticker", daemon=True
        )
        ticker.start()
        try:
            server.run(sockets=[sock])
        finally:
            stop.set()
            ticker.join(timeout=5)
            app.close()
            sock.close()
    finally:
        store.close()
    return 0
