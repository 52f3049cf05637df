"""Errors of the pool service, shared by the server and the HTTP client.

Each carries the HTTP status the API answers with and a stable ``code`` that the
JSON error body names (``{"error": {"code": ..., "message": ..., "detail": ...}}``),
so that :mod:`tether.poolapi._client` raises the same class the server raised::

    PoolError
    └── PoolRequestError   400 bad-request   malformed or impossible input
        ├── Forbidden      403 forbidden     authenticated, but not allowed
        ├── NotFound       404 not-found     no such team/user/node/session/token
        ├── Conflict       409 conflict      duplicate name, node already registered
        ├── Refused        409 refused       nothing fits now, or over quota (detail says which)
        └── Gone           410 gone          the session has ended (detail: reason)

Authentication failures are :class:`tether._errors.AuthenticationError` (401).
"""

from __future__ import annotations

from typing import Any, ClassVar

from tether._errors import AuthenticationError, PoolError

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "NotFound",
    "PoolRequestError",
    "Refused",
    "error_class_for",
]


class PoolRequestError(PoolError):
    """The pool rejected a request; nothing was changed."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})


class Forbidden(PoolRequestError):
    status = 403
    code = "forbidden"


class NotFound(PoolRequestError):
    status = 404
    code = "not-found"


class Conflict(PoolRequestError):
    status = 409
    code = "conflict"


class Refused(PoolRequestError):
    """Nothing fits and the request would not wait, or it is over a quota."""

    status = 409
    code = "refused"


class Gone(PoolRequestError):
    status = 410
    code = "gone"


_BY_CODE: dict[str, type[PoolError]] = {
    c.code: c for c in (PoolRequestError, Forbidden, NotFound, Conflict, Refused, Gone)
}


def error_class_for(status: int, code: str | None) -> type[Exception]:
    """The exception class for an error response (used by the HTTP client)."""
    if status == 401:
        return AuthenticationError
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    return PoolRequestError if 400 <= status < 500 else PoolError
