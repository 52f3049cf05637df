"""Intel XPUs, as torch sees them.

Importing torch costs seconds, so it is done in a short-lived subprocess, and
only when an Intel GPU render node exists (``/sys/class/drm/renderD*/device/vendor``
is 0x8086) and torch is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tether.acceptor._devices._frameworks import _distribution_version
from tether.acceptor._devices._host import _read, _run_python
from tether.acceptor._devices._model import Device, Probe

_XPU_PROBE = """
import json, torch
out = []
xpu = getattr(torch, "xpu", None)
if xpu is not None and xpu.is_available():
    for i in range(xpu.device_count()):
        p = xpu.get_device_properties(i)
        out.append({"index": i, "name": p.name, "total_memory": int(p.total_memory),
                    "uuid": str(getattr(p, "uuid", "") or "")})
print(json.dumps(out))
"""


def _intel_render_nodes(sys_drm: str = "/sys/class/drm") -> list[str]:
    nodes = []
    for vendor in sorted(Path(sys_drm).glob("renderD*/device/vendor")):
        if _read(str(vendor)).strip().lower() == "0x8086":
            nodes.append(vendor.parent.parent.name)
    return nodes


def probe_intel(python: str | None = None) -> Probe:
    """Intel XPUs as torch sees them, probed in a subprocess.

    Skipped (no subprocess) when the host has no Intel render node or torch is
    not installed, so CPU and NVIDIA hosts never pay torch's import for it.
    """
    if not _intel_render_nodes():
        return Probe(vendor="intel", available=False, note="no Intel GPU render node")
    if _distribution_version("torch") is None:
        return Probe(vendor="intel", available=False, note="torch is not installed")
    code, out, err = _run_python(python or sys.executable, _XPU_PROBE)
    if code != 0:
        return Probe(vendor="intel", available=False, note=f"torch.xpu probe failed: {err}")
    try:
        rows = json.loads(out)
    except json.JSONDecodeError:
        return Probe(vendor="intel", available=False, note="torch.xpu probe printed no JSON")
    devices = tuple(
        Device(
            id=f"intel:{row['uuid'] or row['index']}",
            vendor="intel",
            model=str(row["name"]),
            index=int(row["index"]),
            pin=str(row["index"]),
            memory_total=int(row["total_memory"]),
            # torch does not report free memory without allocating a context.
            memory_free=int(row["total_memory"]),
            arch="xpu",
            compute_share_supported=False,
            compute_share_reason="no compute-share mechanism for Intel XPUs",
        )
        for row in rows
    )
    if not devices:
        return Probe(vendor="intel", available=False, note="torch sees no XPU")
    return Probe(vendor="intel", available=True, devices=devices, note=f"{len(devices)} XPU(s)")
