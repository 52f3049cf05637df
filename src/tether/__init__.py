"""Tether: use accelerators on other machines from unmodified Python programs.

The public surface is what this module exports; everything in ``tether._*`` and
in the sub-packages' ``_modules`` is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether._errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    DeviceLost,
    FrameTooLarge,
    ObjectReleased,
    PoolError,
    ProtocolError,
    ProtocolVersionMismatch,
    RemoteModuleNotFound,
    RemoteTraceback,
    SessionClosed,
    SessionError,
    TetherError,
)
from tether._version import __version__

if TYPE_CHECKING:  # for type checkers; at run time these load on first use
    from tether._api import connect, lease
    from tether._submit import submit
    from tether.client._session import Session


def __getattr__(name: str) -> object:
    # connect() and Session pull in the client: load them on first use only.
    if name == "connect":
        from tether._api import connect

        return connect
    if name == "lease":
        from tether._api import lease

        return lease
    if name == "submit":
        from tether._submit import submit

        return submit
    if name == "Session":
        from tether.client._session import Session

        return Session
    if name in ("load_ipython_extension", "unload_ipython_extension"):
        # `%load_ext tether` in IPython; the extension lives in tether._jupyter.
        # IPython asks with hasattr(), which would hide an AttributeError of the import.
        try:
            from tether import _jupyter
        except AttributeError as exc:
            raise ImportError(f"cannot load tether's IPython extension: {exc}") from exc

        return getattr(_jupyter, name)
    raise AttributeError(f"module 'tether' has no attribute {name!r}")


__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConnectError",
    "DeviceLost",
    "FrameTooLarge",
    "ObjectReleased",
    "PoolError",
    "ProtocolError",
    "ProtocolVersionMismatch",
    "RemoteModuleNotFound",
    "RemoteTraceback",
    "Session",
    "SessionClosed",
    "SessionError",
    "TetherError",
    "__version__",
    "connect",
    "lease",
    "submit",
]
