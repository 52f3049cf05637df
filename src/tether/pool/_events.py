"""What goes into :class:`~tether.pool.PoolState` (events) and what comes out (decisions).

Events are things that happened, stamped with the pool's time ``now`` (float
seconds since the epoch, read by the caller: the state never reads a clock).
Decisions are what the state decided because of them; the store persists
each decision, the API answers clients with them. Both are frozen, slotted,
keyword-only dataclasses, validated when built.

Every state change the store must persist is a decision: replaying the
decisions onto the database reproduces the state, and
:meth:`PoolState.restore` rebuilds the state from what the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from tether.pool._group_request import GroupRequest
from tether.pool._model import EndReason, Lease, NodeSpec, PlacementPolicy, Quota
from tether.pool._request import SliceRequest
from tether.pool._values import check_id, check_time

__all__ = [
    "Decision",
    "Event",
    "GroupPlaced",
    "GroupQueued",
    "GroupRequested",
    "LeaseEnded",
    "LeaseHeartbeat",
    "LeaseReleased",
    "LeaseRenewed",
    "NodeCordoned",
    "NodeDrained",
    "NodeHeartbeat",
    "NodeHeartbeatRecorded",
    "NodeLost",
    "NodeRegistered",
    "NodeStatus",
    "NodeUncordoned",
    "NodeUpdated",
    "Placed",
    "Queued",
    "QuotaSet",
    "QuotaUpdated",
    "RefusalCode",
    "Refused",
    "RequestCancelled",
    "SliceRequested",
    "Tick",
]

#: A node's status as the pool shows it. ``ready``: takes new slices.
#: ``cordoned``: keeps its leases, takes nothing new. ``drained``: its leases
#: were ended by an admin, takes nothing new. ``lost``: silent past the node
#: timeout; its leases ended with ``node-lost``; it comes back by heartbeat or
#: registration, keeping any cordon/drain an admin set.
NodeStatus = Literal["ready", "cordoned", "drained", "lost"]
NODE_STATUSES: tuple[str, ...] = get_args(NodeStatus)

#: Why a request was refused. ``unsatisfiable``: no registered device could
#: ever hold it (whatever is released). ``capacity``: nothing free now and the
#: request said not to wait. ``quota``: over a team limit (and not waiting, or
#: the monthly limit, which waiting cannot cure). ``timeout``: it waited its
#: queue timeout. ``cancelled``: the client withdrew it.
RefusalCode = Literal["unsatisfiable", "capacity", "quota", "timeout", "cancelled"]
REFUSAL_CODES: tuple[str, ...] = get_args(RefusalCode)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    now: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", check_time(self.now, f"{type(self).__name__}.now"))


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRegistered(_Event):
    """An acceptor registered (or re-registered, or came back) with its devices.

    Re-registration replaces the device list: leases on devices no longer
    listed end with ``device-lost``. A node keeps an admin's cordon or drain
    across re-registration.
    """

    node: NodeSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeartbeat(_Event):
    """An acceptor is alive. ``device_ids``, when given, are the devices it still sees:
    leases on any device missing from it end with ``device-lost`` and the device
    takes nothing new until the node registers it again."""

    node_id: str
    device_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _Event.__post_init__(self)
        check_id(self.node_id, "node id")
        if self.device_ids is not None:
            object.__setattr__(self, "device_ids", tuple(self.device_ids))


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCordoned(_Event):
    """An admin stopped new placements on a node; its leases go on."""

    node_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDrained(_Event):
    """An admin drained a node: its leases end now with ``drained``; nothing new goes there."""

    node_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeUncordoned(_Event):
    """An admin reopened a cordoned or drained node."""

    node_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceRequested(_Event):
    """A client asked for a slice. ``policy`` overrides the pool's placement policy."""

    request: SliceRequest
    policy: PlacementPolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRequested(_Event):
    """A client asked for a group of slices (:mod:`tether.pool._groups`).
    ``policy`` overrides the pool's placement policy."""

    group: GroupRequest
    policy: PlacementPolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCancelled(_Event):
    """A client stopped waiting for a queued request."""

    request_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseHeartbeat(_Event):
    """A client's lease is still in use."""

    lease_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseReleased(_Event):
    """A client let its lease go."""

    lease_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseFinished(_Event):
    """The lease's session ended at its acceptor at ``end`` (pool time, as measured
    there): the lease ends then, even when the report arrives late."""

    lease_id: str
    end: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaSet(_Event):
    """An admin set a team's quota (all limits None: unlimited)."""

    quota: Quota


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(_Event):
    """Time passed: expire leases, lose silent nodes, time out queued requests."""


Event = (
    NodeRegistered
    | NodeHeartbeat
    | NodeCordoned
    | NodeDrained
    | NodeUncordoned
    | SliceRequested
    | GroupRequested
    | RequestCancelled
    | LeaseHeartbeat
    | LeaseReleased
    | LeaseFinished
    | QuotaSet
    | Tick
)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """A request got its slice. ``lease.id`` is the request id; ``address`` is the
    acceptor to connect to (sign a ticket for ``lease`` and hand both to the client)."""

    lease: Lease
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued:
    """A request waits. ``position`` counts from 1 (next in line); ``reason`` says
    what it waits for (capacity, or a team limit with its figures);
    ``deadline`` is when it will be refused with ``timeout``."""

    request: SliceRequest
    position: int
    reason: str
    enqueued_at: float
    deadline: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A request was refused (or left the queue without a slice).

    ``message`` is for people. For ``quota`` refusals, ``limit`` names the limit
    (``max_share``, ``max_memory_bytes``, ``max_device_hours_per_month``) and
    ``used`` / ``limit_value`` / ``left`` give its figures in the limit's unit
    (devices, bytes, device-hours).
    """

    request_id: str
    code: RefusalCode
    message: str
    team: str = ""
    limit: str | None = None
    used: float | None = None
    limit_value: float | None = None
    left: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseEnded:
    """A lease ended; ``lease.end`` and ``lease.end_reason`` are set.

    ``end`` is ``now`` for ``released`` and ``drained``, the lease's last
    heartbeat for ``expired``, and the node's last heartbeat (not before the
    lease start) for ``node-lost`` and ``device-lost``: usage counts only time
    the pool knew the slice was alive.
    """

    lease: Lease

    @property
    def reason(self) -> EndReason:
        assert self.lease.end_reason is not None
        return self.lease.end_reason


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRenewed:
    """A lease heartbeat was recorded (persist ``last_heartbeat``)."""

    lease_id: str
    last_heartbeat: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeUpdated:
    """A node was registered or changed status (persist all four fields).

    ``admin_state`` (``active``, ``cordoned``, ``drained``) is what an admin
    set; it survives the node being lost, when ``status`` says ``lost``.
    """

    node: NodeSpec
    status: NodeStatus
    admin_state: str
    last_heartbeat: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeartbeatRecorded:
    """A node heartbeat was recorded (persist ``last_heartbeat``)."""

    node_id: str
    last_heartbeat: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLost:
    """A node went silent past the node timeout; its ``LeaseEnded`` decisions follow."""

    node_id: str
    last_heartbeat: float
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaUpdated:
    """A team's quota changed (persist it)."""

    quota: Quota


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPlaced:
    """A group got its slices, all in one step: ``members`` holds one :class:`Placed`
    per placed member, in member order (the group's first ``len(members)`` member
    ids). Never fewer than the group's ``min_count``."""

    group: GroupRequest
    members: tuple[Placed, ...]

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupQueued:
    """A group waits as one queue entry; the fields mean what :class:`Queued`'s do.
    (A group that is refused, times out or is cancelled gets a :class:`Refused`
    with the group's id as its ``request_id``.)"""

    group: GroupRequest
    position: int
    reason: str
    enqueued_at: float
    deadline: float


Decision = (
    Placed
    | GroupPlaced
    | GroupQueued
    | Queued
    | Refused
    | LeaseEnded
    | LeaseRenewed
    | NodeUpdated
    | NodeHeartbeatRecorded
    | NodeLost
    | QuotaUpdated
)
