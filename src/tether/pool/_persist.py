"""Writing the policy's decisions to the store, and counting them for /metrics.

Every decision the state returns is a row change (:mod:`tether.pool._events`
says which); :func:`persist` makes them in the caller's transaction, so what
the state decided and what the database holds commit or roll back together
(:mod:`tether.pool._core`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.pool._db import Tx
from tether.pool._events import (
    Decision,
    GroupPlaced,
    GroupQueued,
    LeaseEnded,
    LeaseRenewed,
    NodeHeartbeatRecorded,
    NodeLost,
    NodeUpdated,
    Placed,
    Queued,
    QuotaUpdated,
    Refused,
)
from tether.pool._store import Store

__all__ = ["Counters", "NewSession", "persist"]


@dataclass(slots=True)
class Counters:
    """Monotonic counters for /metrics (this process only, as Prometheus expects)."""

    placements: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    leases_ended: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, eq=False, kw_only=True)
class NewSession:
    """A request's session row, written with the first decision about it."""

    id: str
    team_id: str
    user_id: str
    request: dict[str, Any]  # the SliceRequest's dict, plus "policy"
    priority: int
    written: bool = False
    seq: int | None = None  # its queue-order number, once written (if the core gave it)


def persist(
    tx: Tx,
    store: Store,
    counters: Counters,
    decisions: Iterable[Decision],
    *,
    now: float,
    new: NewSession | None = None,
    next_seq: Callable[[], int] | None = None,
) -> None:
    """Write ``decisions`` in ``tx`` and count them. ``now``: the change's time
    (when a refused request ended). ``new``: the session row to insert with its
    first decision (the request is not in the database yet). ``next_seq``: hands
    out new rows' queue-order numbers (default: the store's counter)."""
    for d in decisions:
        if isinstance(d, Placed):
            lease = d.lease
            devices = [(dev, lease.fraction, lease.memory_bytes) for dev in lease.device_ids]
            if new is not None and new.id == lease.id and not new.written and next_seq:
                # Placed as it arrives: one INSERT of the placed row.
                new.seq = next_seq()
                store.insert_placed_session_tx(
                    tx,
                    session_id=new.id,
                    team_id=new.team_id,
                    user_id=new.user_id,
                    request=new.request,
                    priority=new.priority,
                    seq=new.seq,
                    node_name=lease.node,
                    devices=devices,
                    now=lease.start,
                )
                new.written = True
            else:
                _ensure_session(tx, store, lease.id, new, next_seq, submitted_at=lease.start)
                store.place_session_tx(
                    tx, lease.id, node_name=lease.node, devices=devices, now=lease.start
                )
            counters.placements += 1
        elif isinstance(d, Queued):
            _ensure_session(
                tx,
                store,
                d.request.id,
                new,
                next_seq,
                submitted_at=d.enqueued_at,
                deadline=d.deadline,
            )
            store.session_queued_tx(tx, d.request.id, reason=d.reason)
            counters.queued += 1
        elif isinstance(d, Refused):
            counters.refusals[d.code] = counters.refusals.get(d.code, 0) + 1
            store.refuse_session_tx(tx, d.request_id, code=d.code, message=d.message, now=now)
            store.group_ended_tx(tx, d.request_id, reason=d.code, message=d.message, now=now)
        elif isinstance(d, GroupPlaced):
            store.group_placed_tx(tx, d, next_seq)
            counters.placements += d.count
        elif isinstance(d, GroupQueued):
            store.group_queued_tx(tx, d.group.id, deadline=d.deadline, reason=d.reason)
            counters.queued += 1
        elif isinstance(d, LeaseEnded):
            lease = d.lease
            assert lease.end is not None
            store.end_session_tx(tx, lease.id, at=lease.end, reason=d.reason)
            counters.leases_ended[d.reason] = counters.leases_ended.get(d.reason, 0) + 1
        elif isinstance(d, LeaseRenewed):
            store.session_heartbeat_tx(tx, d.lease_id, d.last_heartbeat)
        elif isinstance(d, NodeUpdated):
            store.write_node_tx(
                tx,
                d.node,
                admin_state=d.admin_state,
                lost=d.status == "lost",
                last_heartbeat=d.last_heartbeat,
            )
        elif isinstance(d, NodeHeartbeatRecorded):
            store.node_heartbeat_tx(tx, d.node_id, d.last_heartbeat)
        elif isinstance(d, NodeLost):
            store.set_node_lost_tx(tx, d.node_id, True)
        elif isinstance(d, QuotaUpdated):
            pass  # the admin endpoint wrote the quota row itself


def _ensure_session(
    tx: Tx,
    store: Store,
    session_id: str,
    new: NewSession | None,
    next_seq: Callable[[], int] | None,
    *,
    submitted_at: float,
    deadline: float | None = None,
) -> None:
    if new is None or new.id != session_id or new.written:
        return
    new.seq = None if next_seq is None else next_seq()
    store.insert_session_tx(
        tx,
        session_id=session_id,
        team_id=new.team_id,
        user_id=new.user_id,
        request=new.request,
        priority=new.priority,
        now=submitted_at,
        queue_deadline=deadline,
        seq=new.seq,
    )
    new.written = True
