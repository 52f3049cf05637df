"""The core of the pool service: the policy (:class:`PoolState`) driven over the store.

:class:`ServiceCore` owns the in-memory state and the one way to change it;
:class:`~tether.pool._nodes.Nodes` and :class:`~tether.pool._sessions.Sessions`
build on it, and :class:`~tether.pool._service.PoolService` puts them together.

Theory of operation
-------------------
Every change goes through :meth:`ServiceCore._mutate`: one *serialised*
database transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock)
inside which the service reads the clock, turns the request into a policy
event, feeds it to the in-memory :class:`PoolState`, writes every decision that
comes back, and bumps a ``generation`` counter. If the transaction fails, the
database is unchanged and the in-memory state is thrown away and rebuilt from
the database on the next change, so the two never disagree for long.

Several pool processes may share one PostgreSQL database: each keeps its own
PoolState, and when it takes the lock and finds that the generation moved (some
other process wrote), it rebuilds its state from the database before deciding.
The lock is what makes double allocation impossible; the store re-checks each
device's total share below the policy as a last line of defence.

Rebuilding happens in two ways. At start-up (:meth:`ServiceCore.start`) the
state is restored at *now*: every node and open lease gets one full timeout to
check in again, so restarting the pool does not end live sessions; leases of
clients that died with the pool are then closed at their last heartbeat, which
is all usage counts. When re-syncing with another replica, the state is
restored at the oldest last heartbeat instead, so timeouts keep their true
deadlines, and the next tick ends whatever is overdue.

Reads (listings, usage) go straight to the database and need no lock.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tether._errors import PoolError
from tether._ticket import node_key
from tether.pool._db import Tx
from tether.pool._directory import Directory
from tether.pool._events import (
    Decision,
    Event,
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
    Tick,
)
from tether.pool._model import NodeSpec, PoolConfig
from tether.pool._secrets import SecretSource
from tether.pool._state import PoolState
from tether.pool._store import DeviceRow, Store
from tether.pool._usage import month_bounds
from tether.pool._values import PoolConflictError, PoolInputError, PoolNotFoundError, parse_memory
from tether.poolapi import Conflict, NotFound, PoolRequestError

__all__ = ["Counters", "ServiceConfig", "ServiceCore", "Unchanged", "opt_memory"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Knobs of the service around the policy.

    ``heartbeat_skew_s``: how far a node's clock (``sent_at``) may differ from
    the pool's before its heartbeat is rejected. ``ticket_ttl_s``: life of a
    signed ticket.
    """

    policy: PoolConfig = field(default_factory=PoolConfig)
    heartbeat_skew_s: float = 30.0
    ticket_ttl_s: float = 300.0


@dataclass(slots=True)
class Counters:
    """Monotonic counters for /metrics (this process only, as Prometheus expects)."""

    placements: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    leases_ended: dict[str, int] = field(default_factory=dict)


def _policy_error(exc: PoolError) -> PoolRequestError:
    """The API error for an error the policy raised on bad input."""
    message = str(exc)
    if isinstance(exc, PoolNotFoundError):
        return NotFound(message)
    if isinstance(exc, PoolConflictError):
        return Conflict(message)
    return PoolRequestError(message)


class Unchanged(Exception):
    """Carries an API error out of a transaction that must roll back."""

    def __init__(self, error: PoolRequestError) -> None:
        super().__init__(str(error))
        self.error = error


def opt_memory(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_memory(value, what=what)
    except PoolInputError as exc:
        raise PoolRequestError(str(exc)) from None


class ServiceCore(Directory):
    """The policy over the store: restoring it, and making every change (see above).

    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        secret: SecretSource | None = None,
    ) -> None:
        self.store = store
        self.config = config or ServiceConfig()
        self._clock = clock
        # The secret every ticket key derives from lives outside the database
        # (tether.pool._secrets): replicas are given the same one. Without one
        # (tests), a random secret that dies with the process.
        self.secret = secret if secret is not None else SecretSource.ephemeral()
        self.secret.load()  # a bad secret file fails the start, not the first request
        self._lock = threading.Lock()
        self._state: PoolState | None = None
        self._generation = -1
        self._now = 0.0  # the time of the change in progress
        self._dirty = False  # the change in progress has altered the in-memory state
        self.counters = Counters()

    def start(self) -> None:
        """Restore the policy from the database (start-up), ending what is overdue."""
        with self._lock, self.store.db.transaction(serialize=True) as tx:
            now = self._now = self._clock()
            self._state = self._restore(tx, at=now)
            self._persist(tx, self._state.handle(Tick(now=now)), context={})
            self._generation = self.store.bump_generation_tx(tx)

    def _restore(self, tx: Tx, *, at: float | None) -> PoolState:
        nodes = self.store.node_records_tx(tx)
        open_leases = self.store.leases_tx(tx, open_only=True)
        now = self._clock()
        month_start, _ = month_bounds(now)
        if at is None:
            # Re-sync: restore at the oldest heartbeat so no deadline is stretched.
            beats = [n.last_heartbeat for n in nodes if not n.lost]
            beats += [lease.last_heartbeat for lease in open_leases]
            at = max(month_start, min([now, *beats]))
        month_leases = [
            lease
            for lease in self.store.leases_tx(tx, overlapping=(month_start, math.inf))
            if lease.end is not None
        ]
        return PoolState.restore(
            self.config.policy,
            now=at,
            nodes=nodes,
            leases=[*open_leases, *month_leases],
            queue=[*self.store.queue_tx(tx), *self.store.group_queue_tx(tx)],
            quotas=self.store.policy_quotas_tx(tx),
        )

    def _mutate(self, work: Callable[[Tx, PoolState, float], T]) -> T:
        """Run ``work(tx, state, now)`` serialised against every other change."""
        with self._lock:
            try:
                with self.store.db.transaction(serialize=True) as tx:
                    now = self._now = self._clock()
                    self._dirty = False
                    if self._state is None or self.store.generation_tx(tx) != self._generation:
                        self._state = self._restore(tx, at=None)
                    result = work(tx, self._state, now)
                    generation = self.store.bump_generation_tx(tx)
            except Unchanged as exc:
                if self._dirty:
                    self._state = None
                raise exc.error from None
            except BaseException:
                self._state = None  # the database rolled back: rebuild from it next time
                raise
            self._generation = generation
            return result

    def _handle(self, state: PoolState, event: Event) -> list[Decision]:
        """Feed one event; bad input raises an API error and changes nothing."""
        try:
            decisions = state.handle(event)
            self._dirty = True
            return decisions
        except (PoolInputError, PoolNotFoundError, PoolConflictError) as exc:
            raise Unchanged(_policy_error(exc)) from exc

    def _persist(self, tx: Tx, decisions: Iterable[Decision], context: dict[str, Any]) -> None:
        """Write decisions. ``context`` may carry ``new`` = (session id, team id, user id,
        request dict, priority) for a request not yet in the database."""
        store = self.store
        for d in decisions:
            if isinstance(d, Placed):
                lease = d.lease
                self._ensure_session(tx, lease.id, context, submitted_at=lease.start)
                store.place_session_tx(
                    tx,
                    lease.id,
                    node_name=lease.node,
                    devices=[(dev, lease.fraction, lease.memory_bytes) for dev in lease.device_ids],
                    now=lease.start,
                )
                self.counters.placements += 1
            elif isinstance(d, Queued):
                self._ensure_session(
                    tx, d.request.id, context, submitted_at=d.enqueued_at, deadline=d.deadline
                )
                tx.execute("UPDATE sessions SET message = ? WHERE id = ?", (d.reason, d.request.id))
                self.counters.queued += 1
            elif isinstance(d, Refused):
                self.counters.refusals[d.code] = self.counters.refusals.get(d.code, 0) + 1
                tx.execute(
                    "UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ?, "
                    "message = ? WHERE id = ? AND state = 'queued'",
                    (self._now, d.code, d.message, d.request_id),
                )
                store.group_ended_tx(
                    tx, d.request_id, reason=d.code, message=d.message, now=self._now
                )
            elif isinstance(d, GroupPlaced):
                store.group_placed_tx(tx, d)
                self.counters.placements += d.count
            elif isinstance(d, GroupQueued):
                store.group_queued_tx(tx, d.group.id, deadline=d.deadline, reason=d.reason)
                self.counters.queued += 1
            elif isinstance(d, LeaseEnded):
                lease = d.lease
                assert lease.end is not None
                store.end_session_tx(tx, lease.id, at=lease.end, reason=d.reason)
                self.counters.leases_ended[d.reason] = (
                    self.counters.leases_ended.get(d.reason, 0) + 1
                )
            elif isinstance(d, LeaseRenewed):
                store.session_heartbeat_tx(tx, d.lease_id, d.last_heartbeat)
            elif isinstance(d, NodeUpdated):
                self._write_node(tx, d.node, d.last_heartbeat)
            elif isinstance(d, NodeHeartbeatRecorded):
                store.node_heartbeat_tx(tx, d.node_id, d.last_heartbeat)
            elif isinstance(d, NodeLost):
                store.set_node_lost_tx(tx, d.node_id, True)
            elif isinstance(d, QuotaUpdated):
                pass  # the admin endpoint wrote the quota row itself

    def _ensure_session(
        self,
        tx: Tx,
        session_id: str,
        context: dict[str, Any],
        *,
        submitted_at: float,
        deadline: float | None = None,
    ) -> None:
        new = context.get("new")
        if new is not None and new[0] == session_id:
            _sid, team_id, user_id, request, priority = new
            self.store.insert_session_tx(
                tx,
                session_id=session_id,
                team_id=team_id,
                user_id=user_id,
                request=request,
                priority=priority,
                now=submitted_at,
                queue_deadline=deadline,
            )
            context["new"] = None

    def _write_node(self, tx: Tx, spec: NodeSpec, last_heartbeat: float) -> None:
        assert self._state is not None
        record = self._state.node(spec.id)
        self.store.upsert_node_tx(
            tx,
            name=spec.id,
            address=spec.address,
            devices=[
                DeviceRow(
                    node_name=spec.id,
                    device_id=d.id,
                    vendor=d.vendor,
                    model=d.model,
                    memory_bytes=d.memory_bytes,
                    arch=d.arch,
                    frameworks=dict(d.frameworks),
                )
                for d in spec.devices
            ],
            info={},
            now=last_heartbeat,
        )
        tx.execute(
            "UPDATE nodes SET schedulable = ?, lost = ?, last_heartbeat = ? WHERE name = ?",
            (record.admin_state, record.lost, last_heartbeat, spec.id),
        )

    # ------------------------------------------------------------ ticket keys

    @staticmethod
    def registration_hash(registration: str) -> str:
        """What the database keeps of a registration id (which is a bearer credential)."""
        return hashlib.sha256(registration.encode("utf-8")).hexdigest()

    def _registration_of(self, tx: Tx, node: str) -> str | None:
        row = tx.one("SELECT registration FROM nodes WHERE name = ?", (node,))
        return None if row is None else row["registration"]

    def _signing_key(self, node: str, registration: str | None) -> bytes:
        """The key ``node``'s tickets are signed with now (its current registration's)."""
        return node_key(self.secret.load().current, node, registration or "")

    def _node_keys(self, node: str, registration: str | None, now: float) -> list[bytes]:
        """Every key a ticket for ``node`` may carry at ``now``: current first."""
        return [node_key(s, node, registration or "") for s in self.secret.load().verifying(now)]

    def tick(self) -> None:
        """Let time pass: lose silent nodes, expire leases, time out the queue."""

        def work(tx: Tx, state: PoolState, now: float) -> None:
            self._persist(tx, self._handle(state, Tick(now=now)), {})

        self._mutate(work)

    def next_deadline(self) -> float | None:
        state = self._state
        return state.next_deadline() if state is not None else None
