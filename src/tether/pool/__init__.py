"""The pool: inventory, fractional placement, queue, team quotas and usage.

The policy is pure (no clock, no I/O): :class:`PoolState` takes events and
returns decisions; the service (store, HTTP API) carries them out. See
``tether/pool/_state.py`` for the theory of operation.
"""

from __future__ import annotations

from tether.pool._events import (
    Decision,
    Event,
    GroupPlaced,
    GroupQueued,
    GroupRequested,
    LeaseEnded,
    LeaseHeartbeat,
    LeaseReleased,
    LeaseRenewed,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeHeartbeatRecorded,
    NodeLost,
    NodeRegistered,
    NodeStatus,
    NodeUncordoned,
    NodeUpdated,
    Placed,
    Queued,
    QuotaSet,
    QuotaUpdated,
    RefusalCode,
    Refused,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._group_request import GroupRequest
from tether.pool._model import (
    DeviceSpec,
    EndReason,
    Lease,
    NodeSpec,
    PlacementPolicy,
    PoolConfig,
    Quota,
)
from tether.pool._placement import Inventory, Placement
from tether.pool._queue import QueueEntry, RequestQueue
from tether.pool._quota import QuotaDecision, TeamUse, check_quota
from tether.pool._request import FrameworkRequirement, SliceRequest
from tether.pool._roster import AdminState, NodeRecord
from tether.pool._state import PoolState, PoolStatistics
from tether.pool._usage import UsageRow, compute_usage, month_bounds, month_key
from tether.pool._values import (
    SHARE_SCALE,
    PoolConflictError,
    PoolInputError,
    PoolNotFoundError,
    format_memory,
    format_share,
    parse_fraction,
    parse_memory,
)

__all__ = [
    "SHARE_SCALE",
    "AdminState",
    "Decision",
    "DeviceSpec",
    "EndReason",
    "Event",
    "FrameworkRequirement",
    "GroupPlaced",
    "GroupQueued",
    "GroupRequest",
    "GroupRequested",
    "Inventory",
    "Lease",
    "LeaseEnded",
    "LeaseHeartbeat",
    "LeaseReleased",
    "LeaseRenewed",
    "NodeCordoned",
    "NodeDrained",
    "NodeHeartbeat",
    "NodeHeartbeatRecorded",
    "NodeLost",
    "NodeRecord",
    "NodeRegistered",
    "NodeSpec",
    "NodeStatus",
    "NodeUncordoned",
    "NodeUpdated",
    "Placed",
    "Placement",
    "PlacementPolicy",
    "PoolConfig",
    "PoolConflictError",
    "PoolInputError",
    "PoolNotFoundError",
    "PoolState",
    "PoolStatistics",
    "QueueEntry",
    "Queued",
    "Quota",
    "QuotaDecision",
    "QuotaSet",
    "QuotaUpdated",
    "RefusalCode",
    "Refused",
    "RequestCancelled",
    "RequestQueue",
    "SliceRequest",
    "SliceRequested",
    "TeamUse",
    "Tick",
    "UsageRow",
    "check_quota",
    "compute_usage",
    "format_memory",
    "format_share",
    "month_bounds",
    "month_key",
    "parse_fraction",
    "parse_memory",
]
