"""The pool's ``/metrics`` in the Prometheus text exposition format (version 0.0.4).

Gauges are read from the database at scrape time, so every replica reports the
same pool; counters (placements, refusals, ended leases) count what *this*
process decided since it started, which is what Prometheus' ``rate()`` expects
of a counter. Written by hand: the format is a few lines of text and the pool
needs no client library for it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from tether._prometheus import TextWriter, labels_text

if TYPE_CHECKING:
    from tether.pool._usage_views import Statistics

__all__ = ["CONTENT_TYPE", "PLACEMENT_BUCKETS", "Histogram", "render"]

#: Upper bounds (seconds) of the placement-latency histogram's buckets.
PLACEMENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """A Prometheus histogram kept by this process (thread-safe)."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            if i < len(self._counts):
                self._counts[i] += 1
            self._sum += value
            self._count += 1

    def snapshot(self) -> tuple[int, float, list[int]]:
        """``(count, sum, cumulative count per bucket)``."""
        with self._lock:
            cumulative, running = [], 0
            for c in self._counts:
                running += c
                cumulative.append(running)
            return self._count, self._sum, cumulative


def _histogram(
    w: TextWriter,
    name: str,
    help_text: str,
    buckets: tuple[float, ...],
    series: Iterable[tuple[Mapping[str, str], tuple[int, float, list[int]]]],
) -> None:
    """One histogram family; ``series`` gives (labels, (count, sum, cumulative))."""
    w.lines.append(f"# HELP {name} {help_text}")
    w.lines.append(f"# TYPE {name} histogram")
    for labels, (count, total, cumulative) in series:
        for bound, n in zip(buckets, cumulative, strict=True):
            le = {**labels, "le": repr(float(bound))}
            w.lines.append(f"{name}_bucket{labels_text(le)} {float(n)!r}")
        w.lines.append(f"{name}_bucket{labels_text({**labels, 'le': '+Inf'})} {float(count)!r}")
        w.lines.append(f"{name}_sum{labels_text(labels)} {float(total)!r}")
        w.lines.append(f"{name}_count{labels_text(labels)} {float(count)!r}")


def render(stats: Statistics, placement: Histogram | None = None) -> str:
    """Text for ``/metrics`` from :meth:`PoolService.statistics`."""
    w = TextWriter()
    nodes = stats.nodes
    counts = {"ready": 0, "cordoned": 0, "drained": 0, "lost": 0}
    for n in nodes:
        status = "lost" if n.lost else {"active": "ready"}.get(n.schedulable, n.schedulable)
        counts[status] = counts.get(status, 0) + 1
    w.family(
        "tether_pool_nodes",
        "gauge",
        "Registered nodes by status.",
        (({"status": k}, v) for k, v in sorted(counts.items())),
    )
    devices = stats.devices
    alloc = stats.allocation
    w.family("tether_pool_devices", "gauge", "Registered devices.", [({}, len(devices))])
    w.family(
        "tether_pool_device_memory_bytes",
        "gauge",
        "Memory of each device.",
        (({"node": d.node_name, "device": d.device_id}, d.memory_bytes) for d in devices),
    )
    w.family(
        "tether_pool_device_allocated_share",
        "gauge",
        "Share of each device held by open leases (1 is the whole device).",
        (
            (
                {"node": d.node_name, "device": d.device_id},
                round(alloc.get((d.node_name, d.device_id), (0.0, 0))[0], 6),
            )
            for d in devices
        ),
    )
    w.family(
        "tether_pool_device_allocated_memory_bytes",
        "gauge",
        "Memory of each device held by open leases.",
        (
            (
                {"node": d.node_name, "device": d.device_id},
                alloc.get((d.node_name, d.device_id), (0.0, 0))[1],
            )
            for d in devices
        ),
    )
    teams = stats.teams
    w.family(
        "tether_pool_team_allocated_share",
        "gauge",
        "Devices' worth of share each team holds.",
        (({"team": t.team}, round(t.share, 6)) for t in teams),
    )
    w.family(
        "tether_pool_team_allocated_memory_bytes",
        "gauge",
        "Device memory each team holds.",
        (({"team": t.team}, t.memory_bytes) for t in teams),
    )
    w.family(
        "tether_pool_team_sessions",
        "gauge",
        "Open leases of each team.",
        (({"team": t.team}, t.sessions) for t in teams),
    )
    queued = stats.queued
    w.family(
        "tether_pool_queue_length",
        "gauge",
        "Requests waiting in the queue.",
        [({}, sum(queued.values()))],
    )
    w.family(
        "tether_pool_team_queue_length",
        "gauge",
        "Requests waiting in the queue, by team.",
        (({"team": t}, n) for t, n in sorted(queued.items())),
    )
    counters = stats.counters
    w.family(
        "tether_pool_placements_total",
        "counter",
        "Slices placed by this process.",
        [({}, counters.placements)],
    )
    w.family(
        "tether_pool_queued_total",
        "counter",
        "Requests this process put in the queue.",
        [({}, counters.queued)],
    )
    w.family(
        "tether_pool_refusals_total",
        "counter",
        "Requests refused by this process, by reason.",
        (({"reason": k}, v) for k, v in sorted(counters.refusals.items())),
    )
    w.family(
        "tether_pool_leases_ended_total",
        "counter",
        "Leases ended by this process, by reason.",
        (({"reason": k}, v) for k, v in sorted(counters.leases_ended.items())),
    )
    _usage(w, stats)
    if placement is not None:
        _histogram(
            w,
            "tether_pool_placement_duration_seconds",
            "Time this process took to answer a slice request (place, queue or refuse it).",
            placement.buckets,
            [({}, placement.snapshot())],
        )
    return "\n".join(w.lines) + "\n"


def _usage(w: TextWriter, stats: Statistics) -> None:
    """Usage counters, quotas and queue waits per team (from the database)."""
    from tether.pool._metrics_figures import QUEUE_WAIT_BUCKETS

    usage = stats.team_usage
    w.family(
        "tether_pool_team_device_seconds_total",
        "counter",
        "Device-seconds of each team's leases by share (open ones: to their last heartbeat).",
        (({"team": t}, round(u[0], 3)) for t, u in sorted(usage.items())),
    )
    w.family(
        "tether_pool_team_memory_gib_seconds_total",
        "counter",
        "GiB-seconds of device memory each team's leases held.",
        (({"team": t}, round(u[1], 3)) for t, u in sorted(usage.items())),
    )
    w.family(
        "tether_pool_team_leases_total",
        "counter",
        "Leases each team was granted.",
        (({"team": t}, u[2]) for t, u in sorted(usage.items())),
    )
    month = stats.team_month
    w.family(
        "tether_pool_team_month_device_seconds",
        "gauge",
        "Device-seconds each team used this calendar month (UTC): what its monthly quota counts.",
        (({"team": t}, round(m[0], 3)) for t, m in sorted(month.items())),
    )
    quotas = {q.team: q for q in stats.quotas.values()}  # keyed by team id
    w.family(
        "tether_pool_team_quota_share",
        "gauge",
        "Each team's limit on concurrent share (devices' worth); absent: no limit.",
        (({"team": t}, q.max_share) for t, q in sorted(quotas.items()) if q.max_share is not None),
    )
    w.family(
        "tether_pool_team_quota_memory_bytes",
        "gauge",
        "Each team's limit on device memory held at once; absent: no limit.",
        (
            ({"team": t}, q.max_memory_bytes)
            for t, q in sorted(quotas.items())
            if q.max_memory_bytes is not None
        ),
    )
    w.family(
        "tether_pool_team_quota_month_device_seconds",
        "gauge",
        "Each team's monthly limit in device-seconds; absent: no limit.",
        (
            ({"team": t}, q.device_hours_per_month * 3600.0)
            for t, q in sorted(quotas.items())
            if q.device_hours_per_month is not None
        ),
    )
    waits = stats.queue_wait
    _histogram(
        w,
        "tether_pool_queue_wait_seconds",
        "Time from each request to its placement, by team (0 for requests placed at once).",
        QUEUE_WAIT_BUCKETS,
        (({"team": t}, v) for t, v in sorted(waits.items())),
    )
