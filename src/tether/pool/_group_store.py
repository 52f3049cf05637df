"""Groups in the pool database: the ``session_groups`` rows and their members.

:class:`GroupStore` is the part of :class:`~tether.pool._store.Store` that
writes what the policy decided about group requests (:mod:`tether.pool._groups`)
and reads groups back as plain records (:class:`GroupRow`) and as the policy's
queue entries. A group is one row while it waits; when it is placed, each
member becomes an ordinary session row (a lease) that names its group and its
index, so tickets, heartbeats, release and usage work per member unchanged.
Like the rest of the store it holds no policy and never reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tether.pool._db import Tx
from tether.pool._events import GroupPlaced
from tether.pool._group_request import GroupRequest
from tether.pool._model import PlacementPolicy
from tether.pool._queue import QueueEntry
from tether.pool._session_store import _SESSION_SELECT, SessionRow, SessionStore, _session_from
from tether.poolapi._problems import NotFound

__all__ = ["GroupRow", "GroupStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRow:
    """A group request as stored: ``state`` is the row's (``queued``, ``placed``,
    ``ended``: refused, cancelled or timed out before placement); whether a placed
    group's members have all ended is read from its member sessions."""

    id: str
    name: str
    team_id: str
    team: str
    user_id: str
    user: str
    state: str
    request: dict[str, Any]  # GroupRequest.to_dict() plus "policy"
    min_count: int
    max_count: int
    placed_count: int
    priority: int
    seq: int
    submitted_at: float
    queue_deadline: float | None
    placed_at: float | None
    ended_at: float | None
    end_reason: str | None
    message: str | None


_GROUP_SELECT = (
    "SELECT g.*, t.name AS team_name, u.name AS user_name FROM session_groups g "
    "JOIN teams t ON t.id = g.team_id JOIN users u ON u.id = g.user_id"
)


def _group_from(r: dict[str, Any]) -> GroupRow:
    return GroupRow(
        id=r["id"],
        name=r["name"],
        team_id=r["team_id"],
        team=r["team_name"],
        user_id=r["user_id"],
        user=r["user_name"],
        state=r["state"],
        request=json.loads(r["request"]),
        min_count=int(r["min_count"]),
        max_count=int(r["max_count"]),
        placed_count=int(r["placed_count"]),
        priority=int(r["priority"]),
        seq=int(r["seq"]),
        submitted_at=float(r["submitted_at"]),
        queue_deadline=r["queue_deadline"],
        placed_at=r["placed_at"],
        ended_at=r["ended_at"],
        end_reason=r["end_reason"],
        message=r["message"],
    )


class GroupStore(SessionStore):
    """Group rows, over the session rows; see the module docstring."""

    def insert_group_tx(
        self,
        tx: Tx,
        group: GroupRequest,
        *,
        team_id: str,
        user_id: str,
        policy: PlacementPolicy | None,
        now: float,
        seq: int | None = None,
    ) -> None:
        """A new group, as waiting; the policy's decision moves it on in the same
        transaction (placed, queued with its deadline, or ended with its refusal).
        ``seq``: its queue-order number (default: the next from the counter)."""
        tx.execute(
            "INSERT INTO session_groups (id, name, team_id, user_id, state, request, "
            "min_count, max_count, priority, seq, submitted_at) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            (
                group.id,
                group.name,
                team_id,
                user_id,
                json.dumps({**group.to_dict(), "policy": policy}, sort_keys=True),
                group.min_count,
                group.max_count,
                group.shape.priority,
                self.next_seq(tx) if seq is None else seq,
                now,
            ),
        )

    def group_queued_tx(self, tx: Tx, group_id: str, *, deadline: float, reason: str) -> None:
        tx.execute(
            "UPDATE session_groups SET queue_deadline = ?, message = ? WHERE id = ?",
            (deadline, reason, group_id),
        )

    def group_ended_tx(
        self, tx: Tx, group_id: str, *, reason: str, message: str, now: float
    ) -> None:
        """A group refused, cancelled or timed out before it was placed (else nothing)."""
        tx.execute(
            "UPDATE session_groups SET state = 'ended', ended_at = ?, end_reason = ?, "
            "message = ? WHERE id = ? AND state = 'queued'",
            (now, reason, message, group_id),
        )

    def group_placed_tx(
        self, tx: Tx, decision: GroupPlaced, next_seq: Callable[[], int] | None = None
    ) -> None:
        """Write every placed member as a lease of the group, and the group as placed.
        ``next_seq``: hands out the members' queue-order numbers (default: the counter)."""
        group = decision.group
        row = tx.one(
            "SELECT team_id, user_id, request FROM session_groups WHERE id = ?", (group.id,)
        )
        if row is None:
            raise NotFound(f"no group with id {group.id!r}")
        policy = json.loads(row["request"]).get("policy")
        for index, placed in enumerate(decision.members):
            lease = placed.lease
            self.insert_session_tx(
                tx,
                session_id=lease.id,
                team_id=row["team_id"],
                user_id=row["user_id"],
                request={**group.member(index).to_dict(), "policy": policy},
                priority=group.shape.priority,
                now=lease.start,
                queue_deadline=None,
                seq=None if next_seq is None else next_seq(),
            )
            tx.execute(
                "UPDATE sessions SET group_id = ?, group_index = ? WHERE id = ?",
                (group.id, index, lease.id),
            )
            self.place_session_tx(
                tx,
                lease.id,
                node_name=lease.node,
                devices=[(dev, lease.fraction, lease.memory_bytes) for dev in lease.device_ids],
                now=lease.start,
            )
        placed_at = decision.members[0].lease.start if decision.members else None
        tx.execute(
            "UPDATE session_groups SET state = 'placed', placed_at = ?, placed_count = ?, "
            "message = NULL WHERE id = ?",
            (placed_at, decision.count, group.id),
        )

    def group_queue_tx(self, tx: Tx) -> list[QueueEntry]:
        """The waiting groups as the policy's queue entries."""
        out = []
        for g in self.groups_tx(tx, states=("queued",)):
            data = dict(g.request)
            policy = data.pop("policy", None)
            group = GroupRequest.from_dict(data)
            out.append(
                QueueEntry(
                    request=group.shape,
                    enqueued_at=g.submitted_at,
                    deadline=g.queue_deadline if g.queue_deadline is not None else g.submitted_at,
                    seq=g.seq,
                    policy=PlacementPolicy.parse_optional(policy),
                    group=group,
                )
            )
        return out

    def groups_tx(
        self,
        tx: Tx,
        *,
        states: Iterable[str] = ("queued", "placed", "ended"),
        team_ids: Iterable[str] | None = None,
        group_id: str | None = None,
        name: str | None = None,
    ) -> list[GroupRow]:
        """Groups by state, teams, id or name, oldest first."""
        states = list(states)
        where = [f"g.state IN ({','.join('?' for _ in states)})"]
        params: list[Any] = list(states)
        if team_ids is not None:
            ids = list(team_ids)
            if not ids:
                return []
            where.append(f"g.team_id IN ({','.join('?' for _ in ids)})")
            params += ids
        if group_id is not None:
            where.append("g.id = ?")
            params.append(group_id)
        if name is not None:
            where.append("g.name = ?")
            params.append(name)
        rows = tx.all(f"{_GROUP_SELECT} WHERE {' AND '.join(where)} ORDER BY g.seq", params)
        return [_group_from(r) for r in rows]

    def group_members_tx(self, tx: Tx, group_id: str) -> list[SessionRow]:
        """A group's placed members as sessions, in member order (two queries in all)."""
        rows = tx.all(f"{_SESSION_SELECT} WHERE s.group_id = ? ORDER BY s.group_index", (group_id,))
        devices = self._devices_of(tx, [r["id"] for r in rows])
        return [_session_from(r, tuple(devices.get(r["id"], ()))) for r in rows]

    def group_member_id_tx(self, tx: Tx, group_id: str, index: int) -> str | None:
        """The session id of the group's member ``index`` (None: not placed)."""
        row = tx.one(
            "SELECT id FROM sessions WHERE group_id = ? AND group_index = ?", (group_id, index)
        )
        return None if row is None else str(row["id"])

    def group_member_counts_tx(self, tx: Tx, group_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Per group: (members whose lease is open, members whose lease has ended)."""
        out: dict[str, tuple[int, int]] = {}
        if not group_ids:
            return out
        marks = ",".join("?" for _ in group_ids)
        for r in tx.all(
            "SELECT group_id, SUM(CASE WHEN state = 'placed' THEN 1 ELSE 0 END) AS open_n, "
            "SUM(CASE WHEN state = 'ended' THEN 1 ELSE 0 END) AS ended_n FROM sessions "
            f"WHERE group_id IN ({marks}) GROUP BY group_id",
            group_ids,
        ):
            out[r["group_id"]] = (int(r["open_n"] or 0), int(r["ended_n"] or 0))
        return out
