"""The pool service: the policy (:class:`PoolState`) driven over the store.

Theory of operation
-------------------
Every change goes through :meth:`PoolService._mutate`: one *serialised*
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

Rebuilding happens in two ways. At start-up (:meth:`PoolService.start`) the
state is restored at *now*: every node and open lease gets one full timeout to
check in again, so restarting the pool does not end live sessions; leases of
clients that died with the pool are then closed at their last heartbeat, which
is all usage counts. When re-syncing with another replica, the state is
restored at the oldest last heartbeat instead, so timeouts keep their true
deadlines, and the next tick ends whatever is overdue.

Reads (listings, usage) go straight to the database and need no lock.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tether._errors import PoolError
from tether._ticket import SessionTicket, TicketError, node_key
from tether._ticket import issue as issue_ticket
from tether._ticket import verify as verify_ticket
from tether.pool._accounts import new_id
from tether.pool._auth import Principal
from tether.pool._db import Tx
from tether.pool._directory import Directory, quota_out
from tether.pool._events import (
    Decision,
    Event,
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
    NodeUncordoned,
    NodeUpdated,
    Placed,
    Queued,
    QuotaSet,
    QuotaUpdated,
    Refused,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._model import DeviceSpec, NodeSpec, PoolConfig, Quota
from tether.pool._problems import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PoolRequestError,
)
from tether.pool._problems import (
    Refused as RefusedError,
)
from tether.pool._request import SliceRequest
from tether.pool._state import PoolState
from tether.pool._store import SessionRow, Store, session_lease
from tether.pool._usage import compute_usage, month_bounds
from tether.pool._values import PoolConflictError, PoolInputError, PoolNotFoundError, parse_memory

__all__ = ["PoolService", "ServiceConfig"]

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


class PoolService(Directory):
    """Everything the HTTP API can ask of the pool, for one principal at a time.

    Methods raise :mod:`tether.pool._problems` errors for requests the caller
    may not make or that are wrong, and :class:`AuthenticationError` only from
    :meth:`authenticate`. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config or ServiceConfig()
        self._clock = clock
        # One secret per pool database, so every replica signs alike; each node
        # gets a key derived from it (see tether._ticket).
        self._secret = bytes.fromhex(store.setting("ticket_secret", secrets.token_hex(32)))
        self._lock = threading.Lock()
        self._state: PoolState | None = None
        self._generation = -1
        self._now = 0.0  # the time of the change in progress
        self._dirty = False  # the change in progress has altered the in-memory state
        self.counters = Counters()

    # ================================================================ the core

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
            queue=self.store.queue_tx(tx),
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
            except _Unchanged as exc:
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
            raise _Unchanged(_policy_error(exc)) from exc

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
        from tether.pool._store import DeviceRow

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

    def tick(self) -> None:
        """Let time pass: lose silent nodes, expire leases, time out the queue."""

        def work(tx: Tx, state: PoolState, now: float) -> None:
            self._persist(tx, self._handle(state, Tick(now=now)), {})

        self._mutate(work)

    def next_deadline(self) -> float | None:
        state = self._state
        return state.next_deadline() if state is not None else None

    # ================================================================ nodes

    def register_node(
        self,
        principal: Principal,
        *,
        name: str,
        address: str,
        devices: list[dict[str, Any]],
        replace: bool,
        sent_at: float | None,
    ) -> dict[str, Any]:
        self._require_node(principal, name)
        try:
            spec = NodeSpec(
                id=name,
                address=address,
                devices=tuple(
                    DeviceSpec(
                        id=d["id"],
                        vendor=d["vendor"],
                        model=d["model"],
                        memory_bytes=parse_memory(d["memory"], what=f"device {d['id']} memory"),
                        arch=d.get("arch", ""),
                        frameworks=d.get("frameworks", {}),
                    )
                    for d in devices
                ),
            )
        except PoolInputError as exc:
            raise PoolRequestError(str(exc)) from None

        def work(tx: Tx, state: PoolState, now: float) -> dict[str, Any]:
            self._check_skew(sent_at, now)
            try:
                existing = state.node(name)
            except PoolNotFoundError:
                existing = None
            if existing is not None and not existing.lost and not replace:
                raise _Unchanged(
                    Conflict(
                        f"node {name!r} is already registered and alive (last heartbeat "
                        f"{now - existing.last_heartbeat:.0f}s ago); another acceptor may be using "
                        "this name. Register with replace=true to take it over."
                    )
                )
            self._persist(tx, self._handle(state, NodeRegistered(now=now, node=spec)), {})
            return {
                **self._node_status(state, name),
                "ticket_key": node_key(self._secret, name).hex(),
            }

        return self._mutate(work)

    def node_heartbeat(
        self,
        principal: Principal,
        name: str,
        *,
        sent_at: float,
        device_ids: list[str] | None,
        sessions: list[dict[str, Any]],
    ) -> dict[str, Any]:
        self._require_node(principal, name)

        def work(tx: Tx, state: PoolState, now: float) -> dict[str, Any]:
            self._check_skew(sent_at, now)
            event = NodeHeartbeat(
                now=now, node_id=name, device_ids=tuple(device_ids) if device_ids else None
            )
            self._persist(tx, self._handle(state, event), {})
            ended = []
            for meter in sessions:
                sid = meter["session_id"]
                try:
                    lease = state.lease(sid)
                except PoolNotFoundError:
                    ended.append(sid)
                    continue
                if lease.node != name:
                    ended.append(sid)
                    continue
                self._persist(tx, self._handle(state, LeaseHeartbeat(now=now, lease_id=sid)), {})
                figures = {k: v for k, v in meter.items() if k != "session_id" and v is not None}
                self.store.session_heartbeat_tx(tx, sid, now, figures)
            return {"status": state.node(name).status, "ended_sessions": ended}

        return self._mutate(work)

    def node_admin(self, principal: Principal, name: str, action: str) -> dict[str, Any]:
        self._require_admin(principal)
        make: dict[str, Callable[[float], Event]] = {
            "cordon": lambda now: NodeCordoned(now=now, node_id=name),
            "drain": lambda now: NodeDrained(now=now, node_id=name),
            "uncordon": lambda now: NodeUncordoned(now=now, node_id=name),
        }
        if action not in make:
            raise PoolRequestError(f"unknown node action {action!r}: cordon, drain or uncordon")

        def work(tx: Tx, state: PoolState, now: float) -> dict[str, Any]:
            self._persist(tx, self._handle(state, make[action](now)), {})
            return self._node_status(state, name)

        return self._mutate(work)

    def _node_status(self, state: PoolState, name: str) -> dict[str, Any]:
        record = state.node(name)
        return {"name": name, "status": record.status, "last_heartbeat": record.last_heartbeat}

    def _check_skew(self, sent_at: float | None, now: float) -> None:
        if sent_at is None:
            return
        skew = sent_at - now
        if abs(skew) > self.config.heartbeat_skew_s:
            raise _Unchanged(
                PoolRequestError(
                    f"clock skew: the node's clock is {skew:+.1f}s off the pool's (at most "
                    f"{self.config.heartbeat_skew_s:g}s allowed); synchronise it with NTP",
                    {"skew_s": skew, "max_skew_s": self.config.heartbeat_skew_s},
                )
            )

    def nodes(self) -> list[dict[str, Any]]:
        with self.store.db.transaction() as tx:
            nodes = self.store.nodes_tx(tx)
            devices = self.store.devices_tx(tx)
            alloc = self.store.allocation_tx(tx)
        out = []
        for n in nodes:
            status = "lost" if n.lost else {"active": "ready"}.get(n.schedulable, n.schedulable)
            out.append(
                {
                    "name": n.name,
                    "address": n.address,
                    "status": status,
                    "registered_at": n.registered_at,
                    "last_heartbeat": n.last_heartbeat,
                    "devices": [
                        self._device_out(d, alloc) for d in devices if d.node_name == n.name
                    ],
                }
            )
        return out

    @staticmethod
    def _device_out(d: Any, alloc: dict[tuple[str, str], tuple[float, int]]) -> dict[str, Any]:
        share, memory = alloc.get((d.node_name, d.device_id), (0.0, 0))
        return {
            "node": d.node_name,
            "id": d.device_id,
            "vendor": d.vendor,
            "model": d.model,
            "memory_bytes": d.memory_bytes,
            "arch": d.arch,
            "frameworks": d.frameworks,
            "allocated_share": round(share, 4),
            "allocated_memory_bytes": memory,
        }

    def devices(self) -> list[dict[str, Any]]:
        return [d for n in self.nodes() for d in n["devices"]]

    # ================================================================ sessions

    def request_slice(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Place, queue or refuse a request (RefusedError). Returns the session."""
        self._require_user(principal)
        assert principal.user_id is not None and principal.user_name is not None
        team_name, team_id = self._resolve_team(principal, body.get("team"))
        session_id = new_id()
        policy = body.get("policy")
        try:
            request = SliceRequest(
                id=session_id,
                fraction=body.get("fraction"),
                memory_bytes=_opt_memory(body.get("memory"), "requested memory"),
                count=body.get("count"),
                vendor=body.get("vendor"),
                model=body.get("model"),
                min_memory_bytes=_opt_memory(body.get("min_memory"), "minimum memory"),
                frameworks=tuple(body.get("frameworks") or ()),
                node=body.get("node"),
                team=team_name,
                user=principal.user_name,
                priority=int(body.get("priority") or 0),
                wait=bool(body.get("wait", True)),
                queue_timeout_s=body.get("queue_timeout_s"),
            )
        except PoolInputError as exc:
            raise PoolRequestError(str(exc)) from None
        stored = {**request.to_dict(), "policy": policy}
        context: dict[str, Any] = {
            "new": (session_id, team_id, principal.user_id, stored, request.priority)
        }

        def work(tx: Tx, state: PoolState, now: float) -> Refused | None:
            decisions = self._handle(state, SliceRequested(now=now, request=request, policy=policy))
            self._persist(tx, decisions, context)
            for d in decisions:
                if isinstance(d, Refused) and d.request_id == session_id:
                    return d
            return None

        refused = self._mutate(work)
        if refused is not None:
            detail: dict[str, Any] = {"reason": refused.code, "team": refused.team}
            for key in ("limit", "used", "limit_value", "left"):
                value = getattr(refused, key)
                if value is not None:
                    detail[key] = value
            raise RefusedError(refused.message, detail)
        return self.session(principal, session_id)

    def _resolve_team(self, principal: Principal, team: str | None) -> tuple[str, str]:
        with self.store.db.transaction() as tx:
            ids = self.store.team_ids_tx(tx)
        names = {v: k for k, v in ids.items()}
        mine = sorted(names[t] for t in principal.team_ids if t in names)
        if team is None:
            if len(mine) == 1:
                return mine[0], ids[mine[0]]
            if not mine:
                raise Forbidden(
                    f"user {principal.user_name!r} belongs to no team: ask an admin to add you"
                )
            raise PoolRequestError(
                f"you belong to several teams ({', '.join(mine)}): name one with team"
            )
        if team not in ids:
            raise NotFound(f"no team named {team!r}")
        if not principal.can_see_team(ids[team]):
            raise Forbidden(f"you are not a member of team {team!r}")
        return team, ids[team]

    def session(self, principal: Principal, session_id: str) -> dict[str, Any]:
        with self.store.db.transaction() as tx:
            row = self.store.session_tx(tx, session_id)
            address = None
            if row.state == "placed" and row.node_name is not None:
                addr = tx.one("SELECT address FROM nodes WHERE name = ?", (row.node_name,))
                address = addr["address"] if addr else None
        self._require_team(principal, row.team_id, what=f"session {session_id!r}")
        out = self._session_out(row, address)
        if row.state == "queued":
            out["position"] = self._position(session_id)
        if row.state == "placed" and principal.user_id == row.user_id:
            out.update(self._ticket(row, address))
        return out

    def _position(self, session_id: str) -> int | None:
        state = self._state
        if state is None:
            return None
        with self._lock:
            try:
                return state.queue_position(session_id)
            except PoolNotFoundError:
                return None

    def _ticket(self, row: SessionRow, address: str | None) -> dict[str, Any]:
        lease = session_lease(row)
        if lease is None:
            return {}
        now = self._clock()
        ticket = SessionTicket(
            session_id=row.id,
            node=lease.node,
            device_ids=lease.device_ids,
            fraction=lease.fraction,
            memory_bytes=lease.memory_bytes,
            team=row.team,
            user=row.user,
            issued_at=now,
            expires_at=now + self.config.ticket_ttl_s,
        )
        text = issue_ticket(node_key(self._secret, lease.node), ticket)
        return {"ticket": text, "ticket_expires_at": ticket.expires_at}

    def verify_ticket(self, principal: Principal, ticket: str, node: str | None) -> dict[str, Any]:
        """Check a ticket as its acceptor would (for acceptors that ask, and for admins)."""
        if principal.kind == "node":
            node = principal.node_name or node
        elif not principal.is_admin:
            raise Forbidden("only node tokens and admins can verify tickets")
        if node is None:
            raise PoolRequestError("name the node the ticket is for")
        try:
            claims = verify_ticket(
                node_key(self._secret, node), ticket, now=self._clock(), node=node
            )
        except TicketError as exc:
            raise PoolRequestError(
                f"invalid ticket: {exc}", {"ticket_error": type(exc).__name__}
            ) from None
        return {
            "valid": True,
            "claims": {
                "session": claims.session_id,
                "node": claims.node,
                "devices": list(claims.device_ids),
                "fraction": claims.fraction,
                "memory_bytes": claims.memory_bytes,
                "team": claims.team,
                "user": claims.user,
                "issued_at": claims.issued_at,
                "expires_at": claims.expires_at,
            },
        }

    @staticmethod
    def _session_out(row: SessionRow, address: str | None) -> dict[str, Any]:
        request = {k: v for k, v in row.request.items() if v is not None and k != "id"}
        return {
            "id": row.id,
            "team": row.team,
            "user": row.user,
            "state": row.state,
            "submitted_at": row.submitted_at,
            "request": request,
            "reason": row.message,
            "queue_deadline": row.queue_deadline,
            "node": row.node_name,
            "address": address,
            "devices": [{"id": d, "fraction": f, "memory_bytes": m} for d, f, m in row.devices],
            "share": row.share,
            "memory_bytes": row.memory_bytes,
            "started_at": row.started_at,
            "last_heartbeat": row.last_heartbeat,
            "ended_at": row.ended_at,
            "end_reason": row.end_reason,
            "metering": row.metering,
        }

    def sessions(
        self, principal: Principal, *, state: str | None = None, team: str | None = None
    ) -> list[dict[str, Any]]:
        states = (state,) if state else ("queued", "placed")
        if state is not None and state not in ("queued", "placed", "ended"):
            raise PoolRequestError("state must be queued, placed or ended")
        with self.store.db.transaction() as tx:
            team_ids = self._visible_team_ids(tx, principal, team)
            rows = self.store.sessions_tx(tx, states=states, team_ids=team_ids)
            addresses = {n.name: n.address for n in self.store.nodes_tx(tx)}
        out = []
        for row in rows:
            item = self._session_out(row, addresses.get(row.node_name or ""))
            if row.state == "queued":
                item["position"] = self._position(row.id)
            out.append(item)
        return out

    def heartbeat(self, principal: Principal, session_id: str) -> dict[str, Any]:
        row = self._own_session(principal, session_id)
        if row.state != "ended":

            def work(tx: Tx, state: PoolState, now: float) -> None:
                # Decided under the lock: the lease may have ended since the read above.
                if _is_queued(state, session_id):
                    return
                try:
                    state.lease(session_id)
                except PoolNotFoundError:
                    return
                event = LeaseHeartbeat(now=now, lease_id=session_id)
                self._persist(tx, self._handle(state, event), {})

            self._mutate(work)
        current = self.session(principal, session_id)
        if current["state"] == "ended":
            raise Gone(
                f"session {session_id} has ended ({current['end_reason']})",
                {"reason": current["end_reason"]},
            )
        return current

    def release(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """End a lease or withdraw a queued request; releasing an ended one is harmless."""
        row = self._own_session(principal, session_id)
        if row.state != "ended":

            def work(tx: Tx, state: PoolState, now: float) -> None:
                event: Event
                if _is_queued(state, session_id):
                    event = RequestCancelled(now=now, request_id=session_id)
                else:
                    try:
                        state.lease(session_id)
                    except PoolNotFoundError:
                        return  # it ended meanwhile
                    event = LeaseReleased(now=now, lease_id=session_id)
                self._persist(tx, self._handle(state, event), {})

            self._mutate(work)
        return self.session(principal, session_id)

    def _own_session(self, principal: Principal, session_id: str) -> SessionRow:
        with self.store.db.transaction() as tx:
            row = self.store.session_tx(tx, session_id)
        self._require_team(principal, row.team_id, what=f"session {session_id!r}")
        if not principal.is_admin and principal.user_id != row.user_id:
            raise Forbidden(f"session {session_id} belongs to {row.user}; only they can change it")
        return row

    # ================================================================ quotas

    def set_quota(
        self,
        principal: Principal,
        team: str,
        *,
        max_share: float | None,
        max_memory: str | int | None,
        device_hours_per_month: float | None,
    ) -> dict[str, Any]:
        self._require_admin(principal)
        memory = 0 if max_memory == 0 else _opt_memory(max_memory, "max memory")
        try:
            quota = Quota(
                team=team,
                max_share=max_share,
                max_memory_bytes=memory,
                max_device_hours_per_month=device_hours_per_month,
            )
        except PoolInputError as exc:
            raise PoolRequestError(str(exc)) from None

        def work(tx: Tx, state: PoolState, now: float) -> dict[str, Any]:
            row = self.store.set_quota_tx(
                tx,
                team,
                max_share=quota.max_share,
                max_memory_bytes=quota.max_memory_bytes,
                device_hours_per_month=quota.max_device_hours_per_month,
                now=now,
            )
            self._persist(tx, self._handle(state, QuotaSet(now=now, quota=quota)), {})
            return quota_out(row)

        return self._mutate(work)

    # ================================================================ usage

    def usage(
        self,
        principal: Principal,
        *,
        team: str | None,
        user: str | None,
        month: str | None,
    ) -> list[dict[str, Any]]:
        """Rows per (month, team, user) plus each team's total (user ``*``)."""
        self._require_user(principal)
        now = self._clock()
        if month is None:
            from tether.pool._usage import month_key

            month = month_key(now)
        start, end = _month_range(month)
        with self.store.db.transaction() as tx:
            team_ids = self._visible_team_ids(tx, principal, team)
            leases = self.store.leases_tx(tx, overlapping=(start, end), team_ids=team_ids)
        if user is not None:
            leases = [lease for lease in leases if lease.user == user]
        rows = compute_usage(leases, now=now, group_by=("team", "user", "month"), months=[month])
        totals = compute_usage(leases, now=now, group_by=("team", "month"), months=[month])
        out = [
            {
                "month": r.month,
                "team": r.team,
                "user": r.user if r.user is not None else "*",
                "device_seconds": r.device_seconds,
                "memory_gib_seconds": r.memory_gib_seconds,
                "sessions": r.sessions,
                "peak_share": r.peak_share,
            }
            for r in [*rows, *(totals if user is None else [])]
        ]
        out.sort(key=lambda r: (r["team"], r["user"] == "*", r["user"]))
        return out

    # ================================================================ status

    def statistics(self) -> dict[str, Any]:
        """Figures for /metrics, from the database (right under any replica)."""
        with self.store.db.transaction() as tx:
            nodes = self.store.nodes_tx(tx)
            devices = self.store.devices_tx(tx)
            alloc = self.store.allocation_tx(tx)
            team_rows = tx.all(
                "SELECT t.name AS team, COALESCE(SUM(s.share), 0) AS share, "
                "COALESCE(SUM(s.memory_bytes), 0) AS mem, COUNT(s.id) AS n "
                "FROM teams t LEFT JOIN sessions s ON s.team_id = t.id AND s.state = 'placed' "
                "GROUP BY t.name"
            )
            queued = tx.all(
                "SELECT t.name AS team, COUNT(*) AS n FROM sessions s "
                "JOIN teams t ON t.id = s.team_id WHERE s.state = 'queued' GROUP BY t.name"
            )
        return {
            "nodes": nodes,
            "devices": devices,
            "allocation": alloc,
            "teams": team_rows,
            "queued": {r["team"]: int(r["n"]) for r in queued},
            "counters": self.counters,
        }


def _is_queued(state: PoolState, session_id: str) -> bool:
    try:
        state.queue_position(session_id)
    except PoolNotFoundError:
        return False
    return True


class _Unchanged(Exception):
    """Carries an API error out of a transaction that must roll back."""

    def __init__(self, error: PoolRequestError) -> None:
        super().__init__(str(error))
        self.error = error


def _opt_memory(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_memory(value, what=what)
    except PoolInputError as exc:
        raise PoolRequestError(str(exc)) from None


def _month_range(month: str) -> tuple[float, float]:
    from datetime import UTC, datetime

    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise PoolRequestError(f"month must look like 2026-11, got {month!r}") from None
    first, last = month_bounds(start.timestamp())
    return first, last
