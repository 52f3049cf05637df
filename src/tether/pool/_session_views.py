"""What the pool's service answers about sessions, groups and tickets: frozen views.

The companions of :mod:`tether.pool._views` (its docstring says how views are
meant): :class:`SessionView` is ``GET /v1/sessions/{id}`` and every member of
a :class:`GroupView`; :class:`TicketCheck` is ``POST /v1/tickets/verify``. The
keys that the API has only sometimes sent stay that way in :meth:`to_json`:
``position`` while queued, ``ticket`` and ``ticket_expires_at`` to a placed
session's own user, ``index`` for a group's member, ``members`` when read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.pool._values import PoolInputError, set_field
from tether.pool._views import JsonView

if TYPE_CHECKING:
    from tether._ticket import SessionTicket
    from tether.pool._session_store import SessionRow

__all__ = ["SESSION_STATES", "GroupView", "LeaseDevice", "SessionView", "TicketCheck"]

#: A session's (and a group's) life: waiting, holding its lease(s), over.
SESSION_STATES = ("queued", "placed", "ended")


def _check_state(state: object, what: str) -> None:
    if state not in SESSION_STATES:
        raise PoolInputError(f"{what} state must be one of {SESSION_STATES}, got {state!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseDevice(JsonView):
    """What a lease holds of one device."""

    id: str
    fraction: float
    memory_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView(JsonView):
    """A session as the API shows it.

    ``request``: what was asked for (the stored request's fields that are set,
    without its id); ``reason``: why it waits or why it ended; ``address``: the
    acceptor to connect to (placed, when known); ``share`` and ``memory_bytes``:
    the sums over ``devices``; ``metering``: the acceptor's last figures.
    ``position`` (1 is next) is meant while queued, ``ticket`` and
    ``ticket_expires_at`` only for the session's own user while placed,
    ``index`` only for a group's member.
    """

    id: str
    name: str | None
    team: str
    user: str
    state: str
    submitted_at: float
    request: Mapping[str, Any]
    reason: str | None
    queue_deadline: float | None
    node: str | None
    address: str | None
    devices: tuple[LeaseDevice, ...]
    share: float
    memory_bytes: int
    started_at: float | None
    last_heartbeat: float | None
    ended_at: float | None
    end_reason: str | None
    metering: Mapping[str, Any] | None
    position: int | None = None
    ticket: str | None = None
    ticket_expires_at: float | None = None
    index: int | None = None

    OPTIONAL = frozenset({"position", "ticket", "ticket_expires_at", "index"})

    def __post_init__(self) -> None:
        _check_state(self.state, "a session's")
        set_field(self, "devices", tuple(self.devices))  # callers may hand in a list
        if (self.ticket is None) != (self.ticket_expires_at is None):
            raise PoolInputError("a session's ticket comes with its expiry, or neither does")

    @classmethod
    def of(cls, row: SessionRow, address: str | None) -> SessionView:
        """The session of ``row`` (no position, ticket or index), at ``address``."""
        return cls(
            id=row.id,
            name=row.name,
            team=row.team,
            user=row.user,
            state=row.state,
            submitted_at=row.submitted_at,
            request={k: v for k, v in row.request.items() if v is not None and k != "id"},
            reason=row.message,
            queue_deadline=row.queue_deadline,
            node=row.node_name,
            address=address,
            devices=tuple(LeaseDevice(id=d, fraction=f, memory_bytes=m) for d, f, m in row.devices),
            share=row.share,
            memory_bytes=row.memory_bytes,
            started_at=row.started_at,
            last_heartbeat=row.last_heartbeat,
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            metering=row.metering,
        )

    def to_json(self) -> dict[str, Any]:
        out = JsonView.to_json(self)
        if self.state == "queued":
            out["position"] = self.position
        if self.ticket is not None:
            out["ticket"] = self.ticket
            out["ticket_expires_at"] = self.ticket_expires_at
        if self.index is not None:
            out["index"] = self.index
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupView(JsonView):
    """A group as the API shows it.

    ``state``: queued, placed (some member holds its lease) or ended (refused,
    cancelled, timed out, or every member ended); ``running`` and ``ended``
    count its members by their lease; ``request``: the shape every member got
    (without the group's own fields); ``position`` is meant while queued.
    ``members``: its members' sessions, when read (None in listings).
    """

    id: str
    name: str
    team: str
    user: str
    state: str
    min_count: int
    max_count: int
    placed_count: int
    running: int
    ended: int
    request: Mapping[str, Any]
    policy: str | None
    submitted_at: float
    queue_deadline: float | None
    placed_at: float | None
    ended_at: float | None
    end_reason: str | None
    reason: str | None
    position: int | None = None
    members: tuple[SessionView, ...] | None = None

    OPTIONAL = frozenset({"position", "members"})

    def __post_init__(self) -> None:
        _check_state(self.state, "a group's")
        if self.members is not None:
            set_field(self, "members", tuple(self.members))  # callers may hand in a list

    def to_json(self) -> dict[str, Any]:
        out = JsonView.to_json(self)
        if self.state == "queued":
            out["position"] = self.position
        if self.members is not None:
            out["members"] = [m.to_json() for m in self.members]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketCheck:
    """A ticket checked as its acceptor would check it: valid, with its claims
    (an invalid ticket is an error, never a view)."""

    claims: SessionTicket

    @property
    def valid(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        c = self.claims
        return {
            "valid": True,
            "claims": {
                "session": c.session_id,
                "node": c.node,
                "devices": list(c.device_ids),
                "fraction": c.fraction,
                "memory_bytes": c.memory_bytes,
                "team": c.team,
                "user": c.user,
                "issued_at": c.issued_at,
                "expires_at": c.expires_at,
            },
        }
