"""``--devices``: which of the host's devices an acceptor offers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tether._errors import TetherError
from tether.acceptor._devices._model import VENDORS, Device


class DeviceFilterError(TetherError, ValueError):
    """A ``--devices`` filter is malformed or names a device this host lacks."""


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
