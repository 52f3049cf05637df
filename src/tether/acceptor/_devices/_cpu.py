"""The host CPU as one device, ``cpu:0``.

Cores come from the scheduler affinity, memory from ``/proc/meminfo`` (capped by
a cgroup v2 ``memory.max`` when the acceptor runs in a container), the model
from ``/proc/cpuinfo``. The parsers are pure functions.
"""

from __future__ import annotations

import os
import platform

from tether.acceptor._devices._host import _read
from tether.acceptor._devices._model import Device, Probe


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field (``MemTotal``, ``MemAvailable``...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        out[key.strip()] = int(parts[0]) * scale
    return out


def parse_cpu_model(cpuinfo: str) -> str:
    """The processor's marketing name from ``/proc/cpuinfo`` (x86 or Arm)."""
    wanted = ("model name", "Hardware", "cpu model", "Processor", "uarch")
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key in wanted and value.strip() and key not in found:
            found[key] = value.strip()
    for key in wanted:
        if key in found:
            return found[key]
    return ""


def _cgroup_memory_limit() -> int | None:
    """The cgroup v2 memory limit of this process, if one is set."""
    for line in _read("/proc/self/cgroup").splitlines():
        if line.startswith("0::"):
            raw = _read(f"/sys/fs/cgroup{line[3:].strip()}/memory.max").strip()
            if raw.isdigit():
                return int(raw)
    return None


def probe_cpu() -> Probe:
    """The host CPU as one device, ``cpu:0``: never fails."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    info = parse_meminfo(_read("/proc/meminfo"))
    total = info.get("MemTotal", 0)
    free = info.get("MemAvailable", info.get("MemFree", 0))
    if not total:  # not Linux: fall back to sysconf
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total = page * os.sysconf("SC_PHYS_PAGES")
            free = page * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = free = 0
    limit = _cgroup_memory_limit()
    if limit is not None and limit < total:
        total, free = limit, min(free, limit)
    model = parse_cpu_model(_read("/proc/cpuinfo")) or platform.processor() or "CPU"
    device = Device(
        id="cpu:0",
        vendor="cpu",
        model=model,
        index=0,
        pin="",
        memory_total=total,
        memory_free=free,
        arch=platform.machine(),
        cores=cores,
        compute_share_supported=True,
        compute_share_reason=(
            "CPU affinity to the cores the acceptor gives a slice, thread pools sized to match"
        ),
    )
    return Probe(vendor="cpu", available=True, devices=(device,), note=f"{cores} cores")
