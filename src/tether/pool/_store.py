"""The pool's persistent state: quotas, nodes, devices, sessions (and, through
:class:`~tether.pool._accounts.AccountStore`, teams, users and tokens).

Theory of operation: the database is the source of truth, and every change is one
transaction. Whatever decides placement (``tether.pool._service``) runs inside a
*serialised* transaction (:meth:`Database.transaction` with ``serialize=True``): it
reads the live allocation, decides, and writes the lease before anyone else may
read, so two requests, threads or pool replicas can never both take the last
share of a device. This module holds no policy: it reads and writes rows and
turns them into plain records.

Times are unix seconds (float) passed in by the caller, so that tests control
the clock and the store never reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether.pool._accounts import AccountStore, TeamRow
from tether.pool._db import Database, Tx, open_database
from tether.pool._migrations import MIGRATIONS
from tether.pool._model import DeviceSpec, Lease, NodeSpec, Quota
from tether.pool._problems import NotFound, PoolRequestError
from tether.pool._queue import QueueEntry
from tether.pool._request import SliceRequest
from tether.pool._state import NodeRecord

__all__ = [
    "DeviceRow",
    "NodeRow",
    "QuotaRow",
    "SessionRow",
    "Store",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaRow:
    team: str
    max_share: float | None
    max_memory_bytes: int | None
    device_hours_per_month: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRow:
    node_name: str
    device_id: str
    vendor: str
    model: str
    memory_bytes: int
    arch: str
    frameworks: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    name: str
    address: str
    schedulable: str  # active | cordoned | drained (the admin's say)
    lost: bool
    registered_at: float
    last_heartbeat: float
    info: dict[str, Any]


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
    )


_SESSION_SELECT = (
    "SELECT s.*, t.name AS team_name, u.name AS user_name FROM sessions s "
    "JOIN teams t ON t.id = s.team_id JOIN users u ON u.id = s.user_id"
)


class Store(AccountStore):
    """Typed reads and writes of the pool database. Thread-safe (a connection per thread).

    Methods that take a ``tx`` run inside the caller's transaction; the others open
    their own. Lookups of names that do not exist raise :class:`NotFound`; creating
    a duplicate raises :class:`Conflict`.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (creating if needed) and migrate the database at ``url``."""
        store = cls(open_database(url))
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------- schema

    def schema_version(self) -> int:
        with self.db.transaction() as tx:
            return self._schema_version(tx)

    def _schema_version(self, tx: Tx) -> int:
        if tx.dialect == "sqlite":
            exists = tx.one(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            )
        else:
            exists = tx.one(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = 'schema_version'"
            )
        if exists is None:
            return 0
        row = tx.one("SELECT version FROM schema_version")
        return int(row["version"]) if row else 0

    def migrate(self) -> int:
        """Apply pending migrations under the serialising lock; returns the version."""
        with self.db.transaction(serialize=True) as tx:
            version = self._schema_version(tx)
            if version == 0:
                tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                tx.execute("INSERT INTO schema_version (version) VALUES (0)")
            for number, statements in MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    tx.execute(statement)
                tx.execute("UPDATE schema_version SET version = ?", (number,))
                version = number
            return version

    # --------------------------------------------------------------- settings

    def setting(self, key: str, default: str) -> str:
        """The value of ``key``, storing ``default`` first if there is none."""
        with self.db.transaction(serialize=True) as tx:
            row = tx.one("SELECT value FROM settings WHERE key = ?", (key,))
            if row is not None:
                return str(row["value"])
            tx.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, default))
            return default

    def next_seq(self, tx: Tx) -> int:
        """A strictly increasing number (queue order), inside a serialised transaction."""
        row = tx.one("SELECT value FROM counters WHERE name = 'seq'")
        value = (int(row["value"]) if row else 0) + 1
        if row is None:
            tx.execute("INSERT INTO counters (name, value) VALUES ('seq', ?)", (value,))
        else:
            tx.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (value,))
        return value

    # ------------------------------------------------------------ teams, users
    # ------------------------------------------------------------------ quotas

    def set_quota_tx(
        self,
        tx: Tx,
        team: str,
        *,
        max_share: float | None,
        max_memory_bytes: int | None,
        device_hours_per_month: float | None,
        now: float,
    ) -> QuotaRow:
        t = self._team(tx, team)
        tx.execute("DELETE FROM quotas WHERE team_id = ?", (t.id,))
        tx.execute(
            "INSERT INTO quotas (team_id, max_share, max_memory_bytes, "
            "device_hours_per_month, updated_at) VALUES (?, ?, ?, ?, ?)",
            (t.id, max_share, max_memory_bytes, device_hours_per_month, now),
        )
        return self._quota(tx, t)

    def _quota(self, tx: Tx, team: TeamRow) -> QuotaRow:
        row = tx.one("SELECT * FROM quotas WHERE team_id = ?", (team.id,))
        if row is None:
            return QuotaRow(
                team=team.name, max_share=None, max_memory_bytes=None, device_hours_per_month=None
            )
        return QuotaRow(
            team=team.name,
            max_share=row["max_share"],
            max_memory_bytes=row["max_memory_bytes"],
            device_hours_per_month=row["device_hours_per_month"],
        )

    def quota(self, team: str) -> QuotaRow:
        with self.db.transaction() as tx:
            return self._quota(tx, self._team(tx, team))

    def quotas_tx(self, tx: Tx) -> dict[str, QuotaRow]:
        """Every team's quota (teams without one get an all-None row), by team id."""
        out: dict[str, QuotaRow] = {}
        for r in tx.all("SELECT * FROM teams"):
            team = TeamRow(id=r["id"], name=r["name"], created_at=float(r["created_at"]))
            out[team.id] = self._quota(tx, team)
        return out

    # ------------------------------------------------------------------- nodes

    def nodes_tx(self, tx: Tx) -> list[NodeRow]:
        return [
            NodeRow(
                name=r["name"],
                address=r["address"],
                schedulable=r["schedulable"],
                lost=bool(r["lost"]),
                registered_at=float(r["registered_at"]),
                last_heartbeat=float(r["last_heartbeat"]),
                info=json.loads(r["info"]),
            )
            for r in tx.all("SELECT * FROM nodes ORDER BY name")
        ]

    def node_tx(self, tx: Tx, name: str) -> NodeRow:
        for node in self.nodes_tx(tx):
            if node.name == name:
                return node
        raise NotFound(f"no node named {name!r}")

    def devices_tx(self, tx: Tx, node_name: str | None = None) -> list[DeviceRow]:
        if node_name is None:
            rows = tx.all("SELECT * FROM devices ORDER BY node_name, device_id")
        else:
            rows = tx.all(
                "SELECT * FROM devices WHERE node_name = ? ORDER BY device_id", (node_name,)
            )
        return [
            DeviceRow(
                node_name=r["node_name"],
                device_id=r["device_id"],
                vendor=r["vendor"],
                model=r["model"],
                memory_bytes=int(r["memory_bytes"]),
                arch=r["arch"],
                frameworks=json.loads(r["frameworks"]),
            )
            for r in rows
        ]

    def upsert_node_tx(
        self,
        tx: Tx,
        *,
        name: str,
        address: str,
        devices: list[DeviceRow],
        info: dict[str, Any],
        now: float,
    ) -> None:
        """Insert a node, or refresh a known one (keeping its cordon/drain state)."""
        existing = tx.one("SELECT name FROM nodes WHERE name = ?", (name,))
        if existing is None:
            tx.execute(
                "INSERT INTO nodes (name, address, schedulable, lost, registered_at, "
                "last_heartbeat, info) VALUES (?, ?, 'active', ?, ?, ?, ?)",
                (name, address, False, now, now, json.dumps(info)),
            )
        else:
            tx.execute(
                "UPDATE nodes SET address = ?, lost = ?, registered_at = ?, last_heartbeat = ?, "
                "info = ? WHERE name = ?",
                (address, False, now, now, json.dumps(info), name),
            )
        tx.execute("DELETE FROM devices WHERE node_name = ?", (name,))
        for d in devices:
            tx.execute(
                "INSERT INTO devices (node_name, device_id, vendor, model, memory_bytes, "
                "arch, frameworks) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    d.device_id,
                    d.vendor,
                    d.model,
                    d.memory_bytes,
                    d.arch,
                    json.dumps(d.frameworks, sort_keys=True),
                ),
            )

    def node_heartbeat_tx(self, tx: Tx, name: str, now: float) -> None:
        tx.execute(
            "UPDATE nodes SET last_heartbeat = ?, lost = ? WHERE name = ?", (now, False, name)
        )

    def set_node_lost_tx(self, tx: Tx, name: str, lost: bool) -> None:
        tx.execute("UPDATE nodes SET lost = ? WHERE name = ?", (lost, name))

    def set_schedulable_tx(self, tx: Tx, name: str, schedulable: str) -> None:
        if tx.execute("UPDATE nodes SET schedulable = ? WHERE name = ?", (schedulable, name)) == 0:
            raise NotFound(f"no node named {name!r}")

    # ---------------------------------------------------------------- sessions

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
        rows = self.sessions_tx(tx, states=("queued", "placed", "ended"), session_id=session_id)
        if not rows:
            raise NotFound(f"no session with id {session_id!r}")
        return rows[0]

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
    ) -> None:
        """A new session, queued; :meth:`place_session_tx` turns it into a lease."""
        tx.execute(
            "INSERT INTO sessions (id, team_id, user_id, state, request, priority, seq, "
            "submitted_at, queue_deadline) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                session_id,
                team_id,
                user_id,
                json.dumps(request, sort_keys=True),
                priority,
                self.next_seq(tx),
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
        for device_id, share, memory in devices:
            tx.execute(
                "INSERT INTO lease_devices (session_id, node_name, device_id, share, "
                "memory_bytes, active) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, node_name, device_id, share, memory, True),
            )
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

    def end_session_tx(self, tx: Tx, session_id: str, *, at: float, reason: str) -> None:
        """End a queued session or a lease at time ``at`` (idempotent for ended ones)."""
        tx.execute(
            "UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ? "
            "WHERE id = ? AND state <> 'ended'",
            (at, reason, session_id),
        )
        tx.execute("UPDATE lease_devices SET active = ? WHERE session_id = ?", (False, session_id))

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

    def allocation_tx(self, tx: Tx) -> dict[tuple[str, str], tuple[float, int]]:
        """Live (share, memory bytes) per (node, device), from active lease rows."""
        rows = tx.all(
            "SELECT node_name, device_id, SUM(share) AS share, SUM(memory_bytes) AS mem "
            "FROM lease_devices WHERE active = ? GROUP BY node_name, device_id",
            (True,),
        )
        return {(r["node_name"], r["device_id"]): (float(r["share"]), int(r["mem"])) for r in rows}

    # ------------------------------------------------------- the state's view

    def generation_tx(self, tx: Tx) -> int:
        """How many placement transactions have committed (changes when any replica writes)."""
        row = tx.one("SELECT value FROM counters WHERE name = 'generation'")
        return int(row["value"]) if row else 0

    def bump_generation_tx(self, tx: Tx) -> int:
        value = self.generation_tx(tx) + 1
        if tx.execute("UPDATE counters SET value = ? WHERE name = 'generation'", (value,)) == 0:
            tx.execute("INSERT INTO counters (name, value) VALUES ('generation', ?)", (value,))
        return value

    def node_records_tx(self, tx: Tx) -> list[NodeRecord]:
        """Every node as the policy sees it (spec with devices, admin state, liveness)."""
        devices: dict[str, list[DeviceSpec]] = {}
        for d in self.devices_tx(tx):
            devices.setdefault(d.node_name, []).append(
                DeviceSpec(
                    id=d.device_id,
                    vendor=d.vendor,
                    model=d.model,
                    memory_bytes=d.memory_bytes,
                    arch=d.arch,
                    frameworks=d.frameworks,
                )
            )
        return [
            NodeRecord(
                node=NodeSpec(id=n.name, address=n.address, devices=tuple(devices.get(n.name, ()))),
                admin_state=n.schedulable,  # type: ignore[arg-type]  # CHECK constraint
                lost=n.lost,
                last_heartbeat=n.last_heartbeat,
            )
            for n in self.nodes_tx(tx)
        ]

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
                    policy=policy,
                )
            )
        return out

    def policy_quotas_tx(self, tx: Tx) -> list[Quota]:
        return [
            Quota(
                team=q.team,
                max_share=q.max_share,
                max_memory_bytes=q.max_memory_bytes,
                max_device_hours_per_month=q.device_hours_per_month,
            )
            for q in self.quotas_tx(tx).values()
            if (q.max_share, q.max_memory_bytes, q.device_hours_per_month) != (None, None, None)
        ]

    def team_ids_tx(self, tx: Tx) -> dict[str, str]:
        """Team name -> id."""
        return {r["name"]: r["id"] for r in tx.all("SELECT id, name FROM teams")}


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
