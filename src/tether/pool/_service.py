"""The pool service: everything the HTTP API can ask of the pool.

:class:`PoolService` puts together the core that drives the policy over the
store (:mod:`tether.pool._core`, whose docstring tells how changes, restarts
and replicas work), the node inventory (:mod:`tether.pool._nodes`), sessions
(:mod:`tether.pool._sessions`) and the directory of teams, users and tokens
(:mod:`tether.pool._directory`), and adds quotas, usage and the figures for
/metrics.
"""

from __future__ import annotations

from typing import Any

from tether.pool._auth import Principal
from tether.pool._core import ServiceConfig, opt_memory
from tether.pool._db import Tx
from tether.pool._directory import quota_out
from tether.pool._events import QuotaSet
from tether.pool._group_sessions import Groups
from tether.pool._metrics_figures import figures_tx
from tether.pool._model import Quota
from tether.pool._nodes import Nodes
from tether.pool._state import PoolState
from tether.pool._usage import compute_usage, month_bounds
from tether.pool._values import PoolInputError
from tether.poolapi import PoolRequestError

__all__ = ["PoolService", "ServiceConfig"]


class PoolService(Nodes, Groups):
    """Everything the HTTP API can ask of the pool, for one principal at a time.

    Methods raise :mod:`tether.poolapi._problems` errors for requests the caller
    may not make or that are wrong, and :class:`AuthenticationError` only from
    :meth:`authenticate`. ``clock`` is injectable for tests.
    """

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
        memory = 0 if max_memory == 0 else opt_memory(max_memory, "max memory")
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
            figures = figures_tx(tx, self.store, self._clock())
        return {
            **figures,
            "nodes": nodes,
            "devices": devices,
            "allocation": alloc,
            "teams": team_rows,
            "queued": {r["team"]: int(r["n"]) for r in queued},
            "counters": self.counters,
        }


def _month_range(month: str) -> tuple[float, float]:
    from datetime import UTC, datetime

    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise PoolRequestError(f"month must look like 2026-11, got {month!r}") from None
    first, last = month_bounds(start.timestamp())
    return first, last
