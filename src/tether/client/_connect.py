"""Opening a session: connect, say hello, wait for the worker's welcome."""

from __future__ import annotations

import importlib.util
import os
import platform
from collections.abc import Callable, Iterable

from tether._env import forwarded
from tether._errors import (
    AuthenticationError,
    ConnectError,
    ProtocolError,
    ProtocolVersionMismatch,
)
from tether.client._session import Session
from tether.transport import Channel, ChannelClosed, connect, parse_address
from tether.wire import (
    PROTOCOL_VERSION,
    Hello,
    Kind,
    Refused,
    Role,
    Welcome,
    decode_handshake,
    encode_handshake,
)

#: How long to wait for the worker's welcome (it may have to start up).
WELCOME_TIMEOUT = 60.0


def open_session(
    url: str,
    token: str,
    *,
    remote: Iterable[str] = (),
    on_close: Callable[[], None] | None = None,
    timeout: float = WELCOME_TIMEOUT,
    tls_ca: str | os.PathLike[str] | None = None,
) -> Session:
    """Connect to the acceptor at ``url`` and open a session.

    A ``tls://`` acceptor must show a certificate for its host that chains to
    ``tls_ca`` (a PEM file), or to the system's trust when None.

    Raises ConnectError (unreachable, TLS not verified), AuthenticationError
    (token refused), ProtocolVersionMismatch, or ProtocolError (not a Tether
    acceptor).
    """
    try:
        addr = parse_address(url)
    except ValueError as exc:
        raise ConnectError(str(exc)) from None
    remote = frozenset(remote)
    values = []
    if "numpy" not in remote and importlib.util.find_spec("numpy") is not None:
        values.append("numpy")
    sock = connect(addr, tls_ca=tls_ca)
    channel = Channel(sock, Role.CLIENT)
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        token=token,
        info={
            "values": values,
            "client": {"host": platform.node(), "pid": os.getpid(), "remote": sorted(remote)},
            "env": forwarded(os.environ),
        },
    )
    try:
        channel.conn.check_outgoing(Kind.HELLO)
        channel.send_pieces(encode_handshake(hello))
        frame = channel.recv(timeout=timeout)
    except ChannelClosed as exc:
        channel.close()
        hint = ""
        if addr.scheme == "tcp":
            # A TLS acceptor drops a plain hello without a word (it is not a
            # TLS record); say so, since nothing else will.
            hint = f" (if it serves TLS, connect to tls://{addr.host}:{addr.port})"
        raise ConnectError(
            f"the acceptor at {addr} closed the connection before answering: {exc}{hint}"
        ) from None
    except TimeoutError:
        channel.close()
        raise ConnectError(
            f"the acceptor at {addr} did not start a worker in {timeout:.0f} s"
        ) from None
    except ProtocolError:
        channel.close()
        raise
    msg = decode_handshake(frame)
    if isinstance(msg, Refused):
        channel.close()
        if msg.code == "auth":
            raise AuthenticationError(f"the acceptor at {addr} refused the session: {msg.reason}")
        if msg.code == "version":
            raise ProtocolVersionMismatch(msg.reason)
        raise ConnectError(f"the acceptor at {addr} refused the session: {msg.reason}")
    assert isinstance(msg, Welcome)
    theirs = str(msg.info.get("python", ""))
    ours = platform.python_version()
    if theirs and theirs.split(".")[:2] != ours.split(".")[:2]:
        # The script's code travels as bytecode, which is specific to one
        # Python minor version.
        channel.close()
        raise ProtocolVersionMismatch(
            f"the worker at {addr} runs Python {theirs} and this client Python {ours}: "
            "run the acceptor with the same Python minor version as the client"
        )
    return Session(
        channel, address=str(addr), session_id=msg.session, remote_modules=remote, on_close=on_close
    )
