"""The pool's ``/metrics`` in the Prometheus text exposition format (version 0.0.4).

Gauges are read from the database at scrape time, so every replica reports the
same pool; counters (placements, refusals, ended leases) count what *this*
process decided since it started, which is what Prometheus' ``rate()`` expects
of a counter. Written by hand: the format is a few lines of text and the pool
needs no client library for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {float(value)!r}")


def render(stats: Mapping[str, Any]) -> str:
    """Text for ``/metrics`` from :meth:`PoolService.statistics`."""
    w = _Writer()
    nodes = stats["nodes"]
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
    devices = stats["devices"]
    alloc = stats["allocation"]
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
    teams = stats["teams"]
    w.family(
        "tether_pool_team_allocated_share",
        "gauge",
        "Devices' worth of share each team holds.",
        (({"team": t["team"]}, round(float(t["share"]), 6)) for t in teams),
    )
    w.family(
        "tether_pool_team_allocated_memory_bytes",
        "gauge",
        "Device memory each team holds.",
        (({"team": t["team"]}, int(t["mem"])) for t in teams),
    )
    w.family(
        "tether_pool_team_sessions",
        "gauge",
        "Open leases of each team.",
        (({"team": t["team"]}, int(t["n"])) for t in teams),
    )
    queued = stats["queued"]
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
    counters = stats["counters"]
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
    return "\n".join(w.lines) + "\n"
