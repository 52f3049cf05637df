"""What a session's slice is: :class:`SliceLimits`, and the arithmetic of enforcing it.

The acceptor decides a session's slice and hands it to the worker in one environment
variable, ``TETHER_SLICE`` (JSON: :meth:`SliceLimits.to_env`). How the worker holds
itself to it, and the :class:`Enforcement` record of what it did, are in
:mod:`tether.acceptor._enforce`; this module is the record and the pure parts (threads
for a share, memory headroom, the vendors' visibility variables), with no effect on the
process, so the acceptor, the pool agent and the sandbox read slices without applying one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from tether._errors import TetherError
from tether._units import parse_fraction
from tether.acceptor._devices import VENDORS, Device

__all__ = [
    "SLICE_ENV",
    "Enforcement",
    "SliceError",
    "SliceLimits",
    "cpu_headroom",
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

THREAD_VARIABLES = (
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
        if self.compute_share is not None:
            if isinstance(self.compute_share, bool) or not isinstance(
                self.compute_share, int | float
            ):
                raise SliceError(f"compute_share must be a number, not {self.compute_share!r}")
            parse_fraction(self.compute_share, what="compute_share", error=SliceError)
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
