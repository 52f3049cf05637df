"""The pool's persistent state: quotas and the change counter (and, through
:class:`~tether.pool._session_store.SessionStore`, sessions and leases; through
:class:`~tether.pool._group_store.GroupStore`, groups; through
:class:`~tether.pool._node_store.NodeStore`, nodes and devices; through
:class:`~tether.pool._accounts.AccountStore`, teams, users and tokens). Every
SQL statement of the pool is in these modules (and the figures of
:mod:`tether.pool._metrics_figures`).

Theory of operation: the database is the source of truth, and every change is one
transaction. Whatever decides placement (``tether.pool._core``) runs inside a
*serialised* transaction (:meth:`Database.transaction` with ``serialize=True``): it
reads the live allocation, decides, and writes the lease before anyone else may
read, so two requests, threads or pool replicas can never both take the last
share of a device. This module holds no policy: it reads and writes rows and
turns them into plain records.

Times are unix seconds (float) passed in by the caller, so that tests control
the clock and the store never reads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tether.pool._accounts import AccountStore, TeamRow
from tether.pool._db import Database, Tx, open_database
from tether.pool._group_store import GroupStore
from tether.pool._migrations import MIGRATIONS
from tether.pool._model import Quota
from tether.pool._node_store import DeviceRow, NodeRow, NodeStore
from tether.pool._session_store import SessionStore

log = logging.getLogger("tether.pool")

__all__ = [
    "DeviceRow",
    "NodeRow",
    "QuotaRow",
    "Store",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaRow:
    team: str
    max_share: float | None
    max_memory_bytes: int | None
    device_hours_per_month: float | None


def _note_dropped_secret(tx: Tx) -> None:
    if tx.one("SELECT key FROM settings WHERE key = 'ticket_secret'") is not None:
        log.warning(
            "dropping the ticket secret kept in the database (settings.ticket_secret): "
            "tickets are now signed with keys from the pool's --secret-file; acceptors "
            "get their new keys when they register again"
        )


class Store(GroupStore, SessionStore, NodeStore, AccountStore):
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
                if number == 2 and version >= 1:
                    _note_dropped_secret(tx)
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

    # ------------------------------------------------------- the state's view

    def generation_tx(self, tx: Tx) -> int:
        """How many placement transactions have committed (changes when any replica writes)."""
        row = tx.one("SELECT value FROM counters WHERE name = 'generation'")
        return int(row["value"]) if row else 0

    def bump_generation_tx(self, tx: Tx, current: int | None = None) -> int:
        """Count one more committed change; returns the new generation.

        ``current``: the generation this serialised transaction already read
        (saves reading it again; nobody else can have moved it meanwhile).
        """
        value = (self.generation_tx(tx) if current is None else current) + 1
        if tx.execute("UPDATE counters SET value = ? WHERE name = 'generation'", (value,)) == 0:
            tx.execute("INSERT INTO counters (name, value) VALUES ('generation', ?)", (value,))
        return value

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
