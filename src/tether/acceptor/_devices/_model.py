"""The records of device discovery: devices, probes, frameworks, what was found.

Pure data: nothing here talks to a driver. :class:`Device` is what the acceptor
offers and registers with a pool; :class:`Probe` is one vendor's answer;
:class:`Discovery` is all of them together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VENDORS: tuple[str, ...] = ("cpu", "nvidia", "amd", "intel")

# NVML, amdsmi and the torch probe each talk to a driver; none of them should be
# able to stall an acceptor's start-up for long.
PROBE_TIMEOUT_S = 20.0


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
