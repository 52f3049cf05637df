"""Opening a session: connect, say hello, wait for the worker's welcome."""

from __future__ import annotations

import difflib
import importlib.util
import os
import platform
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from tether._env import forwarded
from tether._errors import (
    AuthenticationError,
    ConnectError,
    ProtocolError,
    ProtocolVersionMismatch,
    RemoteModuleNotFound,
    TetherError,
)
from tether.client._arrays import ArrayOps
from tether.client._draws import Draws
from tether.client._namespace import LOCAL_MODULES
from tether.client._replica import Replicas
from tether.client._session import Session
from tether.transport import Address, Channel, ChannelClosed, connect, parse_address
from tether.transport._heart import Heart
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
from tether.wire._liveness import (
    BEATS_PER_WINDOW,
    DEFAULT_WINDOW_S,
    clamp_window,
    parse_window,
)

#: What each open session's worker said in its welcome (pid, python, device).
_WORKER_INFO: weakref.WeakKeyDictionary[Session, dict[str, Any]] = weakref.WeakKeyDictionary()

#: How long to wait for the worker's welcome (it may have to start up).
WELCOME_TIMEOUT = 60.0
#: Seconds of silence after which a worker counts as gone (0: never).
LIVENESS_ENV = "TETHER_LIVENESS_S"


def liveness_window(seconds: float | None = None) -> float | None:
    """The window this client judges its worker by: ``seconds``, else
    ``TETHER_LIVENESS_S``, else the default; clamped; None for 0 (never).

    Raises TetherError for a value that is no number of seconds.
    """
    if seconds is None:
        text = os.environ.get(LIVENESS_ENV, "").strip()
        if not text:
            return DEFAULT_WINDOW_S
        try:
            seconds = float(text)
        except ValueError:
            raise TetherError(
                f"{LIVENESS_ENV}={text!r} is not a number of seconds (0 turns the check off)"
            ) from None
    if seconds != seconds or seconds < 0:  # NaN, or negative
        raise TetherError(f"the liveness window must be 0 or more seconds, not {seconds}")
    return clamp_window(seconds) if seconds > 0 else None


def open_session(
    url: str,
    token: str,
    *,
    remote: Iterable[str] = (),
    on_close: Callable[[], None] | None = None,
    timeout: float = WELCOME_TIMEOUT,
    tls_ca: str | os.PathLike[str] | None = None,
    liveness: float | None = None,
) -> Session:
    """Connect to the acceptor at ``url`` and open a session.

    A ``tls://`` acceptor must show a certificate for its host that chains to
    ``tls_ca`` (a PEM file), or to the system's trust when None.

    ``liveness`` is how many seconds the worker may stay silent before the
    session counts as lost (see :func:`liveness_window`); the worker judges
    this client by the same window.

    Raises ConnectError (unreachable, TLS not verified), AuthenticationError
    (token refused), ProtocolVersionMismatch, or ProtocolError (not a Tether
    acceptor).
    """
    try:
        addr = parse_address(url)
    except ValueError as exc:
        raise ConnectError(str(exc)) from None
    remote = frozenset(remote)
    window = liveness_window(liveness)
    values = []
    if "numpy" not in remote and importlib.util.find_spec("numpy") is not None:
        values.append("numpy")
    # numpy remoted while the client's libraries keep a numpy of their own: its
    # numbers come back as that numpy's scalars (values, not handles).
    scalars = ["numpy"] if "numpy" in remote and "numpy" in LOCAL_MODULES else []
    sock = connect(addr, tls_ca=tls_ca)
    try:
        channel = Channel(sock, Role.CLIENT)
        welcome = _welcome(channel, addr, token, remote, (values, scalars), window, timeout)
        session = Session(
            channel,
            address=str(addr),
            session_id=welcome.session,
            remote_modules=remote,
            on_close=on_close,
            heart=_heart(channel, window, welcome.info.get("liveness", None)),
        )
    except BaseException:
        # Whatever went wrong (refused, a welcome that does not parse, a
        # worker on another Python), the socket goes with it.
        sock.close()
        raise
    _WORKER_INFO[session] = dict(welcome.info)
    if scalars:
        session.replicas = Replicas(session)
        session.on_mirror(session.replicas.specialize)
        session.forget = session.replicas.forgetting(session.forget)
        session.arrays = ArrayOps(session, session.replicas)
        session.draws = Draws(session)
    try:
        check_remote_modules(session, remote)
    except BaseException:
        session.close()
        raise
    return session


def _welcome(
    channel: Channel,
    addr: Address,
    token: str,
    remote: frozenset[str],
    by_value: tuple[list[str], list[str]],
    window: float | None,
    timeout: float,
) -> Welcome:
    """Say hello on ``channel`` and return the worker's welcome; raises as
    :func:`open_session` does. The caller closes the channel on failure."""
    values, scalars = by_value
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        token=token,
        info={
            "values": values,
            "scalars": scalars,
            "client": {"host": platform.node(), "pid": os.getpid(), "remote": sorted(remote)},
            "env": forwarded(os.environ),
            "liveness": window or 0,
        },
    )
    try:
        channel.conn.check_outgoing(Kind.HELLO)
        channel.send_pieces(encode_handshake(hello))
        frame = channel.recv(timeout=timeout)
    except ChannelClosed as exc:
        hint = ""
        if addr.scheme == "tcp":
            # A TLS acceptor drops a plain hello without a word (it is not a
            # TLS record); say so, since nothing else will.
            hint = f" (if it serves TLS, connect to tls://{addr.host}:{addr.port})"
        raise ConnectError(
            f"the acceptor at {addr} closed the connection before answering: {exc}{hint}"
        ) from None
    except TimeoutError:
        raise ConnectError(
            f"the acceptor at {addr} did not start a worker in {timeout:.0f} s"
        ) from None
    msg = decode_handshake(frame)
    if isinstance(msg, Refused):
        if msg.code == "auth":
            raise AuthenticationError(f"the acceptor at {addr} refused the session: {msg.reason}")
        if msg.code == "version":
            raise ProtocolVersionMismatch(msg.reason)
        raise ConnectError(f"the acceptor at {addr} refused the session: {msg.reason}")
    if not isinstance(msg, Welcome):
        raise ProtocolError(
            f"the acceptor at {addr} answered the hello with a {type(msg).__name__}"
        )
    theirs = str(msg.info.get("python", ""))
    ours = platform.python_version()
    if theirs and theirs.split(".")[:2] != ours.split(".")[:2]:
        # The script's code travels as bytecode, which is specific to one
        # Python minor version.
        raise ProtocolVersionMismatch(
            f"the worker at {addr} runs Python {theirs} and this client Python {ours}: "
            "run the acceptor with the same Python minor version as the client"
        )
    return msg


def _heart(channel: Channel, window: float | None, theirs: Any) -> Heart | None:
    """The session's liveness, if the worker speaks it (it named its window)."""
    if theirs is None:
        return None  # an older worker: it would not understand a BEAT

    def silent(seconds: float) -> None:
        channel.expire(
            f"the worker was silent for {seconds:.0f} s: it is stopped, or its host or the "
            f"network to it is down ({LIVENESS_ENV} sets how long is too long)"
        )

    interval = (parse_window(theirs) or DEFAULT_WINDOW_S) / BEATS_PER_WINDOW
    return Heart(channel, window=window, interval=interval, on_silent=silent)


def worker_info(session: Session) -> dict[str, Any]:
    """What ``session``'s worker said about itself when it welcomed the client:
    ``pid``, ``python`` and, from current acceptors, ``device``."""
    return dict(_WORKER_INFO.get(session, {}))


def check_remote_modules(session: Session, names: Iterable[str]) -> None:
    """Fail unless the worker can import every remoted top-level module.

    A typo (``--remote troch``) would otherwise go unnoticed: the finder only
    claims ``troch``, the script's ``import torch`` gets the client's own torch,
    and the run "succeeds" on the wrong machine. Asking the worker's
    ``importlib.util.find_spec`` is cheap (nothing is imported); only when a
    name is missing does it list what the worker can import, for the closest
    match. Raises RemoteModuleNotFound naming the module and that match.
    """
    tops = sorted({n.partition(".")[0] for n in names if n})
    if not tops:
        return
    find_spec = session.getattr(session.import_module("importlib.util"), "find_spec")
    missing = [n for n in tops if session.value(find_spec, n) is None]
    if not missing:
        return
    name = missing[0]
    hint = ""
    close = closest(name, _importable(session))
    if close:
        hint = f"; did you mean {close!r}?"
    raise RemoteModuleNotFound(
        f"no module named {name!r} on the acceptor at {session.address}{hint} "
        "(fix --remote, or install it in the acceptor's environment)",
        name=name,
    )


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name`` (difflib's ratio, at least 0.6); on a tie,
    a module outside the standard library (what people remote), then by name."""
    scored = []
    for candidate in set(candidates):
        matcher = difflib.SequenceMatcher(None, name, candidate)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratio = matcher.ratio()
            if ratio >= 0.6:
                scored.append((-ratio, candidate in sys.stdlib_module_names, candidate))
    return min(scored)[2] if scored else None


def _importable(session: Session) -> list[str]:
    """The top-level modules the worker can import (its sys.path and built-ins)."""
    builtins = session.import_module("builtins")
    operator = session.import_module("operator")
    pkgutil = session.import_module("pkgutil")
    sys_mod = session.import_module("sys")
    # Built from the worker's own functions, so no code of ours travels.
    by_name = session.value(session.getattr(operator, "attrgetter"), "name")
    infos = session.value(session.getattr(pkgutil, "iter_modules"))
    names = session.value(
        session.getattr(builtins, "list"),
        session.value(session.getattr(builtins, "map"), by_name, infos),
    )
    found = [str(n) for n in names]
    found += [str(n) for n in session.getattr(sys_mod, "builtin_module_names")]
    return [n for n in found if not n.startswith("_")]
