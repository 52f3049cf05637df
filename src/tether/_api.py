"""``tether.connect()``: the public way to open a session from Python."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from tether._errors import ConnectError
from tether.client._connect import open_session
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
