"""Quotas, usage and the figures for /metrics: the service's books part.

Setting a quota is a change like any other (through the core's
:meth:`~tether.pool._core.ServiceCore.mutate`, so the policy's books see it in
the same transaction); usage and figures are reads of the database, right
under any replica.
"""

from __future__ import annotations

from tether.pool._auth import Principal
from tether.pool._core import ServiceCore, opt_memory
from tether.pool._db import Tx
from tether.pool._directory import require_admin, require_user, visible_team_ids
from tether.pool._events import QuotaSet
from tether.pool._metrics_figures import figures_tx
from tether.pool._model import Quota
from tether.pool._state import PoolState
from tether.pool._usage import compute_usage, month_key, month_range
from tether.pool._usage_views import Statistics, TeamHolding, UsageView
from tether.pool._values import PoolInputError
from tether.pool._views import QuotaView
from tether.poolapi import PoolRequestError

__all__ = ["Accounting", "month_span"]


def month_span(month: str | None, now: float) -> tuple[str, float, float]:
    """The month asked for (default: the one holding ``now``) and its [start, end);
    PoolRequestError if it is not ``YYYY-MM``."""
    month = month or month_key(now)
    try:
        start, end = month_range(month)
    except PoolInputError as exc:
        raise PoolRequestError(str(exc)) from None
    return month, start, end


class Accounting:
    """Quotas, usage per team and user, and the /metrics figures."""

    def __init__(self, core: ServiceCore) -> None:
        self._core = core
        self._store = core.store

    def set_quota(
        self,
        principal: Principal,
        team: str,
        *,
        max_share: float | None,
        max_memory: str | int | None,
        device_hours_per_month: float | None,
    ) -> QuotaView:
        require_admin(principal)
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
        core = self._core

        def work(tx: Tx, state: PoolState, now: float) -> QuotaView:
            row = self._store.set_quota_tx(
                tx,
                team,
                max_share=quota.max_share,
                max_memory_bytes=quota.max_memory_bytes,
                device_hours_per_month=quota.max_device_hours_per_month,
                now=now,
            )
            core.feed(tx, state, QuotaSet(now=now, quota=quota))
            return QuotaView.of(row)

        return core.mutate(work)

    def usage(
        self,
        principal: Principal,
        *,
        team: str | None,
        user: str | None,
        month: str | None,
    ) -> list[UsageView]:
        """Rows per (month, team, user) plus each team's total (user ``*``)."""
        require_user(principal)
        now = self._core.clock()
        month, start, end = month_span(month, now)
        with self._store.db.transaction() as tx:
            team_ids = visible_team_ids(self._store, tx, principal, team)
            leases = self._store.leases_tx(tx, overlapping=(start, end), team_ids=team_ids)
        if user is not None:
            leases = [lease for lease in leases if lease.user == user]
        rows = compute_usage(leases, now=now, group_by=("team", "user", "month"), months=[month])
        totals = compute_usage(leases, now=now, group_by=("team", "month"), months=[month])
        out = [
            UsageView(
                month=month if r.month is None else r.month,
                team="" if r.team is None else r.team,
                user=r.user if r.user is not None else "*",
                device_seconds=r.device_seconds,
                memory_gib_seconds=r.memory_gib_seconds,
                sessions=r.sessions,
                peak_share=r.peak_share,
            )
            for r in [*rows, *(totals if user is None else [])]
        ]
        out.sort(key=lambda r: (r.team, r.user == "*", r.user))
        return out

    def statistics(self) -> Statistics:
        """Figures for /metrics, from the database (right under any replica)."""
        store = self._store
        with store.db.transaction() as tx:
            figures = figures_tx(tx, store, self._core.clock())
            nodes = tuple(store.nodes_tx(tx))
            devices = tuple(store.devices_tx(tx))
            allocation = store.allocation_tx(tx)
        return Statistics(
            nodes=nodes,
            devices=devices,
            allocation=allocation,
            teams=tuple(
                TeamHolding(
                    team=t["team"],
                    share=float(t["share"]),
                    memory_bytes=int(t["mem"]),
                    sessions=int(t["n"]),
                )
                for t in figures["teams"]
            ),
            queued=figures["queued"],
            team_usage=figures["team_usage"],
            team_month=figures["team_month"],
            quotas=figures["quotas"],
            queue_wait=figures["queue_wait"],
            counters=self._core.counters,
        )
