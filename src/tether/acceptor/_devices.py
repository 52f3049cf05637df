"""Device discovery: what this host can offer to sessions.

Theory of operation
-------------------
:func:`discover` asks each vendor's own management library, one probe per
vendor, and never lets one vendor's failure hide another's devices:

* **CPU** -- always present: cores from the scheduler affinity, memory from
  ``/proc/meminfo`` (capped by a cgroup v2 ``memory.max`` when the acceptor runs
  in a container), model from ``/proc/cpuinfo``.
* **NVIDIA** -- NVML through ``pynvml`` (package ``nvidia-ml-py``). No library or
  no driver is the normal case on CPU hosts: the probe returns no devices and a
  note saying why. MIG instances, when enabled, are offered as devices of their
  own (pinned by their ``MIG-`` UUID).
* **AMD** -- the ``amdsmi`` Python library when importable, else the
  ``rocm-smi --json`` command line tool.
* **Intel** -- XPUs as torch sees them. Importing torch costs seconds, so it is
  done in a short-lived subprocess, only when an Intel GPU render node exists
  (``/sys/class/drm/renderD*/device/vendor`` is 0x8086) and torch is installed.

Each probe returns a :class:`Probe`: its devices plus a one-line note for the
operator ("no NVIDIA driver: ..."). Parsers of tool output are pure functions so
they can be tested without the hardware.

Frameworks (:func:`discover_frameworks`) are found with ``importlib.metadata``
(no import) and their builds (CUDA / ROCm / XPU / CPU) with one subprocess per
framework under a timeout; the result is cached per interpreter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether._errors import TetherError

__all__ = [
    "Device",
    "DeviceFilterError",
    "Discovery",
    "Framework",
    "Probe",
    "discover",
    "discover_devices",
    "discover_frameworks",
    "filter_devices",
    "frameworks_for",
    "mps_pipe_directory",
    "parse_device_filter",
]

VENDORS: tuple[str, ...] = ("cpu", "nvidia", "amd", "intel")

# NVML, amdsmi and the torch probe each talk to a driver; none of them should be
# able to stall an acceptor's start-up for long.
PROBE_TIMEOUT_S = 20.0


class DeviceFilterError(TetherError, ValueError):
    """A ``--devices`` filter is malformed or names a device this host lacks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One device this host can offer.

    ``id`` is stable across restarts of the acceptor: ``cpu:0``,
    ``nvidia:GPU-<uuid>`` (or ``nvidia:MIG-<uuid>``), ``amd:<uuid or PCI
    address>``, ``intel:<index>``. ``index`` is the vendor-local ordinal and
    ``pin`` the value a worker puts in the vendor's visibility variable
    (``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``, ``ZE_AFFINITY_MASK``) to
    see this device alone. Memory is in bytes; ``memory_free`` is a snapshot.
    """

    id: str
    vendor: str
    model: str
    index: int
    pin: str
    memory_total: int
    memory_free: int
    arch: str = ""
    cores: int | None = None
    compute_share_supported: bool = False
    compute_share_reason: str = ""

    def __post_init__(self) -> None:
        if self.vendor not in VENDORS:
            raise ValueError(f"unknown vendor {self.vendor!r}; expected one of {VENDORS}")
        if self.memory_total < 0 or self.memory_free < 0:
            raise ValueError("device memory cannot be negative")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Device:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """What one vendor's probe found: its devices, and a note for the operator.

    ``available`` is False when the vendor's library or driver is missing; the
    note then says which, e.g. ``"no NVIDIA driver: NVML Shared Library Not
    Found"``.
    """

    vendor: str
    available: bool
    devices: tuple[Device, ...] = ()
    note: str = ""
    driver: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Framework:
    """A framework importable on this host.

    ``build`` names the accelerator it was built for: ``"cuda 12.8"``,
    ``"rocm 6.4"``, ``"xpu"``, ``"cpu"``, or ``""`` when the probe could not tell
    (then ``detail`` says why).
    """

    name: str
    version: str
    build: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    """Everything :func:`discover` found: devices, per-vendor probes, frameworks."""

    devices: tuple[Device, ...]
    probes: tuple[Probe, ...]
    frameworks: tuple[Framework, ...] = field(default=())

    def probe(self, vendor: str) -> Probe:
        for p in self.probes:
            if p.vendor == vendor:
                return p
        raise KeyError(vendor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": [d.to_dict() for d in self.devices],
            "probes": [
                {"vendor": p.vendor, "available": p.available, "note": p.note, "driver": p.driver}
                for p in self.probes
            ],
            "frameworks": [f.to_dict() for f in self.frameworks],
        }


# --------------------------------------------------------------------------- CPU


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


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
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


# ----------------------------------------------------------------------- NVIDIA


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


# -------------------------------------------------------------------------- AMD

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


# ------------------------------------------------------------------------ Intel

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


# ------------------------------------------------------------------- frameworks

# name shown -> distributions that provide it (first installed wins).
_FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-rocm", "tf-nightly"),
    "numpy": ("numpy",),
    "cupy": ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-rocm-5-0"),
}

# Each prints one JSON object {"build": ..., "detail": ...}. They import the
# framework but touch no device (JAX would pre-allocate GPU memory if asked for
# its backend, so its build is read from its plugin packages instead).
_BUILD_PROBES: dict[str, str] = {
    "torch": """
import json, torch
v = torch.version
if getattr(v, "hip", None): b = "rocm " + v.hip
elif getattr(v, "cuda", None): b = "cuda " + v.cuda
elif getattr(v, "xpu", None): b = "xpu " + str(v.xpu)
else: b = "cpu"
print(json.dumps({"build": b, "detail": ""}))
""",
    "tensorflow": """
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
i = tf.sysconfig.get_build_info()
if i.get("is_rocm_build"): b = "rocm " + str(i.get("rocm_version", ""))
elif i.get("is_cuda_build"): b = "cuda " + str(i.get("cuda_version", ""))
else: b = "cpu"
print(json.dumps({"build": b.strip(), "detail": ""}))
""",
    "numpy": """
import json, numpy
try:
    blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
except Exception:
    blas = ""
print(json.dumps({"build": "cpu", "detail": ("blas " + blas) if blas else ""}))
""",
    "cupy": """
import json, cupy
v = cupy.cuda.runtime.runtimeGetVersion()
b = ("rocm " if cupy.cuda.runtime.is_hip else "cuda ") + str(v)
print(json.dumps({"build": b, "detail": ""}))
""",
}


def _distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _jax_build() -> tuple[str, str]:
    plugins = [
        d
        for d in ("jax-cuda13-plugin", "jax-cuda12-plugin", "jax-rocm7-plugin", "jax-rocm60-plugin")
        if _distribution_version(d) is not None
    ]
    if not plugins:
        return "cpu", "no accelerator plugin installed"
    return plugins[0].removeprefix("jax-").removesuffix("-plugin"), ", ".join(plugins)


def _run_python(python: str, code: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[int, str, str]:
    """Run ``python -c code``: (exit code, stdout, last line of stderr)."""
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # A build probe must not grab GPUs the host's sessions are using.
            env={**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")},
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:g} s"
    except OSError as exc:
        return 127, "", str(exc)
    lines = done.stderr.strip().splitlines()
    return done.returncode, done.stdout.strip(), lines[-1] if lines else ""


def _probe_build(python: str, name: str, timeout: float) -> tuple[str, str]:
    if name == "jax":
        return _jax_build()
    code = _BUILD_PROBES.get(name)
    if code is None:
        return "", ""
    rc, out, err = _run_python(python, code, timeout)
    if rc != 0:
        return "", f"build probe failed: {err or f'exit {rc}'}"
    try:
        row = json.loads(out.splitlines()[-1])
        return str(row.get("build", "")), str(row.get("detail", ""))
    except (json.JSONDecodeError, IndexError, AttributeError):
        return "", "build probe printed no JSON"


@functools.lru_cache(maxsize=8)
def discover_frameworks(
    python: str | None = None,
    *,
    names: tuple[str, ...] | None = None,
    timeout: float = PROBE_TIMEOUT_S,
) -> tuple[Framework, ...]:
    """The frameworks importable by ``python`` (default: this interpreter).

    Versions come from package metadata (no import). Builds come from one short
    subprocess per framework, started together and each bounded by
    ``timeout`` seconds; a probe that fails or times out leaves ``build`` empty
    and says why in ``detail``. Cached per argument set: call
    ``discover_frameworks.cache_clear()`` after installing packages.

    Versions are read from *this* interpreter's metadata; pass ``python`` only
    for the interpreter the acceptor itself runs (the worker's).
    """
    python = python or sys.executable
    wanted = names or tuple(_FRAMEWORKS)
    found = [(n, _distribution_version(*_FRAMEWORKS.get(n, (n,)))) for n in wanted]
    installed = [(n, v) for n, v in found if v is not None]
    # Thread per probe: the subprocesses run side by side, so the slowest
    # framework import bounds the total instead of the sum of them.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(installed))) as pool:
        builds = list(pool.map(lambda nv: _probe_build(python, nv[0], timeout), installed))
    return tuple(
        Framework(name=n, version=v, build=b, detail=d)
        for (n, v), (b, d) in zip(installed, builds, strict=True)
    )


def frameworks_for(device: Device, frameworks: Iterable[Framework]) -> tuple[Framework, ...]:
    """The frameworks whose build can drive ``device``.

    Every framework runs on the CPU; a GPU needs a matching build: ``cuda`` for
    NVIDIA, ``rocm`` for AMD, ``xpu`` for Intel. A framework whose build could
    not be probed is listed for the CPU only.
    """
    prefix = {"nvidia": "cuda", "amd": "rocm", "intel": "xpu"}.get(device.vendor)
    if prefix is None:
        return tuple(frameworks)
    return tuple(f for f in frameworks if f.build.startswith(prefix))


# ---------------------------------------------------------------------- discover


def discover(
    *,
    vendors: Iterable[str] = VENDORS,
    frameworks: bool = False,
    python: str | None = None,
) -> Discovery:
    """Probe each of ``vendors`` and return what was found.

    Never raises for missing hardware, libraries or drivers: those give a probe
    with ``available=False`` and a note. ``frameworks=True`` also runs
    :func:`discover_frameworks` (cached). Devices come CPU first, then by vendor
    and index.
    """
    wanted = tuple(vendors)
    unknown = sorted(set(wanted) - set(VENDORS))
    if unknown:
        raise ValueError(f"unknown vendor(s) {unknown}; expected some of {VENDORS}")
    runners: dict[str, Callable[[], Probe]] = {
        "cpu": probe_cpu,
        "nvidia": probe_nvidia,
        "amd": probe_amd,
        "intel": lambda: probe_intel(python),
    }
    probes = tuple(runners[v]() for v in VENDORS if v in wanted)
    devices = tuple(d for p in probes for d in p.devices)
    found = discover_frameworks(python) if frameworks else ()
    return Discovery(devices=devices, probes=probes, frameworks=found)


def discover_devices(*, vendors: Iterable[str] = VENDORS) -> list[Device]:
    """The devices of :func:`discover`, without the notes."""
    return list(discover(vendors=vendors).devices)


# ------------------------------------------------------------------------ filter


@dataclass(frozen=True, slots=True)
class _Selector:
    vendor: str
    key: str | None  # None: every device of the vendor; digits: index; else id suffix


def parse_device_filter(text: str) -> tuple[_Selector, ...]:
    """Parse a ``--devices`` value such as ``"cpu:0,nvidia:0"``.

    Each comma-separated item is ``VENDOR`` (all of that vendor's devices),
    ``VENDOR:INDEX`` or a full device id (``nvidia:GPU-8f3...``). ``all`` or an
    empty string select everything. Raises :class:`DeviceFilterError` for an
    unknown vendor or an empty item.
    """
    items = [i.strip() for i in text.split(",")]
    if text.strip() in ("", "all"):
        return ()
    selectors = []
    for item in items:
        if not item:
            raise DeviceFilterError(f"empty item in --devices {text!r}")
        vendor, sep, key = item.partition(":")
        vendor = vendor.lower()
        if vendor not in VENDORS:
            raise DeviceFilterError(
                f"unknown vendor {vendor!r} in --devices item {item!r}; "
                f"use one of {', '.join(VENDORS)}"
            )
        if sep and not key:
            raise DeviceFilterError(f"--devices item {item!r} has no index or id after ':'")
        selectors.append(_Selector(vendor, key or None))
    return tuple(selectors)


def filter_devices(devices: Sequence[Device], spec: str) -> list[Device]:
    """The devices that ``spec`` (a ``--devices`` value) selects, in host order.

    Raises :class:`DeviceFilterError` when an item selects nothing, naming the
    devices the host does have, so a typo never silently offers nothing.
    """
    selectors = parse_device_filter(spec)
    if not selectors:
        return list(devices)
    chosen: set[str] = set()
    for sel in selectors:
        hits = [d.id for d in devices if _matches(sel, d)]
        if not hits:
            have = ", ".join(d.id for d in devices) or "none"
            label = sel.vendor + (f":{sel.key}" if sel.key else "")
            raise DeviceFilterError(f"--devices {label!r} matches no device here (have: {have})")
        chosen.update(hits)
    return [d for d in devices if d.id in chosen]


def _matches(sel: _Selector, device: Device) -> bool:
    if device.vendor != sel.vendor:
        return False
    if sel.key is None:
        return True
    if sel.key.isdigit():
        return device.index == int(sel.key)
    return device.id == f"{sel.vendor}:{sel.key}" or device.pin == sel.key
