"""What the pool's service answers about its directory, nodes and books: frozen views.

Every :class:`~tether.pool._service.PoolService` method returns records, not
dicts; the shells (the HTTP API, the dashboard, /metrics) read attributes.
Each view that the API sends is a :class:`JsonView`, whose :meth:`to_json`
gives the exact body the API has always sent, derived from its fields (the
pydantic models of :mod:`tether.pool._schemas` then validate and order it),
so ``tether.poolapi`` reads what it always read.
Views check what would make them lie (a state the API does not know) when
built, as the requests do, and hold tuples where JSON has lists. Sessions and
groups are in :mod:`tether.pool._session_views`, usage and the /metrics
figures in :mod:`tether.pool._usage_views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self

from tether.pool._values import PoolInputError, set_field

if TYPE_CHECKING:
    from tether.pool._accounts import TokenRecord
    from tether.pool._node_store import DeviceRow
    from tether.pool._store import QuotaRow

__all__ = [
    "NODE_STATUSES",
    "Admission",
    "DeviceView",
    "IssuedToken",
    "JsonView",
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


class JsonView:
    """Base of the views the API sends. :meth:`to_json` is every field, in order,
    as JSON has it: a tuple as a list, a mapping as a dict, a view as its own JSON.
    Fields named in ``OPTIONAL`` are left out: the view's own ``to_json`` adds
    them when the API sends them."""

    __slots__ = ()
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        names = _SENT.get(type(self))
        if names is None:
            every = fields(self)  # type: ignore[arg-type]  # (subclasses are dataclasses)
            names = _SENT[type(self)] = tuple(f.name for f in every if f.name not in self.OPTIONAL)
        return {name: _plain(getattr(self, name)) for name in names}


_SENT: dict[type, tuple[str, ...]] = {}  # view class -> the fields its to_json sends


def _plain(value: Any) -> Any:
    if isinstance(value, JsonView):
        return value.to_json()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


# ------------------------------------------------------------------ directory


@dataclass(frozen=True, slots=True, kw_only=True)
class MeView(JsonView):
    """Who a token is (``GET /v1/me``): a user (admin flag, teams) or a node."""

    kind: str
    user: str | None
    admin: bool
    teams: tuple[str, ...]
    node: str | None

    def __post_init__(self) -> None:
        _one_of(self.kind, ("user", "node"), "a principal's kind")
        _tuple(self, "teams")


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamView(JsonView):
    """A team (``/v1/teams``)."""

    name: str
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UserView(JsonView):
    """A user with their teams (``/v1/users``, memberships)."""

    name: str
    admin: bool
    teams: tuple[str, ...]
    created_at: float

    def __post_init__(self) -> None:
        _tuple(self, "teams")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenView(JsonView):
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

    @classmethod
    def of(cls, record: TokenRecord, **more: Any) -> Self:
        """The view of a stored token (``more``: a subclass's own fields)."""
        return cls(
            id=record.id,
            kind=record.kind,
            user=record.user_name,
            node=record.node_name,
            label=record.label,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
            **more,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken(TokenView):
    """A token just issued, with its secret ``token`` (shown in this answer only)."""

    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaView(JsonView):
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


# ---------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusView(JsonView):
    """A node's status after a change (cordon, drain, uncordon)."""

    name: str
    status: str
    last_heartbeat: float

    def __post_init__(self) -> None:
        _one_of(self.status, NODE_STATUSES, "a node's status")


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
        return {**JsonView.to_json(self), "ticket_key": self.ticket_key}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeBeatReply(JsonView):
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

    OPTIONAL = frozenset({"ticket_keys"})

    def to_json(self) -> dict[str, Any]:
        out = JsonView.to_json(self)
        if self.ticket_keys is not None:
            out["ticket_keys"] = list(self.ticket_keys)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission(JsonView):
    """A ticket admitted at its node: the session it opens, and the node's keys."""

    session_id: str
    ticket_keys: tuple[str, ...]

    def __post_init__(self) -> None:
        _tuple(self, "ticket_keys")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceView(JsonView):
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


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView(JsonView):
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
