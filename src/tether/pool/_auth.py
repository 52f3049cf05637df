"""API tokens: how they look, how they are stored, how a request is authenticated.

A token is ``tu_<id>_<secret>`` (a user's API token) or ``tn_<id>_<secret>`` (a
node token an acceptor holds). ``id`` is 12 hex digits and names the row; the
secret is 256 random bits. The database keeps only ``sha256(token)``: a stolen
database does not yield usable tokens, and a token is shown once, when issued.

Checking is a lookup by id followed by a constant-time comparison of hashes
(:func:`hmac.compare_digest`), so response times say nothing about how much of a
guessed secret was right. Revoking sets ``revoked_at``; the row stays for the audit
trail and the token stops working at once.

This module is pure (no database): the store hands it rows, it hands back a
:class:`Principal` or raises :class:`~tether._errors.AuthenticationError`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from tether._errors import AuthenticationError

__all__ = [
    "IssuedToken",
    "Principal",
    "TokenKind",
    "TokenRow",
    "check_token",
    "hash_token",
    "issue_token",
    "parse_bearer",
    "split_token",
]

TokenKind = Literal["user", "node"]
_PREFIX: dict[TokenKind, str] = {"user": "tu", "node": "tn"}
_KIND_OF_PREFIX: dict[str, TokenKind] = {v: k for k, v in _PREFIX.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A new token: ``text`` is the secret to show once; ``hash`` is what is stored."""

    id: str
    kind: TokenKind
    text: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRow:
    """What the store holds about a token."""

    id: str
    kind: TokenKind
    hash: str
    revoked: bool
    user_id: str | None
    node_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who made a request.

    A user principal has ``user_id``/``user_name``/``is_admin``/``team_ids``; a node
    principal has ``node_name`` (``None``: the token may register any node name).
    ``team_names``: (id, name) of each of the user's teams, as read with the token
    (spares a placement reading the teams again).
    """

    kind: TokenKind
    token_id: str
    user_id: str | None = None
    user_name: str | None = None
    is_admin: bool = False
    team_ids: frozenset[str] = frozenset()
    team_names: tuple[tuple[str, str], ...] = ()
    node_name: str | None = None

    def can_see_team(self, team_id: str) -> bool:
        return self.is_admin or team_id in self.team_ids


def hash_token(text: str) -> str:
    """The stored form of a token: hex sha256 of its full text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def issue_token(kind: TokenKind) -> IssuedToken:
    """A fresh random token of ``kind``."""
    token_id = secrets.token_hex(6)
    text = f"{_PREFIX[kind]}_{token_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(id=token_id, kind=kind, text=text, hash=hash_token(text))


def split_token(text: str) -> tuple[TokenKind, str]:
    """``(kind, id)`` of a token's text; raises AuthenticationError if it is not one."""
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] not in _KIND_OF_PREFIX or len(parts[1]) != 12:
        raise AuthenticationError("malformed token: expected tu_<id>_<secret> or tn_<id>_<secret>")
    return _KIND_OF_PREFIX[parts[0]], parts[1]


def parse_bearer(header: str | None) -> str:
    """The token in an ``Authorization: Bearer TOKEN`` header value."""
    if not header:
        raise AuthenticationError(
            "missing Authorization header: send 'Authorization: Bearer TOKEN'"
        )
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer TOKEN'")
    return value.strip()


def check_token(text: str, row: TokenRow | None) -> None:
    """Raise AuthenticationError unless ``row`` is the live token whose text is ``text``.

    The comparison is constant-time. The message never says whether the id existed,
    so ids cannot be probed.
    """
    expected = row.hash if row is not None else "0" * 64
    matches = hmac.compare_digest(hash_token(text), expected)
    if row is None or not matches:
        raise AuthenticationError("invalid token")
    if row.revoked:
        raise AuthenticationError("token has been revoked")
