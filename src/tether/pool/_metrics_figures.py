"""The database figures behind the pool's usage, quota and queue-wait metrics.

Usage counters are computed from the leases themselves, not counted in a
process: every replica reports the same totals, a restart loses nothing, and
they only grow while leases are kept (the pool never deletes them), which is
what Prometheus' ``increase()`` needs of a counter.

A lease counts up to the last moment it is known to have been held: an open
lease up to its last heartbeat, an ended one up to its end (or its last
heartbeat, if later). Counting an open lease up to *now*, as the usage report
does, would let the counter fall when a lease that stopped heartbeating is
closed at its last heartbeat, and Prometheus reads any fall as a reset (the
monthly ``increase()`` would count the team's whole history again). The cost:
the counter lags an open lease by one heartbeat interval.
"""

from __future__ import annotations

from typing import Any

from tether.pool._db import Tx
from tether.pool._usage import compute_usage, month_bounds, month_key

__all__ = ["QUEUE_WAIT_BUCKETS", "figures_tx"]

#: Upper bounds (seconds) of the queue-wait histogram's buckets.
QUEUE_WAIT_BUCKETS = (0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)

_GIB = float(1 << 30)


def figures_tx(tx: Tx, store: Any, now: float) -> dict[str, Any]:
    """``team_usage``, ``team_month``, ``quotas``, ``queue_wait``, ``teams`` (what each
    team holds now) and ``queued`` (how many each has waiting) for /metrics."""
    beat = "COALESCE(s.last_heartbeat, s.started_at)"
    end = f"CASE WHEN s.ended_at IS NULL OR {beat} > s.ended_at THEN {beat} ELSE s.ended_at END"
    usage = tx.all(
        f"SELECT t.name AS team, COALESCE(SUM(s.share * (({end}) - s.started_at)), 0) AS dev, "
        f"COALESCE(SUM(s.memory_bytes * (({end}) - s.started_at)), 0) AS mem, "
        "COUNT(s.id) AS n "
        "FROM teams t LEFT JOIN sessions s ON s.team_id = t.id AND s.started_at IS NOT NULL "
        "GROUP BY t.name"
    )
    buckets = ", ".join(
        f"SUM(CASE WHEN s.started_at - s.submitted_at <= {b!r} THEN 1 ELSE 0 END) AS b{i}"
        for i, b in enumerate(QUEUE_WAIT_BUCKETS)
    )
    waits = tx.all(
        f"SELECT t.name AS team, COUNT(*) AS n, SUM(s.started_at - s.submitted_at) AS total, "
        f"{buckets} FROM sessions s JOIN teams t ON t.id = s.team_id "
        "WHERE s.started_at IS NOT NULL GROUP BY t.name"
    )
    start, stop = month_bounds(now)
    leases = store.leases_tx(tx, overlapping=(start, stop))
    month = compute_usage(leases, now=now, group_by=("team",), months=[month_key(now)])
    quotas = store.quotas_tx(tx)
    holding = tx.all(
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
        "team_usage": {
            r["team"]: (max(0.0, float(r["dev"])), max(0.0, float(r["mem"])) / _GIB, int(r["n"]))
            for r in usage
        },
        "team_month": {r.team: (r.device_seconds, r.memory_gib_seconds) for r in month},
        "quotas": quotas,
        "queue_wait": {
            r["team"]: (
                int(r["n"]),
                max(0.0, float(r["total"] or 0.0)),
                [int(r[f"b{i}"] or 0) for i in range(len(QUEUE_WAIT_BUCKETS))],
            )
            for r in waits
        },
        "teams": holding,
        "queued": {r["team"]: int(r["n"]) for r in queued},
    }
