"""The pool's node inventory: acceptors registering and heartbeating their
nodes, admins cordoning and draining them, and the listings of nodes and devices.

Changes go through :meth:`ServiceCore._mutate <tether.pool._core.ServiceCore._mutate>`
like every other; the listings read the database directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether._ticket import node_key
from tether.pool._auth import Principal
from tether.pool._core import ServiceCore, Unchanged
from tether.pool._db import Tx
from tether.pool._events import (
    Event,
    LeaseHeartbeat,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeRegistered,
    NodeUncordoned,
)
from tether.pool._model import DeviceSpec, NodeSpec
from tether.pool._problems import Conflict, PoolRequestError
from tether.pool._state import PoolState
from tether.pool._values import PoolInputError, PoolNotFoundError, parse_memory

__all__ = ["Nodes"]


class Nodes(ServiceCore):
    """Registering, heartbeating, administering and listing nodes and their devices."""

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
                raise Unchanged(
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
            raise Unchanged(
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
