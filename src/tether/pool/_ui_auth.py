"""The dashboard's login sessions: what the browser's cookie stands for.

Theory of operation
-------------------
A person logs in by posting an API token to ``/ui/login``. The pool checks it
(:meth:`PoolService.authenticate`, the same check as every API call) and opens
a *login session*: a random 256-bit id, which the browser keeps in an
``HttpOnly; SameSite=Strict`` cookie, and a separate random CSRF token, which
the pages put in every form. The token itself never leaves the server again:
not in the cookie, not in a URL, not in a page.

The table is keyed by ``sha256(id)``: a lookup compares digests, so its timing
says nothing about how much of a guessed cookie was right.
Every request re-authenticates the stored token, so a revoked token (or a user
removed from a team) takes effect on the next page, exactly as in the API.
Sessions end at logout, after ``idle_s`` without a request, or ``max_age_s``
after login, whichever comes first.

The table lives in the pool process's memory: restarting the pool logs
everyone out, and replicas behind one address need sticky sessions (each has
its own table). That is the price of never putting the token in the cookie
without a cipher in the standard library; docs/pool.md says so.

Pure apart from ``secrets``: the clock is passed in, there is no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["COOKIE", "LoginSession", "LoginSessions", "csrf_matches"]

#: The cookie's name. Scoped to ``Path=/ui`` so API calls never carry it.
COOKIE = "tether_ui"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSession:
    """One browser's login: the token it logged in with and its forms' CSRF token."""

    token: str
    csrf: str
    created_at: float
    last_seen: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class LoginSessions:
    """The table of live login sessions (thread-safe: FastAPI's thread pool uses it).

    ``limit`` bounds memory: past it, the least recently used session is dropped
    (its browser is asked to log in again).
    """

    def __init__(
        self, *, idle_s: float = 8 * 3600.0, max_age_s: float = 24 * 3600.0, limit: int = 10_000
    ) -> None:
        if idle_s <= 0 or max_age_s <= 0 or limit < 1:
            raise ValueError("idle_s and max_age_s must be positive and limit at least 1")
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.limit = limit
        self._lock = threading.Lock()
        self._table: OrderedDict[str, LoginSession] = OrderedDict()

    def open(self, token: str, now: float) -> tuple[str, LoginSession]:
        """A new session for an already authenticated ``token``: ``(cookie value, session)``."""
        session_id = secrets.token_urlsafe(32)
        session = LoginSession(
            token=token, csrf=secrets.token_urlsafe(32), created_at=now, last_seen=now
        )
        with self._lock:
            self._table[_key(session_id)] = session
            while len(self._table) > self.limit:
                self._table.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float) -> LoginSession | None:
        """The live session a cookie names, touched; None if unknown, expired or absent."""
        if not session_id:
            return None
        key = _key(session_id)
        with self._lock:
            session = self._table.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created_at > self.max_age_s:
                del self._table[key]
                return None
            touched = LoginSession(
                token=session.token,
                csrf=session.csrf,
                created_at=session.created_at,
                last_seen=max(now, session.last_seen),
            )
            self._table[key] = touched
            self._table.move_to_end(key)
            return touched

    def close(self, session_id: str | None) -> None:
        """End a session (logout); unknown ids are ignored."""
        if session_id:
            with self._lock:
                self._table.pop(_key(session_id), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)


def csrf_matches(expected: str, submitted: str | None) -> bool:
    """Whether a form's CSRF field is the session's token (constant-time)."""
    if not submitted:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), submitted.encode("utf-8"))
