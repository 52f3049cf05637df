"""What lease and quota events do to :class:`~tether.pool._tables.PoolTables`.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
Transition functions as in :mod:`tether.pool._node_events`: the state's
tables, one event, its time, the decisions to append to; they return whether
they made room. A lease event naming a lease that the expiry pass of this very
event ended does nothing.

A heartbeat renews a lease for ``lease_timeout_s``; a release ends it now; a
finished report ends it at the time the acceptor measured. The time-driven
ends are here too: leases silent past their deadline expire at their last
heartbeat, and restored leases nothing could hold end at theirs.
"""

from __future__ import annotations

from tether.pool._events import (
    Decision,
    LeaseFinished,
    LeaseHeartbeat,
    LeaseReleased,
    LeaseRenewed,
    QuotaSet,
    QuotaUpdated,
)
from tether.pool._tables import PoolTables

__all__ = ["end_restored", "expire", "finished", "heartbeat", "quota_set", "released"]


def heartbeat(t: PoolTables, event: LeaseHeartbeat, now: float, out: list[Decision]) -> bool:
    if event.lease_id not in t.leases:
        return False
    t.leases.renew(event.lease_id, now)
    out.append(LeaseRenewed(lease_id=event.lease_id, last_heartbeat=now))
    return False


def released(t: PoolTables, event: LeaseReleased, now: float, out: list[Decision]) -> bool:
    if event.lease_id not in t.leases:
        return False
    t.end_lease(event.lease_id, "released", now, now, out)
    return True


def finished(t: PoolTables, event: LeaseFinished, now: float, out: list[Decision]) -> bool:
    """The session ended at its acceptor: the lease ends at that measured time."""
    if event.lease_id not in t.leases:
        return False
    t.end_lease(event.lease_id, "finished", event.end, now, out)
    return True


def quota_set(t: PoolTables, event: QuotaSet, now: float, out: list[Decision]) -> bool:
    t.books.set_quota(event.quota)
    out.append(QuotaUpdated(quota=event.quota))
    return True  # a raised limit may let waiting requests in


def end_restored(t: PoolTables, now: float, out: list[Decision]) -> bool:
    """End the restored leases the inventory could not hold, at their last beat."""
    room = False
    while (due := t.leases.pop_pending()) is not None:
        lease, reason = due
        t.end_lease(lease.id, reason, lease.last_heartbeat, now, out)
        room = True
    return room


def expire(t: PoolTables, now: float, out: list[Decision]) -> bool:
    """End every lease silent past its deadline, at its last beat."""
    room = False
    while (lease := t.leases.pop_expired(now)) is not None:
        t.end_lease(lease.id, "expired", lease.last_heartbeat, now, out)
        room = True
    return room
