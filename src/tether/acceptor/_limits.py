"""Slice enforcement inside a worker process.

Theory of operation
-------------------
The acceptor decides a session's slice (:class:`SliceLimits`) and hands it to
the worker in one environment variable, ``TETHER_SLICE`` (JSON). The worker
calls :func:`apply_slice` first thing, before any user code and before any
framework is imported; from then on the process holds itself to the slice:

* **Device visibility** -- the vendor's variable names the slice's devices and
  no others, comma-separated in the slice's order, so the framework's device 0
  is the slice's first (``CUDA_VISIBLE_DEVICES=<GPU uuid>,...`` with
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, ``HIP_VISIBLE_DEVICES=<index>,...``,
  ``ZE_AFFINITY_MASK=<index>,...``); a CPU slice hides every GPU. These are read
  when the runtime initialises, so they must be set before the framework first
  touches the device.
* **CPU memory** -- ``setrlimit(RLIMIT_DATA)``, soft and hard, to the slice's
  limit plus headroom for the interpreter, the framework's own data and its
  threads' stacks (:func:`cpu_headroom`). RLIMIT_DATA counts private writable
  mappings (Linux >= 4.7) -- what malloc hands out -- and not the framework's
  shared libraries, so torch still imports under a small limit (under
  RLIMIT_AS, libtorch alone takes ~600 MiB of address space and a 300 MiB
  limit breaks ``import torch``). An allocation past the limit fails with
  ENOMEM, which the frameworks turn into their ordinary errors: numpy's
  ``MemoryError`` (``_ArrayMemoryError``), torch's ``RuntimeError:
  DefaultCPUAllocator: can't allocate memory``, Python's ``MemoryError``.
* **GPU memory (torch)** -- ``set_per_process_memory_fraction`` on the caching
  allocator (``torch.cuda`` for CUDA and ROCm, ``torch.xpu`` for Intel), on
  each of the slice's devices (the memory limit is per device). It
  needs torch, and calling it would initialise the device, so it is queued with
  torch's own ``_lazy_call`` (the mechanism behind ``torch.cuda.manual_seed``)
  and runs when the script first uses the device. A post-import hook on
  ``sys.meta_path`` queues it the moment ``torch`` finishes importing; the
  worker does not have to do anything else.
* **Compute share** -- on NVIDIA with an MPS control daemon up,
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``; on the CPU, affinity to the slice's
  cores and thread pools (OpenMP, MKL, OpenBLAS) sized to them. Elsewhere it is
  recorded as not enforced, with the reason.

Everything applied, and everything not, is returned as an :class:`Enforcement`
record for the worker to log and the acceptor to report.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import json
import math
import os
import platform
import re
import resource
import sys
import threading
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tether._errors import TetherError
from tether.acceptor._devices import VENDORS, Device, mps_pipe_directory

__all__ = [
    "SLICE_ENV",
    "Enforcement",
    "SliceError",
    "SliceLimits",
    "apply_slice",
    "apply_slice_env",
    "cpu_headroom",
    "current_enforcement",
    "limit_torch",
]

SLICE_ENV = "TETHER_SLICE"

MiB = 1 << 20

# What a worker needs beyond the session's own data, measured on CPython 3.11
# (private writable memory, VmData): the bare interpreter ~4 MiB, + numpy ~85
# MiB (OpenBLAS buffers), + torch ~130 MiB, + Tether's worker and cloudpickle.
# 384 MiB covers all of them with room to spare.
BASE_HEADROOM = 384 * MiB
# Every thread's stack is a private writable mapping (glibc sizes it from
# RLIMIT_STACK, 8 MiB by default) and counts against RLIMIT_DATA. Allow two per
# compute thread (OpenMP + interop pools) and 16 more for Python threads.
EXTRA_THREADS = 16

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class SliceError(TetherError, ValueError):
    """A slice is malformed, or cannot be applied to this process."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceLimits:
    """What one session may use of its devices: one, or several of one vendor.

    ``device_ids`` are the devices in the order the worker numbers them (its
    device 0 is the first); ``pins`` are their values for the vendor's
    visibility variable (:attr:`tether.acceptor._devices.Device.pin`), in the
    same order, and empty for the CPU. ``memory_limit`` is in bytes per device
    (None: no limit). ``compute_share`` is in (0, 1] (None: the whole device).
    ``cpus`` are the host cores the worker is pinned to (empty: no pinning; for a
    CPU slice with a ``compute_share`` the acceptor should name them, since only
    it knows which cores other sessions hold). ``headroom`` overrides
    :func:`cpu_headroom` for CPU slices.
    """

    device_ids: tuple[str, ...] = ("cpu:0",)
    vendor: str = "cpu"
    pins: tuple[str, ...] = ()
    memory_limit: int | None = None
    compute_share: float | None = None
    cpus: tuple[int, ...] = ()
    headroom: int | None = None

    def __post_init__(self) -> None:
        if self.vendor not in VENDORS:
            raise SliceError(f"slice vendor {self.vendor!r} is not one of {', '.join(VENDORS)}")
        if (
            not self.device_ids
            or not all(isinstance(d, str) and d for d in self.device_ids)
            or len(set(self.device_ids)) != len(self.device_ids)
        ):
            raise SliceError(f"device_ids must be distinct device ids, not {self.device_ids!r}")
        if not all(isinstance(p, str) and p and "," not in p for p in self.pins):
            raise SliceError(f"pins must be visibility values without commas, not {self.pins!r}")
        if self.vendor == "cpu":
            if self.pins or len(self.device_ids) != 1:
                raise SliceError("a cpu slice is one device and has no pins")
        elif len(self.pins) != len(self.device_ids):
            raise SliceError(
                f"a {self.vendor} slice needs each device's pin (uuid or index): "
                f"{len(self.device_ids)} device(s), {len(self.pins)} pin(s)"
            )
        if self.memory_limit is not None and (
            not isinstance(self.memory_limit, int)
            or isinstance(self.memory_limit, bool)
            or self.memory_limit <= 0
        ):
            raise SliceError(
                f"memory_limit must be a positive byte count, not {self.memory_limit!r}"
            )
        if self.compute_share is not None and not 0 < self.compute_share <= 1:
            raise SliceError(f"compute_share must be in (0, 1], not {self.compute_share!r}")
        if any(not isinstance(c, int) or c < 0 for c in self.cpus):
            raise SliceError(f"cpus must be core numbers, not {self.cpus!r}")
        if self.headroom is not None and self.headroom < 0:
            raise SliceError("headroom cannot be negative")

    @property
    def device_id(self) -> str:
        """The first device: the worker's device 0."""
        return self.device_ids[0]

    @classmethod
    def for_device(
        cls,
        device: Device,
        *,
        memory_limit: int | None = None,
        compute_share: float | None = None,
        cpus: Sequence[int] = (),
    ) -> SliceLimits:
        """The slice of ``device`` with the given limits."""
        return cls.for_devices(
            [device], memory_limit=memory_limit, compute_share=compute_share, cpus=cpus
        )

    @classmethod
    def for_devices(
        cls,
        devices: Sequence[Device],
        *,
        memory_limit: int | None = None,
        compute_share: float | None = None,
        cpus: Sequence[int] = (),
    ) -> SliceLimits:
        """The slice of ``devices``, in their order, with limits per device.

        The worker always runs on the host's CPU, so the CPU device in a list
        with GPUs adds nothing and is left out. Raises :class:`SliceError` for
        no devices, or GPUs of several vendors: one worker's framework drives
        one vendor's devices.
        """
        gpus = [d for d in devices if d.vendor != "cpu"]
        chosen = gpus or list(devices)
        if not chosen:
            raise SliceError("a slice needs at least one device")
        vendors = sorted({d.vendor for d in chosen})
        if len(vendors) > 1:
            raise SliceError(
                f"a slice cannot span devices of several vendors ({', '.join(vendors)}): "
                "a worker drives one vendor's devices; ask for devices of one vendor"
            )
        return cls(
            device_ids=tuple(d.id for d in chosen),
            vendor=vendors[0],
            pins=tuple(d.pin for d in chosen) if vendors[0] != "cpu" else (),
            memory_limit=memory_limit,
            compute_share=compute_share,
            cpus=tuple(cpus),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SliceLimits:
        """Parse :meth:`to_json` output; raises :class:`SliceError` on anything else."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SliceError(f"{SLICE_ENV} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SliceError(f"{SLICE_ENV} must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SliceError(f"{SLICE_ENV} has unknown field(s) {unknown}")
        for name, what in (("cpus", "core numbers"), ("device_ids", "ids"), ("pins", "pins")):
            if name in data:
                if not isinstance(data[name], list):
                    raise SliceError(f"{name} must be a list of {what}")
                data[name] = tuple(data[name])
        try:
            return cls(**data)
        except TypeError as exc:
            raise SliceError(f"{SLICE_ENV} is malformed: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The environment entry that carries this slice to a worker."""
        return {SLICE_ENV: self.to_json()}

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> SliceLimits | None:
        """The slice in ``TETHER_SLICE``, or None when the variable is unset."""
        raw = (os.environ if environ is None else environ).get(SLICE_ENV)
        return None if raw is None else cls.from_json(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Enforcement:
    """What :func:`apply_slice` did, for logs and for ``tether devices``.

    ``env`` lists the variables it set (a value of None: removed).
    ``rlimit`` is ``(name, bytes)`` when a process memory limit was set.
    """

    slice: SliceLimits
    env: tuple[tuple[str, str | None], ...]
    memory_enforced: bool
    memory: str
    compute_enforced: bool
    compute: str
    rlimit: tuple[str, int] | None = None


# ------------------------------------------------------------------- pure parts


def threads_for(slice: SliceLimits, host_cores: int) -> int:
    """How many compute threads a slice's frameworks should run."""
    if slice.cpus:
        return len(slice.cpus)
    if slice.vendor == "cpu" and slice.compute_share is not None:
        return max(1, math.ceil(slice.compute_share * host_cores))
    return max(1, host_cores)


def cpu_headroom(threads: int, stack_size: int = 8 * MiB) -> int:
    """Bytes a CPU worker may use beyond its slice's memory limit.

    Covers the interpreter, the framework's own data (:data:`BASE_HEADROOM`,
    more for a GPU build of torch: :func:`framework_allowance`) and the stacks
    of ``2 * threads + EXTRA_THREADS`` threads of ``stack_size`` bytes each,
    since RLIMIT_DATA counts those too.
    """
    return BASE_HEADROOM + framework_allowance() + stack_size * (2 * threads + EXTRA_THREADS)


#: The extra private data a CUDA build of torch holds once imported, even on a
#: host without a GPU (measured: 831 MiB of VmData after import, against 283 MiB
#: for the CPU build, torch 2.13).
GPU_BUILD_ALLOWANCE = 640 * MiB


def framework_allowance() -> int:
    """Extra headroom for the installed framework build: a CUDA or ROCm build of
    torch (the one PyPI serves on Linux) carries its libraries' data even when it
    only ever runs on the CPU. Read from the distribution's metadata, without
    importing torch."""
    import importlib.metadata

    try:
        requires = importlib.metadata.requires("torch") or []
    except importlib.metadata.PackageNotFoundError:
        return 0
    gpu = any(r.lower().startswith(("nvidia-", "cuda-", "triton")) for r in requires)
    return GPU_BUILD_ALLOWANCE if gpu else 0


def visibility_env(slice: SliceLimits) -> dict[str, str | None]:
    """The visibility variables that show a worker its slice's devices and no others.

    Several devices are listed comma-separated in the slice's order, so the
    framework's device ``i`` is the slice's ``i``-th. A value of None means
    "remove the variable".
    """
    pins = ",".join(slice.pins)
    if slice.vendor == "nvidia":
        # NVML numbers GPUs in PCI order, CUDA fastest-first by default: pin by
        # UUID and ask for PCI order so an index can never pick another GPU.
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": pins}
    if slice.vendor == "amd":
        # HIP also honours CUDA_VISIBLE_DEVICES, re-indexing on top of HIP's.
        return {"HIP_VISIBLE_DEVICES": pins, "CUDA_VISIBLE_DEVICES": None}
    # -1 is an invalid ordinal: CUDA and HIP enumerate no device at all.
    hidden: dict[str, str | None] = {"CUDA_VISIBLE_DEVICES": "-1", "HIP_VISIBLE_DEVICES": "-1"}
    if slice.vendor == "intel":
        hidden["ZE_AFFINITY_MASK"] = pins
    return hidden


def mps_thread_percentage(share: float) -> str:
    """``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` for a compute share in (0, 1]."""
    return str(min(100, max(1, math.ceil(share * 100))))


def kernel_counts_mmap_in_rlimit_data(release: str) -> bool:
    """Whether this Linux release charges mmap'd memory to RLIMIT_DATA (>= 4.7)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m is None:
        return False
    return (int(m[1]), int(m[2])) >= (4, 7)


# ------------------------------------------------------------------ apply_slice

_lock = threading.Lock()
_current: Enforcement | None = None
_torch_state: dict[str, Any] = {}


def current_enforcement() -> Enforcement | None:
    """The record of the last :func:`apply_slice` in this process, if any."""
    return _current


def apply_slice(
    slice: SliceLimits, *, environ: MutableMapping[str, str] | None = None
) -> Enforcement:
    """Hold this process to ``slice``; call once, before user code runs.

    Sets the visibility and thread variables in ``environ`` (default
    ``os.environ``), sets RLIMIT_DATA for a CPU slice with a memory limit, pins
    the CPU affinity when the slice names cores, and arranges for torch's
    device allocator to be limited when torch is imported (see
    :func:`limit_torch`).

    Raises :class:`SliceError` when it is too late (torch has already
    initialised its GPU runtime, so visibility can no longer change) or when the
    limit cannot be set. Calling it again with another slice is refused for the
    same reason: a lowered hard limit cannot be raised again.
    """
    global _current
    with _lock:
        if _current is not None:
            if _current.slice == slice:
                return _current
            raise SliceError("this process already applied a different slice")
        _refuse_if_device_initialised()
        env = os.environ if environ is None else environ
        host_cores = _host_cores()
        changes: dict[str, str | None] = dict(visibility_env(slice))
        threads = threads_for(slice, host_cores)
        if slice.vendor == "cpu" or slice.cpus:
            changes.update({name: str(threads) for name in _THREAD_VARIABLES})

        compute_enforced, compute = _compute_share(slice, changes, env)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if slice.cpus:
            try:
                os.sched_setaffinity(0, slice.cpus)
            except (OSError, AttributeError) as exc:
                raise SliceError(f"cannot pin to cores {list(slice.cpus)}: {exc}") from exc

        rlimit = None
        if slice.memory_limit is None:
            memory_enforced, memory = False, "no memory limit in this slice"
        elif slice.vendor == "cpu":
            rlimit = _set_cpu_limit(slice, threads)
            memory_enforced = True
            memory = (
                f"{rlimit[0]} {rlimit[1] / MiB:.0f} MiB "
                f"(slice {slice.memory_limit / MiB:.0f} MiB + headroom for interpreter, "
                "framework and thread stacks)"
            )
        else:
            _torch_state.clear()
            _install_post_import("torch", _on_torch_import)
            memory_enforced = True
            backend = "torch.xpu" if slice.vendor == "intel" else "torch.cuda"
            each = " on each of its devices" if len(slice.device_ids) > 1 else ""
            memory = (
                f"{backend} per-process memory fraction for {slice.memory_limit / MiB:.0f} MiB"
                f"{each}, applied when torch initialises the device; other frameworks are "
                "not limited"
            )
        _current = Enforcement(
            slice=slice,
            env=tuple(sorted(changes.items())),
            memory_enforced=memory_enforced,
            memory=memory,
            compute_enforced=compute_enforced,
            compute=compute,
            rlimit=rlimit,
        )
        if "torch" in sys.modules and slice.vendor != "cpu" and slice.memory_limit:
            limit_torch(sys.modules["torch"])
        return _current


def apply_slice_env(text: str | None = None) -> Enforcement | None:
    """Apply the slice a worker was started with; the worker's one call.

    ``text`` is the JSON of ``TETHER_SLICE`` (default: read it from the
    environment). Returns None, doing nothing, when there is no slice. Raises
    :class:`SliceError` for a malformed slice or one that cannot be applied:
    the worker should then exit rather than run the session unlimited.
    """
    if text is None:
        text = os.environ.get(SLICE_ENV)
    if not text:
        return None
    return apply_slice(SliceLimits.from_json(text))


def _host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _refuse_if_device_initialised() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for backend in ("cuda", "xpu"):
        mod = getattr(torch, backend, None)
        is_init = getattr(mod, "is_initialized", None)
        if callable(is_init) and is_init():
            raise SliceError(
                f"torch.{backend} is already initialised in this process; "
                "apply_slice must run before any user code touches the device"
            )


def _compute_share(
    slice: SliceLimits, changes: dict[str, str | None], env: MutableMapping[str, str]
) -> tuple[bool, str]:
    share = slice.compute_share
    if slice.vendor == "cpu":
        if slice.cpus:
            return True, f"pinned to cores {list(slice.cpus)}"
        if share is None:
            return True, "whole CPU"
        return False, (
            f"thread pools capped to {changes.get('OMP_NUM_THREADS')} threads; "
            "no cores assigned, so the share is not enforced"
        )
    if share is None or share >= 1:
        return True, "whole device"
    if slice.vendor == "nvidia":
        pipe = mps_pipe_directory(env)
        if pipe is None:
            return False, "no CUDA MPS daemon on this host: compute share not enforced"
        changes["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = mps_thread_percentage(share)
        changes["CUDA_MPS_PIPE_DIRECTORY"] = str(pipe)
        return True, f"CUDA MPS active-thread percentage {mps_thread_percentage(share)}"
    return False, f"no compute-share mechanism for {slice.vendor} devices: not enforced"


def _set_cpu_limit(slice: SliceLimits, threads: int) -> tuple[str, int]:
    assert slice.memory_limit is not None
    soft_stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    # glibc uses RLIMIT_STACK for thread stacks, 2 MiB when it is unlimited.
    stack = 2 * MiB if soft_stack == resource.RLIM_INFINITY else min(soft_stack, 64 * MiB)
    headroom = slice.headroom if slice.headroom is not None else cpu_headroom(threads, stack)
    if kernel_counts_mmap_in_rlimit_data(platform.release()):
        which, name = resource.RLIMIT_DATA, "RLIMIT_DATA"
        limit = _vm_data() + slice.memory_limit + headroom
    else:
        # Old kernels charge only brk to RLIMIT_DATA, which large allocations
        # bypass. Address space is a coarse stand-in: it also counts shared
        # libraries (~600 MiB for torch) and reserved-but-unused arenas.
        which, name = resource.RLIMIT_AS, "RLIMIT_AS"
        limit = _vm_size() + slice.memory_limit + 2 * headroom + 1024 * MiB
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        # Hard as well as soft, so the script cannot raise its own limit back.
        resource.setrlimit(which, (limit, limit))
    except (ValueError, OSError) as exc:
        raise SliceError(f"cannot set {name} to {limit} bytes: {exc}") from exc
    return name, limit


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _vm_data() -> int:
    # The worker's own private memory so far; counted so the headroom and the
    # slice are both on top of what is already there.
    return _status_kib("VmData")


def _vm_size() -> int:
    return _status_kib("VmSize")


# ----------------------------------------------------------------- torch limits


def limit_torch(torch: ModuleType | None = None) -> str:
    """Limit torch's device allocator to the current slice's memory, per device.

    Called automatically when ``torch`` finishes importing after
    :func:`apply_slice`; call it yourself only if you imported torch in some
    way the import hook cannot see. Idempotent. Returns what it did:

    * ``"queued"`` -- the fraction will be set when torch initialises the
      device (torch's ``_lazy_call``), so importing torch costs no GPU context;
    * ``"applied"`` -- the device was already initialised and the fraction is set;
    * ``"not needed"`` -- no slice, a CPU slice, or no memory limit.
    """
    enf = _current
    if enf is None or enf.slice.vendor == "cpu" or enf.slice.memory_limit is None:
        return "not needed"
    if "state" in _torch_state:
        return str(_torch_state["state"])
    if torch is None:
        import torch
    backend = getattr(torch, "xpu" if enf.slice.vendor == "intel" else "cuda")
    limit = enf.slice.memory_limit

    wanted = len(enf.slice.device_ids)

    def set_fraction() -> None:
        # The limit is per device. The runtime may show fewer devices than the
        # slice names (CUDA enumerates one MIG instance per process at most).
        fractions = []
        for index in range(min(wanted, int(backend.device_count()))):
            total = int(backend.get_device_properties(index).total_memory)
            fraction = min(1.0, limit / total)
            backend.set_per_process_memory_fraction(fraction, index)
            fractions.append(fraction)
        _torch_state["fractions"] = fractions

    lazy: Callable[[Callable[[], None]], None] | None = getattr(backend, "_lazy_call", None)
    if lazy is not None and not backend.is_initialized():
        lazy(set_fraction)
        _torch_state["state"] = "queued"
    else:
        set_fraction()
        _torch_state["state"] = "applied"
    return str(_torch_state["state"])


def _on_torch_import(module: ModuleType) -> None:
    limit_torch(module)


class _PostImportLoader(importlib.abc.Loader):
    """Runs the real loader, then the finder's callback with the new module."""

    def __init__(self, real: importlib.abc.Loader, finder: _PostImportFinder) -> None:
        self._real = real
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Hand the module its real loader back: importlib.resources and
        # friends look at __loader__ / __spec__.loader.
        module.__loader__ = self._real
        if module.__spec__ is not None:
            module.__spec__.loader = self._real
        self._real.exec_module(module)
        self._finder.fire(module)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """A one-shot hook: calls ``callback(module)`` once ``name`` has imported.

    It finds the module through the other finders and only wraps the loader,
    so the import itself is untouched. A failing callback fails the import:
    a limit that could not be applied must not pass silently.
    """

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PostImportLoader(spec.loader, self)
                return spec
        return None

    def fire(self, module: ModuleType) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            self.callback(module)
        except Exception as exc:
            raise SliceError(f"could not limit {self.name} to this session's slice: {exc}") from exc


def _install_post_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    if name in sys.modules:
        return  # apply_slice calls the callback itself for an already-imported module
    for finder in sys.meta_path:
        if isinstance(finder, _PostImportFinder) and finder.name == name:
            return
    sys.meta_path.insert(0, _PostImportFinder(name, callback))
