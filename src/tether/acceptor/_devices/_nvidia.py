"""NVIDIA GPUs through NVML (``pynvml``, package ``nvidia-ml-py``).

No library or no driver is the normal case on CPU hosts: the probe then returns
no devices and a note saying why. MIG instances, when enabled, are offered as
devices of their own (pinned by their ``MIG-`` UUID).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tether.acceptor._devices._model import Device, Probe


def mps_pipe_directory(environ: Mapping[str, str] | None = None) -> Path | None:
    """The pipe directory of a running CUDA MPS control daemon, or None.

    The daemon listens on ``<pipe dir>/control``; clients find it through
    ``CUDA_MPS_PIPE_DIRECTORY`` (default ``/tmp/nvidia-mps``).
    """
    env = os.environ if environ is None else environ
    pipe = Path(env.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps")
    return pipe if (pipe / "control").exists() else None


def _nvml_str(value: object) -> str:
    # nvidia-ml-py returns str since 11.5; older bindings returned bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvidia() -> Probe:
    """NVIDIA GPUs (and MIG instances) through NVML.

    Returns ``available=False`` with a note when ``pynvml`` is not installed, the
    NVML library is missing ("no NVIDIA driver") or the driver is not loaded.
    """
    try:
        import pynvml
    except ImportError:
        return Probe(
            vendor="nvidia",
            available=False,
            note="nvidia-ml-py is not installed (pip install nvidia-ml-py)",
        )
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound as exc:
        return Probe(vendor="nvidia", available=False, note=f"no NVIDIA driver: {exc}")
    except pynvml.NVMLError_DriverNotLoaded as exc:
        return Probe(vendor="nvidia", available=False, note=f"NVIDIA driver not loaded: {exc}")
    except pynvml.NVMLError as exc:
        return Probe(vendor="nvidia", available=False, note=f"NVML failed to start: {exc}")
    try:
        driver = _nvml_str(pynvml.nvmlSystemGetDriverVersion())
        mps = mps_pipe_directory()
        if mps is not None:
            share = (True, f"CUDA MPS daemon at {mps}: active-thread percentage")
        else:
            share = (
                False,
                "no CUDA MPS daemon running (start `nvidia-cuda-mps-control -d` to enforce "
                "compute shares)",
            )
        devices: list[Device] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            devices.extend(_nvidia_devices(pynvml, handle, index, share))
        note = f"{len(devices)} device(s), driver {driver}"
        return Probe(
            vendor="nvidia", available=True, devices=tuple(devices), note=note, driver=driver
        )
    except pynvml.NVMLError as exc:
        return Probe(vendor="nvidia", available=False, note=f"NVML query failed: {exc}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _nvidia_devices(pynvml: Any, handle: Any, index: int, share: tuple[bool, str]) -> list[Device]:
    name = _nvml_str(pynvml.nvmlDeviceGetName(handle))
    uuid = _nvml_str(pynvml.nvmlDeviceGetUUID(handle))
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    arch = f"sm_{major}{minor}"
    try:
        current_mig, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # not MIG-capable
        current_mig = 0
    if current_mig == pynvml.NVML_DEVICE_MIG_ENABLE:
        migs: list[Device] = []
        for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError:  # empty slot
                continue
            mig_uuid = _nvml_str(pynvml.nvmlDeviceGetUUID(mig))
            mem = pynvml.nvmlDeviceGetMemoryInfo(mig)
            migs.append(
                Device(
                    id=f"nvidia:{mig_uuid}",
                    vendor="nvidia",
                    model=f"{name} MIG {slot}",
                    index=index,
                    pin=mig_uuid,
                    memory_total=int(mem.total),
                    memory_free=int(mem.free),
                    arch=arch,
                    compute_share_supported=False,
                    compute_share_reason="a MIG instance is its own compute partition",
                )
            )
        return migs
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        cores: int | None = int(pynvml.nvmlDeviceGetNumGpuCores(handle))
    except (pynvml.NVMLError, AttributeError):
        cores = None
    return [
        Device(
            id=f"nvidia:{uuid}",
            vendor="nvidia",
            model=name,
            index=index,
            pin=uuid,
            memory_total=int(mem.total),
            memory_free=int(mem.free),
            arch=arch,
            cores=cores,
            compute_share_supported=share[0],
            compute_share_reason=share[1],
        )
    ]
