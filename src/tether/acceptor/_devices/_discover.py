"""Discovery: every vendor's probe, one after another."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tether.acceptor._devices._amd import probe_amd
from tether.acceptor._devices._cpu import probe_cpu
from tether.acceptor._devices._frameworks import discover_frameworks
from tether.acceptor._devices._intel import probe_intel
from tether.acceptor._devices._model import VENDORS, Device, Discovery, Probe
from tether.acceptor._devices._nvidia import probe_nvidia


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
