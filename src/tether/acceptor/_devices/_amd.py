"""AMD GPUs: the ``amdsmi`` Python library when importable, else ``rocm-smi --json``.

The ``rocm-smi`` output parser is a pure function, tested without the hardware.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import shutil
import subprocess
from typing import Any

from tether.acceptor._devices._model import PROBE_TIMEOUT_S, Device, Probe

_AMD_SHARE_REASON = "no compute-share mechanism used for AMD GPUs (memory limit only)"


def probe_amd() -> Probe:
    """AMD GPUs through ``amdsmi``, else ``rocm-smi --json``, else none."""
    if importlib.util.find_spec("amdsmi") is not None:
        return _probe_amdsmi()
    tool = shutil.which("rocm-smi")
    if tool is None:
        return Probe(vendor="amd", available=False, note="neither amdsmi nor rocm-smi found")
    try:
        done = subprocess.run(
            [tool, "--showproductname", "--showmeminfo", "vram", "--showuniqueid", "--json"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(vendor="amd", available=False, note=f"rocm-smi failed: {exc}")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return Probe(vendor="amd", available=False, note=f"rocm-smi failed: {tail[0]}")
    try:
        devices = parse_rocm_smi_json(done.stdout)
    except ValueError as exc:
        return Probe(vendor="amd", available=False, note=f"rocm-smi output not understood: {exc}")
    return Probe(
        vendor="amd", available=True, devices=devices, note=f"{len(devices)} device(s) (rocm-smi)"
    )


def parse_rocm_smi_json(text: str) -> tuple[Device, ...]:
    """Devices from ``rocm-smi --showproductname --showmeminfo vram --showuniqueid --json``.

    The output maps ``"card0"``... to dictionaries whose keys vary a little
    between ROCm releases; unknown or missing fields degrade to empty values.
    Raises ``ValueError`` when the text is not such a JSON object.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of cards")
    devices = []
    for key in sorted(data, key=lambda k: (len(k), k)):
        card = data[key]
        if not key.startswith("card") or not key[4:].isdigit() or not isinstance(card, dict):
            continue  # e.g. the "system" entry
        index = int(key[4:])
        total = _int_or_zero(card.get("VRAM Total Memory (B)"))
        used = _int_or_zero(card.get("VRAM Total Used Memory (B)"))
        model = str(
            card.get("Card Series") or card.get("Card series") or card.get("Card SKU") or "AMD GPU"
        )
        unique = str(card.get("Unique ID") or "").strip()
        arch = str(card.get("GFX Version") or "")
        devices.append(
            Device(
                id=f"amd:{unique}" if unique and unique != "N/A" else f"amd:{index}",
                vendor="amd",
                model=model,
                index=index,
                pin=str(index),
                memory_total=total,
                memory_free=max(total - used, 0),
                arch=arch,
                compute_share_supported=False,
                compute_share_reason=_AMD_SHARE_REASON,
            )
        )
    return tuple(devices)


def _int_or_zero(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def _probe_amdsmi() -> Probe:
    # Imported by name: amdsmi ships no type stubs and is absent on most hosts.
    amdsmi: Any = importlib.import_module("amdsmi")
    try:
        amdsmi.amdsmi_init()
    except Exception as exc:  # AmdSmiException: no driver or no permission
        return Probe(vendor="amd", available=False, note=f"amdsmi failed to start: {exc}")
    try:
        devices = []
        vram = amdsmi.AmdSmiMemoryType.VRAM
        for index, handle in enumerate(amdsmi.amdsmi_get_processor_handles()):
            asic = amdsmi.amdsmi_get_gpu_asic_info(handle)
            uuid = str(amdsmi.amdsmi_get_gpu_device_uuid(handle))
            total = int(amdsmi.amdsmi_get_gpu_memory_total(handle, vram))
            used = int(amdsmi.amdsmi_get_gpu_memory_usage(handle, vram))
            cus = asic.get("num_of_compute_units")
            devices.append(
                Device(
                    id=f"amd:{uuid}",
                    vendor="amd",
                    model=str(asic.get("market_name") or "AMD GPU"),
                    index=index,
                    pin=str(index),
                    memory_total=total,
                    memory_free=max(total - used, 0),
                    arch=str(asic.get("target_graphics_version") or ""),
                    cores=int(cus) if isinstance(cus, int) else None,
                    compute_share_supported=False,
                    compute_share_reason=_AMD_SHARE_REASON,
                )
            )
        return Probe(
            vendor="amd",
            available=True,
            devices=tuple(devices),
            note=f"{len(devices)} device(s) (amdsmi)",
        )
    except Exception as exc:  # AmdSmiException and friends
        return Probe(vendor="amd", available=False, note=f"amdsmi query failed: {exc}")
    finally:
        # Shutting down a half-started library is best effort.
        with contextlib.suppress(Exception):
            amdsmi.amdsmi_shut_down()
