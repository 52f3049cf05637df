"""The pool's API as its callers see it: the HTTP client and the problem codes.

Standard library only, and below the client, the acceptor and the pool server
(``docs/architecture.md``): the user's machine, the CLI and acceptors talk to a
pool through :class:`PoolClient` without loading the pool's policy or its
server dependencies, and the server raises the same problem classes that the
client re-raises from an error response.
"""

from __future__ import annotations

from tether.poolapi._client import PoolClient
from tether.poolapi._problems import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PoolRequestError,
    Refused,
    error_class_for,
)

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "NotFound",
    "PoolClient",
    "PoolRequestError",
    "Refused",
    "error_class_for",
]
