"""Sessions in the pool database: queued requests, live leases and ended ones.

(Over 400 lines: every statement about the ``sessions`` and ``lease_devices``
rows, a short method each.)

:class:`SessionStore` is the part of :class:`~tether.pool._store.Store` that
reads and writes the ``sessions`` and ``lease_devices`` rows and maps them to
plain records (:class:`SessionRow`) and to the policy's records
(:class:`Lease`, :class:`QueueEntry`). Like the rest of the store it holds no
policy and never reads a clock (callers pass ``now``). Methods run inside the
caller's transaction; writes that order or place sessions belong in a
serialised one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether.pool._db import Database, Tx
from tether.pool._model import Lease, PlacementPolicy
from tether.pool._queue import QueueEntry
from tether.pool._request import SliceRequest
from tether.poolapi import NotFound, PoolRequestError

__all__ = ["SessionRow", "SessionStore", "session_lease"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRow:
    """A session: queued, placed (a live lease) or ended."""

    id: str
    team_id: str
    team: str
    user_id: str
    user: str
    state: str
    request: dict[str, Any]
    priority: int
    seq: int
    submitted_at: float
    queue_deadline: float | None
    node_name: str | None
    started_at: float | None
    last_heartbeat: float | None
    ended_at: float | None
    end_reason: str | None
    message: str | None  # why it waits, or why it ended
    share: float
    memory_bytes: int
    devices: tuple[tuple[str, float, int], ...]  # (device_id, share, memory_bytes)
    metering: dict[str, Any] | None
    group_id: str | None = None  # the group request it is a member of (_group_store)
    group_index: int | None = None
    name: str | None = None


def _session_from(row: dict[str, Any], devices: tuple[tuple[str, float, int], ...]) -> SessionRow:
    return SessionRow(
        id=row["id"],
        team_id=row["team_id"],
        team=row["team_name"],
        user_id=row["user_id"],
        user=row["user_name"],
        state=row["state"],
        request=json.loads(row["request"]),
        priority=int(row["priority"]),
        seq=int(row["seq"]),
        submitted_at=float(row["submitted_at"]),
        queue_deadline=row["queue_deadline"],
        node_name=row["node_name"],
        started_at=row["started_at"],
        last_heartbeat=row["last_heartbeat"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        message=row["message"],
        share=float(row["share"]),
        memory_bytes=int(row["memory_bytes"]),
        devices=devices,
        metering=json.loads(row["metering"]) if row["metering"] else None,
        group_id=row.get("group_id"),
        group_index=None if row.get("group_index") is None else int(row["group_index"]),
        name=row.get("name"),
    )


_SESSION_SELECT = (
    "SELECT s.*, t.name AS team_name, u.name AS user_name FROM sessions s "
    "JOIN teams t ON t.id = s.team_id JOIN users u ON u.id = s.user_id"
)


_SESSION_SELECT_DEVICES = (
    "SELECT s.*, t.name AS team_name, u.name AS user_name, d.device_id AS d_device_id, "
    "d.share AS d_share, d.memory_bytes AS d_memory_bytes FROM sessions s "
    "JOIN teams t ON t.id = s.team_id JOIN users u ON u.id = s.user_id "
    "LEFT JOIN lease_devices d ON d.session_id = s.id"
)


class SessionStore:
    """Session and lease rows; see the module docstring."""

    db: Database

    def set_session_name_tx(self, tx: Tx, session_id: str, name: str) -> None:
        """Name a session (its user's label for it; names need not be unique)."""
        tx.execute("UPDATE sessions SET name = ? WHERE id = ?", (name, session_id))

    def next_seq(self, tx: Tx) -> int:
        """A strictly increasing number (queue order), inside a serialised transaction.

        Reads and writes the counter each time; the service's core hands out
        numbers from memory instead and saves the last once a batch
        (:meth:`~tether.pool._core.ServiceCore.next_seq`).
        """
        value = self.seq_tx(tx) + 1
        self.set_seq_tx(tx, value)
        return value

    def seq_tx(self, tx: Tx) -> int:
        """The last queue-order number handed out (0: none yet)."""
        row = tx.one("SELECT value FROM counters WHERE name = 'seq'")
        return int(row["value"]) if row else 0

    def set_seq_tx(self, tx: Tx, value: int) -> None:
        """Save the last queue-order number handed out."""
        if tx.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (value,)) == 0:
            tx.execute("INSERT INTO counters (name, value) VALUES ('seq', ?)", (value,))

    def _devices_of(
        self, tx: Tx, session_ids: list[str]
    ) -> dict[str, list[tuple[str, float, int]]]:
        out: dict[str, list[tuple[str, float, int]]] = {}
        if not session_ids:
            return out
        marks = ",".join("?" for _ in session_ids)
        for r in tx.all(
            f"SELECT * FROM lease_devices WHERE session_id IN ({marks}) ORDER BY device_id",
            session_ids,
        ):
            out.setdefault(r["session_id"], []).append(
                (r["device_id"], float(r["share"]), int(r["memory_bytes"]))
            )
        return out

    def sessions_tx(
        self,
        tx: Tx,
        *,
        states: Iterable[str] = ("queued", "placed"),
        team_ids: Iterable[str] | None = None,
        session_id: str | None = None,
        overlapping: tuple[float, float] | None = None,
    ) -> list[SessionRow]:
        """Sessions filtered by state, teams, id, or lease overlap with [start, end)."""
        where = [f"s.state IN ({','.join('?' for _ in states)})"]
        params: list[Any] = list(states)
        if team_ids is not None:
            ids = list(team_ids)
            if not ids:
                return []
            where.append(f"s.team_id IN ({','.join('?' for _ in ids)})")
            params += ids
        if session_id is not None:
            where.append("s.id = ?")
            params.append(session_id)
        if overlapping is not None:
            where.append("s.started_at IS NOT NULL AND s.started_at < ?")
            where.append("(s.ended_at IS NULL OR s.ended_at > ?)")
            params += [overlapping[1], overlapping[0]]
        rows = tx.all(f"{_SESSION_SELECT} WHERE {' AND '.join(where)} ORDER BY s.seq", params)
        devices = self._devices_of(tx, [r["id"] for r in rows])
        return [_session_from(r, tuple(devices.get(r["id"], ()))) for r in rows]

    def session_tx(self, tx: Tx, session_id: str) -> SessionRow:
        """One session with its devices, in one query (every request reads one)."""
        rows = tx.all(
            f"{_SESSION_SELECT_DEVICES} WHERE s.id = ? AND s.state IN (?, ?, ?) "
            "ORDER BY d.device_id",
            (session_id, "queued", "placed", "ended"),
        )
        if not rows:
            raise NotFound(f"no session with id {session_id!r}")
        devices = tuple(
            (r["d_device_id"], float(r["d_share"]), int(r["d_memory_bytes"]))
            for r in rows
            if r["d_device_id"] is not None
        )
        return _session_from(rows[0], devices)

    def insert_session_tx(
        self,
        tx: Tx,
        *,
        session_id: str,
        team_id: str,
        user_id: str,
        request: dict[str, Any],
        priority: int,
        now: float,
        queue_deadline: float | None,
        seq: int | None = None,
    ) -> None:
        """A new session, queued; :meth:`place_session_tx` turns it into a lease.
        ``seq``: its queue-order number (default: the next from the counter)."""
        tx.execute(
            "INSERT INTO sessions (id, team_id, user_id, state, request, priority, seq, "
            "submitted_at, queue_deadline) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                session_id,
                team_id,
                user_id,
                json.dumps(request, sort_keys=True),
                priority,
                self.next_seq(tx) if seq is None else seq,
                now,
                queue_deadline,
            ),
        )

    def place_session_tx(
        self,
        tx: Tx,
        session_id: str,
        *,
        node_name: str,
        devices: list[tuple[str, float, int]],
        now: float,
    ) -> None:
        """Make a queued session a live lease on ``devices`` of ``node_name``.

        A last line of defence below the policy: refuses (PoolRequestError, and the
        transaction rolls back) if any device would end up over a whole share.
        """
        self._check_free_tx(tx, node_name, devices)
        self._insert_devices_tx(tx, session_id, node_name, devices)
        tx.execute(
            "UPDATE sessions SET state = 'placed', node_name = ?, started_at = ?, "
            "last_heartbeat = ?, share = ?, memory_bytes = ? WHERE id = ?",
            (
                node_name,
                now,
                now,
                sum(s for _d, s, _m in devices),
                sum(m for _d, _s, m in devices),
                session_id,
            ),
        )

    def insert_placed_session_tx(
        self,
        tx: Tx,
        *,
        session_id: str,
        team_id: str,
        user_id: str,
        request: dict[str, Any],
        priority: int,
        seq: int,
        node_name: str,
        devices: list[tuple[str, float, int]],
        now: float,
    ) -> None:
        """A new session placed at once: :meth:`insert_session_tx` then
        :meth:`place_session_tx` in one INSERT (the same checks, one statement less)."""
        self._check_free_tx(tx, node_name, devices)
        tx.execute(
            "INSERT INTO sessions (id, team_id, user_id, state, request, priority, seq, "
            "submitted_at, node_name, started_at, last_heartbeat, share, memory_bytes) "
            "VALUES (?, ?, ?, 'placed', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                team_id,
                user_id,
                json.dumps(request, sort_keys=True),
                priority,
                seq,
                now,
                node_name,
                now,
                now,
                sum(s for _d, s, _m in devices),
                sum(m for _d, _s, m in devices),
            ),
        )
        self._insert_devices_tx(tx, session_id, node_name, devices)

    def _check_free_tx(self, tx: Tx, node_name: str, devices: list[tuple[str, float, int]]) -> None:
        """PoolRequestError if a device would end up over a whole share (see
        :meth:`place_session_tx`)."""
        for device_id, share, _memory in devices:
            row = tx.one(
                "SELECT COALESCE(SUM(share), 0) AS used FROM lease_devices "
                "WHERE node_name = ? AND device_id = ? AND active = ?",
                (node_name, device_id, True),
            )
            used = float(row["used"]) if row else 0.0
            if used + share > 1.0 + 1e-9:
                raise PoolRequestError(
                    f"internal: device {node_name}/{device_id} would be over-allocated "
                    f"({used:g} + {share:g})"
                )

    def _insert_devices_tx(
        self, tx: Tx, session_id: str, node_name: str, devices: list[tuple[str, float, int]]
    ) -> None:
        for device_id, share, memory in devices:
            tx.execute(
                "INSERT INTO lease_devices (session_id, node_name, device_id, share, "
                "memory_bytes, active) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, node_name, device_id, share, memory, True),
            )

    def end_session_tx(self, tx: Tx, session_id: str, *, at: float, reason: str) -> None:
        """End a queued session or a lease at time ``at`` (idempotent for ended ones)."""
        tx.execute(
            "UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ? "
            "WHERE id = ? AND state <> 'ended'",
            (at, reason, session_id),
        )
        tx.execute("UPDATE lease_devices SET active = ? WHERE session_id = ?", (False, session_id))

    def session_queued_tx(self, tx: Tx, session_id: str, *, reason: str) -> None:
        """Say why a session waits."""
        tx.execute("UPDATE sessions SET message = ? WHERE id = ?", (reason, session_id))

    def refuse_session_tx(
        self, tx: Tx, session_id: str, *, code: str, message: str, now: float
    ) -> None:
        """End a waiting session as refused (no-op for one that is not waiting)."""
        tx.execute(
            "UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ?, "
            "message = ? WHERE id = ? AND state = 'queued'",
            (now, code, message, session_id),
        )

    def ticket_use_tx(self, tx: Tx, session_id: str) -> tuple[str | None, float | None] | None:
        """A session's (end reason, connected at); None if there is no such session."""
        row = tx.one("SELECT end_reason, connected_at FROM sessions WHERE id = ?", (session_id,))
        return None if row is None else (row["end_reason"], row["connected_at"])

    def connect_session_tx(self, tx: Tx, session_id: str, now: float) -> None:
        """Mark the session's ticket used (at its first connection only)."""
        tx.execute(
            "UPDATE sessions SET connected_at = ? WHERE id = ? AND connected_at IS NULL",
            (now, session_id),
        )

    def ended_span_tx(
        self, tx: Tx, session_id: str, node: str
    ) -> tuple[float, float | None] | None:
        """(started at, ended at) of an ended session that ran on ``node``, else None."""
        row = tx.one(
            "SELECT started_at, ended_at FROM sessions WHERE id = ? AND node_name = ? "
            "AND state = 'ended'",
            (session_id, node),
        )
        if row is None or row["started_at"] is None:
            return None
        ended = row["ended_at"]
        return float(row["started_at"]), None if ended is None else float(ended)

    def finish_earlier_tx(self, tx: Tx, session_id: str, end: float) -> None:
        """Move an ended session's end back to ``end``, as ``finished`` (its acceptor
        measured it ending then)."""
        tx.execute(
            "UPDATE sessions SET ended_at = ?, end_reason = 'finished' WHERE id = ?",
            (end, session_id),
        )

    def session_heartbeat_tx(
        self, tx: Tx, session_id: str, now: float, metering: dict[str, Any] | None = None
    ) -> None:
        if metering is None:
            tx.execute(
                "UPDATE sessions SET last_heartbeat = ? WHERE id = ? AND state = 'placed'",
                (now, session_id),
            )
        else:
            tx.execute(
                "UPDATE sessions SET last_heartbeat = ?, metering = ? "
                "WHERE id = ? AND state = 'placed'",
                (now, json.dumps(metering, sort_keys=True), session_id),
            )

    def session_metering_tx(self, tx: Tx, session_id: str, metering: dict[str, Any]) -> None:
        """Record a session's final metering figures (its lease may have ended)."""
        tx.execute(
            "UPDATE sessions SET metering = ? WHERE id = ?",
            (json.dumps(metering, sort_keys=True), session_id),
        )

    def allocation_tx(self, tx: Tx) -> dict[tuple[str, str], tuple[float, int]]:
        """Live (share, memory bytes) per (node, device), from active lease rows."""
        rows = tx.all(
            "SELECT node_name, device_id, SUM(share) AS share, SUM(memory_bytes) AS mem "
            "FROM lease_devices WHERE active = ? GROUP BY node_name, device_id",
            (True,),
        )
        return {(r["node_name"], r["device_id"]): (float(r["share"]), int(r["mem"])) for r in rows}

    def leases_tx(
        self,
        tx: Tx,
        *,
        open_only: bool = False,
        overlapping: tuple[float, float] | None = None,
        team_ids: Iterable[str] | None = None,
    ) -> list[Lease]:
        """Leases (placed or ended sessions that were placed) as policy records."""
        states = ("placed",) if open_only else ("placed", "ended")
        out = []
        for s in self.sessions_tx(tx, states=states, team_ids=team_ids, overlapping=overlapping):
            lease = session_lease(s)
            if lease is not None:
                out.append(lease)
        return out

    def queue_tx(self, tx: Tx) -> list[QueueEntry]:
        out = []
        for s in self.sessions_tx(tx, states=("queued",)):
            request = dict(s.request)
            policy = request.pop("policy", None)
            out.append(
                QueueEntry(
                    request=SliceRequest.from_dict(request),
                    enqueued_at=s.submitted_at,
                    deadline=s.queue_deadline if s.queue_deadline is not None else s.submitted_at,
                    seq=s.seq,
                    policy=PlacementPolicy.parse_optional(policy),
                )
            )
        return out


def session_lease(s: SessionRow) -> Lease | None:
    """The policy's :class:`Lease` of a placed or ended session (None if it never was placed)."""
    if s.started_at is None or s.node_name is None or not s.devices:
        return None
    fraction = s.devices[0][1]
    memory = s.devices[0][2]
    end = s.ended_at
    reason = s.end_reason if end is not None else None
    return Lease(
        id=s.id,
        node=s.node_name,
        device_ids=tuple(d for d, _f, _m in s.devices),
        fraction=fraction,
        memory_bytes=memory,
        team=s.team,
        user=s.user,
        start=s.started_at,
        last_heartbeat=max(s.last_heartbeat or s.started_at, s.started_at),
        end=end,
        end_reason=reason,  # type: ignore[arg-type]  # written from EndReason only
    )
