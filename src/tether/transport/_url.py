"""Addresses: ``tcp://host:port``, ``tls://host:port`` and ``unix:///path``, and the
sockets behind them. ``tls://`` is TCP with TLS on top, the server verified
(see :mod:`tether.transport._tls`)."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from tether._errors import ConnectError
from tether.transport._tls import client_context, wrap_client

SCHEMES: Final = ("tcp", "tls", "unix")


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(url: str) -> Address:
    """Parse ``tcp://host:port``, ``tls://host:port``, ``host:port`` or ``unix:///path``.

    Raises ValueError with a message that shows a valid form.
    """
    if "://" not in url:
        url = "tcp://" + url
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"unsupported address {url!r}: use tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH"
        )
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(f"unix address {url!r} has no path: use unix:///PATH")
        return Address("unix", path=path)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if parts.hostname is None or port is None:
        raise ValueError(f"address {url!r} needs a host and a port: use {parts.scheme}://HOST:PORT")
    return Address(parts.scheme, host=parts.hostname, port=port)


def tune(sock: socket.socket) -> None:
    """Options every session socket gets: no Nagle delay, and keepalive so a
    vanished peer is noticed within about half a minute even when idle."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if sys.platform == "linux":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def connect(
    addr: Address, *, timeout: float = 10.0, tls_ca: str | os.PathLike[str] | None = None
) -> socket.socket:
    """Open a connected, tuned, blocking socket; ConnectError if unreachable.

    For ``tls://`` the socket returned is an ``ssl.SSLSocket`` whose handshake
    is done and whose server was verified against ``tls_ca`` (a PEM file of CA
    certificates) or, when None, the system's trust; ConnectError otherwise.
    """
    ctx = client_context(tls_ca) if addr.scheme == "tls" else None
    try:
        if addr.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(addr.path)
        else:
            sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConnectError(f"cannot reach the acceptor at {addr}: {reason}") from exc
    sock.settimeout(None)
    tune(sock)
    if ctx is not None:
        return wrap_client(sock, ctx, addr.host, f"the acceptor at {addr}", timeout=timeout)
    return sock


def listen(addr: Address, *, backlog: int = 128) -> socket.socket:
    """Bind and listen; the returned socket's real port is in ``getsockname()``."""
    if addr.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(addr.path)
    else:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr.host, addr.port))
    sock.listen(backlog)
    return sock


def bound_address(sock: socket.socket, requested: Address) -> Address:
    """The address a listener actually got (port 0 resolved)."""
    if requested.scheme == "unix":
        return requested
    host, port = sock.getsockname()[:2]
    return Address(requested.scheme, host=host, port=port)
