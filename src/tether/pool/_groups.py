"""Group requests: many slices of one shape, placed together or not at all.

A :class:`~tether.pool._group_request.GroupRequest` asks for between
``min_count`` and ``max_count`` slices of one shape (a :class:`SliceRequest`: fraction, memory
or whole devices, and constraints) under one name. ``min_count == max_count``
is a *gang*: all of them or none. Otherwise the group takes as many as fit,
up to ``max_count``, but only once at least ``min_count`` do.

Part of the state machine (see ``_state``'s theory of operation), pure like it:
this module holds the arithmetic (fitting a group, its quota refusals);
:mod:`tether.pool._admission` decides with it and opens the leases.

Theory of operation
-------------------
On arrival (:func:`~tether.pool._admission.group_requested`) a group is, in order:

1. refused ``unsatisfiable`` if the pool's registered devices, all of them
   empty, could not hold ``min_count`` slices of the shape
   (:meth:`~tether.pool._placement.Inventory.capacity_for`): waiting cannot help;
2. refused ``quota`` if ``min_count`` slices alone are over a concurrent team
   limit (share or memory), or the team spent its month;
3. placed if :func:`fit_group` finds room for at least ``min_count`` members
   now, counting the whole group against the team's concurrent limits;
4. else queued as one entry (or refused ``capacity``/``quota`` when it may not
   wait).

Placing is one step: :func:`fit_group` asks placement for one member at a
time, taking each member's room as it goes (so the next member sees it taken),
stops at ``max_count``, at the first member that finds no room, or at the first
member the team's quota would not allow; then it gives all the room back. The
state opens the leases only when the count reached ``min_count``, so a group is
never partly placed below its minimum, and one decision, :class:`GroupPlaced`,
carries every member's lease.

In the queue a group is one entry (its id is the group's id, its request the
shape), in the same fair order as single requests (priority, then teams by
turns, then FIFO within a team). When room appears it is tried as a whole.
Head of line: a waiting group blocks its own team's later requests at the same
or higher priority, exactly as a single request does; other teams' requests
may go past it (backfill), so a big gang does not idle the pool while it waits,
and its queue timeout bounds how long it waits for room that backfill keeps
taking. A group that still cannot be placed at its deadline is refused
``timeout`` like any request; a cancelled one, ``cancelled``.

Once placed, every member is an ordinary lease (its own id, ticket, heartbeat
and end); the group itself keeps no further state in the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tether.pool._books import TeamBooks, quota_refusal
from tether.pool._events import Refused
from tether.pool._group_request import GroupRequest
from tether.pool._model import PlacementPolicy
from tether.pool._placement import Inventory, Placement
from tether.pool._quota import QuotaDecision, check_quota

__all__ = ["GroupFit", "fit_group", "group_refusal"]

# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFit:
    """What :func:`fit_group` found: where each member that fits would go (in member
    order), and the quota decision that stopped it early (None: quota did not)."""

    placements: tuple[Placement, ...]
    quota: QuotaDecision | None = None


def fit_group(
    inventory: Inventory,
    books: TeamBooks,
    group: GroupRequest,
    policy: PlacementPolicy,
    now: float,
) -> GroupFit:
    """Where up to ``max_count`` members would go now; changes nothing.

    Each member is placed on the inventory in turn (so the next sees its room
    taken) and the whole group so far is checked against the team's concurrent
    limits; at the end all the room is given back. Stops at ``max_count``, at
    the first member with no room, or at the first one over quota.
    """
    quota = books.quota(group.team)
    use = books.use(group.team, now)
    taken: list[Placement] = []
    units = memory = 0
    stopped: QuotaDecision | None = None
    try:
        for _ in range(group.max_count):
            placement = inventory.find(group.shape, policy)
            if placement is None:
                break
            decision = check_quota(
                quota,
                use,
                request_share_units=units + placement.total_share_units,
                request_memory_bytes=memory + placement.total_memory_bytes,
            )
            if not decision.allowed:
                stopped = decision
                break
            inventory.allocate(placement)
            taken.append(placement)
            units += placement.total_share_units
            memory += placement.total_memory_bytes
    finally:
        for p in taken:
            inventory.free(p.node_id, p.device_ids, p.share_units, p.memory_bytes)
    return GroupFit(placements=tuple(taken), quota=stopped)


def group_refusal(group: GroupRequest, decision: QuotaDecision) -> Refused:
    """The :class:`Refused` of a group that ``decision`` turned down (by the group's id)."""
    refused = quota_refusal(group.shape, decision)
    return replace(refused, message=f"group {group.name}: {refused.message}")
