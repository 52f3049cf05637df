"""Short-lived session tickets: signed by the pool, verified offline by acceptors.

When the pool places a session it gives the client a ticket that names the
session (the lease id), the node, the device(s), the slice (fraction and
memory limit), the team and user, and an expiry. The client shows it to the
acceptor, which checks it without asking the pool.

Signature: HMAC-SHA256, chosen over Ed25519 because it needs nothing beyond
the standard library (``cryptography`` is not a dependency of Tether) and an
acceptor already shares a secret with the pool. Each *registration* of a node
gets its own key, derived from the pool's secret (which lives outside the
database: :mod:`tether.pool._secrets`)::

    node_key = HMAC-SHA256(pool_secret,
                           b"tether-ticket-key-v2\\0" + node_id + b"\\0" + registration)

``registration`` is the hash of a random id the pool makes each time the node
registers. The pool hands the key to the acceptor that registered (in the
answer to that registration, and to heartbeats that show the registration id),
and signs that node's tickets with it. So an acceptor can verify tickets for
itself but cannot forge tickets for any other node; and someone who
re-registers the node with a leaked node token gets a *new* key, which the
real acceptor (holding the key of its own registration) does not accept.
During a secret rotation the acceptor holds two keys (:func:`verify_any`).

Format (compact, URL- and header-safe)::

    tt1.<base64url(JSON payload)>.<base64url(HMAC over "tt1.<payload>")>

Clock skew: acceptors' clocks differ from the pool's. :func:`verify` accepts a
ticket up to ``skew_s`` (default :data:`DEFAULT_CLOCK_SKEW_S`, 30 s) past its
expiry and up to ``skew_s`` before its issue time; beyond that it is expired,
or "not yet valid" (a clock far off, which the message says).

Every failure raises a :class:`TicketError` subclass (all are
:class:`~tether.AuthenticationError`); garbage input never raises anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether._errors import AuthenticationError
from tether._units import parse_fraction

__all__ = [
    "DEFAULT_CLOCK_SKEW_S",
    "DEFAULT_TTL_S",
    "MAX_TICKET_CHARS",
    "SessionTicket",
    "TicketError",
    "TicketExpired",
    "TicketForged",
    "TicketMalformed",
    "TicketNotYetValid",
    "TicketWrongNode",
    "issue",
    "node_key",
    "verify",
    "verify_any",
]

#: How far an acceptor's clock may be from the pool's before tickets fail.
DEFAULT_CLOCK_SKEW_S = 30.0
#: How long a ticket lives unless the pool says otherwise: long enough to
#: connect, short enough that a leaked one is soon useless.
DEFAULT_TTL_S = 300.0
#: Longer input is rejected before any decoding work.
MAX_TICKET_CHARS = 4096

_PREFIX = "tt1"
_KEY_CONTEXT = b"tether-ticket-key-v2\0"


class TicketError(AuthenticationError):
    """A session ticket was refused; the message says why and what to do."""


class TicketMalformed(TicketError):
    """The text is not a Tether ticket (truncated, altered, or something else)."""


class TicketForged(TicketError):
    """The signature does not match: not signed by the pool with this node's key."""


class TicketExpired(TicketError):
    """The ticket's expiry (plus the allowed clock skew) has passed."""


class TicketNotYetValid(TicketError):
    """The ticket was issued in the future by more than the allowed clock skew."""


class TicketWrongNode(TicketError):
    """The ticket was issued for another node."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTicket:
    """What a ticket says. ``session_id`` is the pool's lease id; ``fraction`` and
    ``memory_bytes`` are per device; times are epoch seconds (pool clock)."""

    session_id: str
    node: str
    device_ids: tuple[str, ...]
    fraction: float
    memory_bytes: int
    team: str
    user: str
    issued_at: float
    expires_at: float

    def __post_init__(self) -> None:
        for name in ("session_id", "node", "team", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TicketMalformed(f"ticket field {name} must be a non-empty string")
        ids = self.device_ids
        if not isinstance(ids, tuple | list) or not ids or not all(isinstance(d, str) for d in ids):
            raise TicketMalformed("ticket field device_ids must be a non-empty list of strings")
        object.__setattr__(self, "device_ids", tuple(ids))
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float):
            raise TicketMalformed("ticket field fraction must be a number in (0, 1]")
        parse_fraction(self.fraction, what="ticket field fraction", error=TicketMalformed)
        if (
            isinstance(self.memory_bytes, bool)
            or not isinstance(self.memory_bytes, int)
            or self.memory_bytes <= 0
        ):
            raise TicketMalformed("ticket field memory_bytes must be a positive integer")
        for name in ("issued_at", "expires_at"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise TicketMalformed(f"ticket field {name} must be a time in seconds")
        if self.expires_at <= self.issued_at:
            raise TicketMalformed("ticket expires before it is issued")

    def _payload(self) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "node": self.node,
            "dev": list(self.device_ids),
            "frac": self.fraction,
            "mem": self.memory_bytes,
            "team": self.team,
            "user": self.user,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }

    @classmethod
    def _from_payload(cls, data: Any) -> SessionTicket:
        if not isinstance(data, dict):
            raise TicketMalformed("ticket payload is not an object")
        try:
            return cls(
                session_id=data["sid"],
                node=data["node"],
                device_ids=data["dev"],
                fraction=data["frac"],
                memory_bytes=data["mem"],
                team=data["team"],
                user=data["user"],
                issued_at=data["iat"],
                expires_at=data["exp"],
            )
        except KeyError as exc:
            raise TicketMalformed(f"ticket payload lacks field {exc.args[0]!r}") from None


def node_key(pool_secret: bytes, node_id: str, registration: str = "") -> bytes:
    """The key the pool signs ``node_id``'s tickets with (and hands to that node).

    ``registration`` names one registration of the node (the pool passes the
    hash of its registration id), so every registration gets a different key.
    """
    if not isinstance(pool_secret, bytes) or len(pool_secret) < 16:
        raise ValueError("the pool secret must be at least 16 random bytes")
    message = _KEY_CONTEXT + node_id.encode("utf-8") + b"\0" + registration.encode("utf-8")
    return hmac.new(pool_secret, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64_CHARS for c in text):
        raise TicketMalformed("ticket is not base64url text: was it truncated or altered?")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TicketMalformed(
            "ticket is not base64url text: was it truncated or altered?"
        ) from None


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _mac(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()


def issue(key: bytes, ticket: SessionTicket) -> str:
    """Sign ``ticket`` with a node's key (from :func:`node_key`) and return the compact string."""
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("a ticket key must be at least 16 bytes (use node_key())")
    body = json.dumps(ticket._payload(), separators=(",", ":"), sort_keys=True)
    signed = f"{_PREFIX}.{_b64(body.encode('utf-8'))}"
    return f"{signed}.{_b64(_mac(key, signed))}"


def verify(
    key: bytes,
    token: str,
    *,
    now: float,
    node: str,
    skew_s: float = DEFAULT_CLOCK_SKEW_S,
) -> SessionTicket:
    """Check a ticket for this node at time ``now`` and return what it says.

    ``key`` is this node's ticket key; ``node`` this node's id. Raises
    :class:`TicketMalformed`, :class:`TicketWrongNode`, :class:`TicketForged`,
    :class:`TicketNotYetValid` or :class:`TicketExpired` (all
    :class:`~tether.AuthenticationError`), each with a message that says what
    to do. Needs no network: the acceptor verifies offline.
    """
    if not isinstance(token, str):
        raise TicketMalformed(f"a ticket is a string, not {type(token).__name__}")
    if len(token) > MAX_TICKET_CHARS:
        raise TicketMalformed(f"ticket is longer than {MAX_TICKET_CHARS} characters")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != _PREFIX:
        raise TicketMalformed(
            "not a Tether session ticket (expected 'tt1.<payload>.<signature>'): "
            "ask the pool for a new one"
        )
    raw = _unb64(parts[1])
    mac = _unb64(parts[2])
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TicketMalformed("ticket payload is not JSON: was it truncated or altered?") from None
    claimed = data.get("node") if isinstance(data, dict) else None
    # Say "wrong node" rather than "forged" when a genuine ticket reaches the
    # wrong acceptor (it is signed with the other node's key): that is the
    # mistake people make. Nothing is trusted before the MAC check below.
    if isinstance(claimed, str) and claimed != node:
        raise TicketWrongNode(
            f"this ticket is for node {claimed!r}, not this node {node!r}: "
            "connect to the address the pool gave with it"
        )
    if not hmac.compare_digest(mac, _mac(key, f"{parts[0]}.{parts[1]}")):
        raise TicketForged(
            "ticket signature does not match: it was not issued by this pool for this node "
            "(or the node's ticket key changed; re-register the node)"
        )
    ticket = SessionTicket._from_payload(data)
    if ticket.node != node:  # pragma: no cover - caught above for any genuine payload
        raise TicketWrongNode(f"this ticket is for node {ticket.node!r}, not {node!r}")
    if now > ticket.expires_at + skew_s:
        raise TicketExpired(
            f"session ticket for {ticket.session_id} expired {now - ticket.expires_at:.0f}s ago "
            f"(clock skew allowed: {skew_s:g}s): ask the pool for a new one"
        )
    if now < ticket.issued_at - skew_s:
        raise TicketNotYetValid(
            f"session ticket for {ticket.session_id} is issued {ticket.issued_at - now:.0f}s in "
            f"the future: this machine's clock is off from the pool's by more than {skew_s:g}s; "
            "fix its time (NTP)"
        )
    return ticket


def verify_any(
    keys: Sequence[bytes],
    token: str,
    *,
    now: float,
    node: str,
    skew_s: float = DEFAULT_CLOCK_SKEW_S,
) -> SessionTicket:
    """:func:`verify` with each of ``keys`` (current first; the previous during a
    secret rotation); the first that matches wins.

    Raises what :func:`verify` raises; :class:`TicketForged` only when no key
    matches (and when ``keys`` is empty).
    """
    forged: TicketForged | None = None
    for key in keys:
        try:
            return verify(key, token, now=now, node=node, skew_s=skew_s)
        except TicketForged as exc:
            forged = exc
    raise forged or TicketForged(
        "this node holds no ticket key yet (it has not registered with its pool); retry soon"
    )
