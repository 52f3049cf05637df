"""Every error Tether raises on purpose derives from :class:`TetherError`.

The hierarchy (classes defined elsewhere name their module; a class that is
also a builtin error says so, for code that catches the builtin)::

    TetherError
    ├── ProtocolError              the peer sent bytes that break the wire protocol
    │   ├── FrameTooLarge          a frame over the negotiated size limit
    │   └── ProtocolVersionMismatch  client and acceptor speak different versions
    ├── ChannelClosed              (transport) the connection ended or broke; a
    │                              session turns it into DeviceLost
    ├── ConnectError               the acceptor (or pool) could not be reached
    ├── ConfigError                no pool configured, or a config or token file
    │                              that cannot be read or parsed
    ├── AuthenticationError        missing, wrong or expired token or ticket
    │   └── TicketError            (_ticket) a session ticket was refused:
    │       ├── TicketMalformed    not a ticket
    │       ├── TicketForged       not signed for this node
    │       ├── TicketExpired      past its expiry
    │       ├── TicketNotYetValid  issued in the future
    │       └── TicketWrongNode    issued for another node
    ├── SessionError               something is wrong with one session
    │   ├── SessionClosed          the session was closed by this side
    │   ├── DeviceLost             the worker died or the connection dropped
    │   ├── ObjectReleased         a proxy whose remote object was released
    │   ├── RemoteModuleNotFound   the acceptor cannot import a remoted module
    │   │                          (also ModuleNotFoundError)
    │   └── NameUnavailable        (acceptor) a script's name the worker cannot
    │                              bring over (also NameError)
    ├── SliceError                 (acceptor) a malformed slice, or one this process
    │                              cannot apply (also ValueError)
    ├── DeviceFilterError          (acceptor) a bad ``--devices`` filter (also ValueError)
    ├── SandboxError               (acceptor) workers cannot be sandboxed here
    ├── SeccompUnavailable         (acceptor) libseccomp is missing or refused the
    │                              filter; the sandbox turns it into SandboxError
    └── PoolError                  the pool refused or could not serve a request
        ├── StoreUnavailable       (pool) its database cannot be reached
        ├── PoolInputError         (pool) malformed or impossible input (also ValueError)
        ├── PoolNotFoundError      (pool) an unknown id (also LookupError)
        ├── PoolConflictError      (pool) input that clashes with the pool's state
        └── PoolRequestError       (poolapi) an API error response, by its code:
            ├── Forbidden          403
            ├── NotFound           404
            ├── Conflict           409
            ├── Refused            409: nothing fits now, or over quota
            └── Gone               410: the session has ended

Exceptions raised *by remote code* are not wrapped: the client raises the same
type (a builtin, or a local mirror class deriving from the nearest builtin base),
with the worker's traceback attached as ``__cause__`` in a
:class:`RemoteTraceback`, so ``except RuntimeError:`` works as it would locally.
Lower-layer errors (``OSError`` from sockets, ``pickle`` errors from decoding) are
translated once, at the boundary where they occur, and chained as ``__cause__``.
"""

from __future__ import annotations


class TetherError(Exception):
    """Root of every error Tether raises on purpose."""


class ProtocolError(TetherError):
    """The peer sent something the wire protocol does not allow.

    Garbage on the wire only ever raises this class (or a subclass); the
    connection that produced it is unusable afterwards.
    """


class FrameTooLarge(ProtocolError):
    """A frame is larger than the size limit of the connection."""


class ProtocolVersionMismatch(ProtocolError):
    """Client and acceptor speak different protocol versions."""


class ConnectError(TetherError):
    """The acceptor or the pool could not be reached."""


class ConfigError(TetherError):
    """What to connect to is not configured, or its configuration cannot be used.

    No pool URL or token in the arguments, the environment or the config file; a
    config file that does not parse; a token file that cannot be read or is empty.
    """


class AuthenticationError(TetherError):
    """A token or ticket was missing, wrong, expired or revoked."""


class SessionError(TetherError):
    """Something went wrong with one session; other sessions are unaffected."""


class SessionClosed(SessionError):
    """The session was closed by this side and cannot be used any more."""


class DeviceLost(SessionError):
    """The worker died or the connection to it dropped.

    Every object of the session is gone with it; open a new session to go on.
    """


class ObjectReleased(SessionError):
    """A proxy was used after its remote object had been released."""


class RemoteModuleNotFound(SessionError, ModuleNotFoundError):
    """The acceptor's environment cannot import a module the client remoted.

    Also a :class:`ModuleNotFoundError`, so code that guards optional imports
    with ``except ImportError`` keeps working.
    """


class PoolError(TetherError):
    """The pool refused or could not serve a request."""


class RemoteTraceback(Exception):
    """The worker-side traceback of a remote exception, attached as ``__cause__``.

    Printing an uncaught remote exception therefore shows the remote frames
    first, then "The above exception was the direct cause of ...", then the
    script's own frames, as :mod:`multiprocessing` does.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'
