"""Slice enforcement inside a worker process (the slice itself: :mod:`tether.acceptor._limits`).

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

import importlib.abc
import importlib.machinery
import os
import platform
import resource
import sys
import threading
from collections.abc import Callable, MutableMapping, Sequence
from types import ModuleType
from typing import Any

from tether.acceptor._devices import mps_pipe_directory
from tether.acceptor._limits import (
    SLICE_ENV,
    THREAD_VARIABLES,
    Enforcement,
    MiB,
    SliceError,
    SliceLimits,
    cpu_headroom,
    kernel_counts_mmap_in_rlimit_data,
    mps_thread_percentage,
    threads_for,
    visibility_env,
)

__all__ = ["apply_slice", "apply_slice_env", "current_enforcement", "limit_torch"]


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
            changes.update({name: str(threads) for name in THREAD_VARIABLES})

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
