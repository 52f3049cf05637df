"""``tether devices`` finds every NVIDIA GPU that NVML reports, with its memory."""

from __future__ import annotations

import json
import subprocess
import sys


def test_devices_lists_what_nvml_reports() -> None:
    import pynvml

    pynvml.nvmlInit()
    try:
        expected = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            expected[uuid] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    finally:
        pynvml.nvmlShutdown()
    out = subprocess.run(
        [sys.executable, "-m", "tether", "devices", "--json", "--devices", "nvidia"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = [d for d in json.loads(out.stdout)["devices"] if d["vendor"] == "nvidia"]
    assert len(found) == len(expected), out.stdout
    for device in found:
        matches = [u for u in expected if u in device["id"] or u in device.get("pin", "")]
        assert matches, f"{device['id']} is none of NVML's {sorted(expected)}"
        assert device["memory_total"] == expected[matches[0]], device
        assert "torch" in device["frameworks"], device
