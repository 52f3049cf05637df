"""``tether.connect()`` and ``tether.lease()``: the public way to open a session from
Python, on an acceptor or on a slice of a pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from tether._config import require_pool
from tether._errors import ConnectError
from tether.client._connect import open_session
from tether.client._lease import DEFAULT_HEARTBEAT_S, Lease, acquire, slice_request
from tether.client._session import Session
from tether.client._streams import install_ordered_streams
from tether.transport._tls import ca_from_env


def _token_from_env() -> str | None:
    token = os.environ.get("TETHER_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("TETHER_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConnectError(f"cannot read TETHER_TOKEN_FILE {path}: {exc.strerror}") from None
    return None


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    remote: Iterable[str] = (),
    ordered_output: bool = True,
    tls_ca: str | os.PathLike[str] | None = None,
    liveness: float | None = None,
) -> Session:
    """Open a session on an acceptor and return it (also a context manager).

    ``url`` and ``token`` default to the ``TETHER_CONNECT`` and ``TETHER_TOKEN``
    (or ``TETHER_TOKEN_FILE``) environment variables. With no URL at all, an
    acceptor is started on loopback in this process (it uses this machine's
    devices, the CPU if nothing else) and stopped when the session closes.

    A ``tls://`` URL verifies the acceptor's certificate against ``tls_ca`` (a
    PEM file of CA certificates; default ``TETHER_TLS_CA``), else the system's
    trust.

    ``remote`` names the modules that this session remotes (their objects never
    travel by value). ``liveness`` is how many seconds the worker may be silent
    (stopped, or cut off) before the session counts as lost (default
    ``TETHER_LIVENESS_S``, else 20; 0: never); the worker frees a client silent
    that long. With ``ordered_output`` the script's own prints wait for
    pending remote work first, so output stays in program order.
    """
    url = url or os.environ.get("TETHER_CONNECT") or None
    token = token if token is not None else _token_from_env()
    if url is not None and token is None:
        raise ConnectError(
            f"no token for {url}: pass token=..., or set TETHER_TOKEN or TETHER_TOKEN_FILE"
        )
    if tls_ca is None:
        tls_ca = ca_from_env()
    # Whatever this opens is closed again if a later step fails; on success the
    # session owns it all (closing the session stops an embedded acceptor).
    with contextlib.ExitStack() as opening:
        on_close = None
        if url is None:
            from tether.acceptor._server import EmbeddedAcceptor

            embedded = EmbeddedAcceptor()
            opening.callback(embedded.stop)
            url = str(embedded.start())
            token = embedded.token
            on_close = embedded.stop
        assert token is not None
        session = open_session(
            url, token, remote=remote, on_close=on_close, tls_ca=tls_ca, liveness=liveness
        )
        opening.callback(session.close)
        if ordered_output:
            install_ordered_streams(session)
        opening.pop_all()
    return session


def lease(
    pool: str | None = None,
    token: str | None = None,
    *,
    token_file: str | os.PathLike[str] | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    gpus: float | None = None,
    memory: str | None = None,
    vendor: str | None = None,
    model: str | None = None,
    frameworks: list[str] | None = None,
    node: str | None = None,
    team: str | None = None,
    name: str | None = None,
    wait: bool = True,
    queue_timeout_s: float | None = None,
    heartbeat_s: float | None = None,
    ticket_file: str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
) -> Lease:
    """Ask a pool for a slice, wait until it is placed, and keep it until released.

    ``pool`` and ``token`` (or ``token_file``) default to ``TETHER_POOL`` and
    ``TETHER_POOL_TOKEN`` (or ``TETHER_POOL_TOKEN_FILE``), then to the config file's
    ``[pool]`` table (``tether up`` writes it). The slice: ``gpus`` a fraction of one
    device in (0, 1] or a whole number of devices (default one whole device), ``memory``
    (``"8GiB"``), ``vendor``, ``model``, ``frameworks``, ``node``, ``team``; ``name`` is
    the session's name in the pool. With ``wait`` (the default) a request that does not
    fit now queues, and a position line goes to ``out`` (default stderr) while it
    waits; ``queue_timeout_s`` bounds the wait.

    The returned :class:`~tether.client._lease.Lease` is renewed from a daemon thread
    every ``heartbeat_s`` seconds (default ``TETHER_LEASE_HEARTBEAT_S``, else 10) until
    :meth:`~tether.client._lease.Lease.release`, which the ``with`` statement calls::

        with tether.lease(gpus=0.5) as slice_:
            with tether.connect(slice_.address, slice_.ticket, tls_ca=slice_.ca,
                                remote=["torch"]) as session:
                torch = session.import_module("torch")

    With ``ticket_file``, each fresh ticket is also written there (mode 0600), for a
    program started later to connect with (``TETHER_TOKEN_FILE``).

    Raises :class:`ValueError` for a bad slice value, :class:`~tether.ConfigError`
    when no pool or token is configured, :class:`~tether.poolapi.Refused` when the
    pool says no (over quota; nothing fits and ``wait`` is false; the queue timed
    out), :class:`~tether.ConnectError` or :class:`~tether.AuthenticationError`. An
    interrupted wait (Ctrl-C) withdraws the request.
    """
    from tether.poolapi import PoolClient

    request = slice_request(
        gpus=gpus, memory=memory, vendor=vendor, model=model, frameworks=frameworks,
        node=node, team=team, wait=wait, queue_timeout_s=queue_timeout_s, name=name,
    )  # fmt: skip
    cfg = require_pool(
        pool, token, token_file=token_file, ca=tls_ca, how="pass pool=... and token=..."
    )
    assert cfg.url is not None and cfg.token is not None  # require_pool says so
    held = acquire(
        PoolClient(cfg.url, cfg.token, ca=cfg.ca, max_idle=1),  # the lease closes it
        request,
        out=out,
        ticket_file=Path(ticket_file) if ticket_file is not None else None,
        ca=cfg.ca,
    )
    if heartbeat_s is None:
        heartbeat_s = float(os.environ.get("TETHER_LEASE_HEARTBEAT_S") or DEFAULT_HEARTBEAT_S)
    held.start_heartbeat(heartbeat_s)
    return held
