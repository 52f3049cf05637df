"""What the pool's service answers about its directory, nodes and books: frozen views.

Every :class:`~tether.pool._service.PoolService` method returns records, not
dicts; the shells (the HTTP API, the dashboard, /metrics) read attributes.
Each view that the API sends has one :meth:`to_json` giving the exact body the
API has always sent (the pydantic models of :mod:`tether.pool._schemas` then
validate and order it), so ``tether.poolapi`` reads what it always read.
Views check what would make them lie (a state the API does not know) when
built, as the requests do, and hold tuples where JSON has lists. Sessions and
groups are in :mod:`tether.pool._session_views`, usage and the /metrics
figures in :mod:`tether.pool._usage_views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.pool._values import PoolInputError, set_field

if TYPE_CHECKING:
    from tether.pool._node_store import DeviceRow
    from tether.pool._store import QuotaRow

__all__ = [
    "NODE_STATUSES",
    "Admission",
    "DeviceView",
    "IssuedToken",
    "MeView",
    "NodeBeatReply",
    "NodeRegistration",
    "NodeStatusView",
    "NodeView",
    "QuotaView",
    "TeamView",
    "TokenView",
    "UserView",
]

#: What the API says of a node: ``ready`` (the store's ``active``), ``cordoned``,
#: ``drained``, or ``lost`` (silent past its timeout).
NODE_STATUSES = ("ready", "cordoned", "drained", "lost")


def _one_of(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise PoolInputError(f"{what} must be one of {allowed}, got {value!r}")


def _tuple(record: object, name: str) -> None:
    """Hold a sequence field as a tuple (callers may hand in a list)."""
    value = getattr(record, name)
    if not isinstance(value, tuple):
        set_field(record, name, tuple(value))


# ------------------------------------------------------------------ directory


@dataclass(frozen=True, slots=True, kw_only=True)
class MeView:
    """Who a token is (``GET /v1/me``): a user (admin flag, teams) or a node."""

    kind: str
    user: str | None
    admin: bool
    teams: tuple[str, ...]
    node: str | None

    def __post_init__(self) -> None:
        _one_of(self.kind, ("user", "node"), "a principal's kind")
        _tuple(self, "teams")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "user": self.user,
            "admin": self.admin,
            "teams": list(self.teams),
            "node": self.node,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamView:
    """A team (``/v1/teams``)."""

    name: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at}


@dataclass(frozen=True, slots=True, kw_only=True)
class UserView:
    """A user with their teams (``/v1/users``, memberships)."""

    name: str
    admin: bool
    teams: tuple[str, ...]
    created_at: float

    def __post_init__(self) -> None:
        _tuple(self, "teams")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "admin": self.admin,
            "teams": list(self.teams),
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenView:
    """A token as listed: never its secret (``/v1/tokens``)."""

    id: str
    kind: str
    user: str | None
    node: str | None
    label: str
    created_at: float
    revoked_at: float | None

    def __post_init__(self) -> None:
        _one_of(self.kind, ("user", "node"), "a token's kind")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "user": self.user,
            "node": self.node,
            "label": self.label,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken(TokenView):
    """A token just issued, with its secret ``token`` (shown in this answer only)."""

    token: str

    def to_json(self) -> dict[str, Any]:
        return {**TokenView.to_json(self), "token": self.token}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaView:
    """A team's limits (``/v1/teams/{team}/quota``); None is unlimited."""

    team: str
    max_share: float | None
    max_memory_bytes: int | None
    device_hours_per_month: float | None

    @classmethod
    def of(cls, row: QuotaRow) -> QuotaView:
        return cls(
            team=row.team,
            max_share=row.max_share,
            max_memory_bytes=row.max_memory_bytes,
            device_hours_per_month=row.device_hours_per_month,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "max_share": self.max_share,
            "max_memory_bytes": self.max_memory_bytes,
            "device_hours_per_month": self.device_hours_per_month,
        }


# ---------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusView:
    """A node's status after a change (cordon, drain, uncordon)."""

    name: str
    status: str
    last_heartbeat: float

    def __post_init__(self) -> None:
        _one_of(self.status, NODE_STATUSES, "a node's status")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "last_heartbeat": self.last_heartbeat}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRegistration(NodeStatusView):
    """A node just registered: its status, its registration id (secret, shown with
    its heartbeats and admissions) and its ticket keys, current first."""

    registration: str
    ticket_keys: tuple[str, ...]

    def __post_init__(self) -> None:
        NodeStatusView.__post_init__(self)
        _tuple(self, "ticket_keys")
        if not self.ticket_keys:
            raise PoolInputError("a registration needs at least one ticket key")

    @property
    def ticket_key(self) -> str:
        """The current key (the first)."""
        return self.ticket_keys[0]

    def to_json(self) -> dict[str, Any]:
        return {
            **NodeStatusView.to_json(self),
            "registration": self.registration,
            "ticket_key": self.ticket_key,
            "ticket_keys": list(self.ticket_keys),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeBeatReply:
    """The answer to a node's heartbeat: its status, the sessions it should stop,
    and (when it showed its registration) its ticket keys now."""

    status: str
    ended_sessions: tuple[str, ...]
    ticket_keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _one_of(self.status, NODE_STATUSES, "a node's status")
        _tuple(self, "ended_sessions")
        if self.ticket_keys is not None:
            _tuple(self, "ticket_keys")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "ended_sessions": list(self.ended_sessions)}
        if self.ticket_keys is not None:
            out["ticket_keys"] = list(self.ticket_keys)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """A ticket admitted at its node: the session it opens, and the node's keys."""

    session_id: str
    ticket_keys: tuple[str, ...]

    def __post_init__(self) -> None:
        _tuple(self, "ticket_keys")

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "ticket_keys": list(self.ticket_keys)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceView:
    """A registered device with what open leases hold of it (``/v1/devices``)."""

    node: str
    id: str
    vendor: str
    model: str
    memory_bytes: int
    arch: str
    frameworks: Mapping[str, str]
    allocated_share: float
    allocated_memory_bytes: int

    @classmethod
    def of(cls, row: DeviceRow, alloc: Mapping[tuple[str, str], tuple[float, int]]) -> DeviceView:
        """The device of ``row``, with its allocation from ``alloc`` (none: 0)."""
        share, memory = alloc.get((row.node_name, row.device_id), (0.0, 0))
        return cls(
            node=row.node_name,
            id=row.device_id,
            vendor=row.vendor,
            model=row.model,
            memory_bytes=row.memory_bytes,
            arch=row.arch,
            frameworks=row.frameworks,
            allocated_share=round(share, 4),
            allocated_memory_bytes=memory,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "id": self.id,
            "vendor": self.vendor,
            "model": self.model,
            "memory_bytes": self.memory_bytes,
            "arch": self.arch,
            "frameworks": dict(self.frameworks),
            "allocated_share": self.allocated_share,
            "allocated_memory_bytes": self.allocated_memory_bytes,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """A node with its devices (``/v1/nodes``)."""

    name: str
    address: str
    status: str
    registered_at: float
    last_heartbeat: float
    devices: tuple[DeviceView, ...]

    def __post_init__(self) -> None:
        _one_of(self.status, NODE_STATUSES, "a node's status")
        _tuple(self, "devices")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "status": self.status,
            "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat,
            "devices": [d.to_json() for d in self.devices],
        }
