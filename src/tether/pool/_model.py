"""The pool's records: what devices, nodes, leases, quotas and its config are.

Every record is a frozen, slotted, keyword-only dataclass that validates when it
is built (as h11's events do), so a value that exists is a valid value: the
state machine, the store and the API never re-check them. Bad input raises
:class:`PoolInputError` (a :class:`ValueError` too) with a message that names
the field, the value and what would be accepted. Units and the parsers of
single values live in :mod:`tether.pool._values`; what a client asks for, in
:mod:`tether.pool._request`.

Records convert to and from plain JSON-able dicts (``to_dict`` / ``from_dict``)
for the store and the HTTP API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from tether.pool._values import (
    PLACEMENT_POLICIES,
    SHARE_SCALE,
    PlacementPolicy,
    PoolInputError,
    PoolNotFoundError,
    check_id,
    check_positive_seconds,
    check_time,
    from_dict,
    parse_fraction,
    parse_memory,
    set_field,
    share_units,
)

__all__ = [
    "END_REASONS",
    "PLACEMENT_POLICIES",
    "DeviceSpec",
    "EndReason",
    "Lease",
    "NodeSpec",
    "PlacementPolicy",
    "PoolConfig",
]

#: Why a lease ended. ``released``: the client let it go. ``expired``: no lease
#: heartbeat within the lease timeout. ``node-lost``: its node went silent past
#: the node timeout. ``drained``: an admin drained its node. ``device-lost``: its
#: node stopped reporting one of the lease's devices.
EndReason = Literal["released", "finished", "expired", "node-lost", "drained", "device-lost"]
END_REASONS: tuple[str, ...] = get_args(EndReason)

# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSpec:
    """One accelerator (or a CPU standing in for one) as an acceptor reports it.

    ``id`` is unique within its node (``"cuda:0"``, or a stable UUID); the pool
    names a device by ``(node id, device id)``. ``vendor`` is stored lower-case
    (``nvidia``, ``amd``, ``intel``, ``cpu``). ``arch`` is the compute capability
    or architecture (``"9.0"``, ``"gfx90a"``). ``frameworks`` maps a framework or
    runtime name to its version/build (``{"torch": "2.4.1+cu121", "cuda": "12.1"}``);
    it is stored as a read-only mapping, so a DeviceSpec is not hashable.
    """

    id: str
    vendor: str
    model: str
    memory_bytes: int
    arch: str = ""
    frameworks: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_id(self.id, "device id")
        if not isinstance(self.vendor, str) or not self.vendor.strip():
            raise PoolInputError(
                f"device {self.id}: vendor must be a non-empty string, got {self.vendor!r}"
            )
        set_field(self, "vendor", self.vendor.strip().lower())
        if not isinstance(self.model, str):
            raise PoolInputError(f"device {self.id}: model must be a string, got {self.model!r}")
        set_field(
            self, "memory_bytes", parse_memory(self.memory_bytes, what=f"device {self.id} memory")
        )
        if not isinstance(self.arch, str):
            raise PoolInputError(f"device {self.id}: arch must be a string, got {self.arch!r}")
        if not isinstance(self.frameworks, Mapping):
            raise PoolInputError(f"device {self.id}: frameworks must map names to versions")
        clean: dict[str, str] = {}
        for name, version in self.frameworks.items():
            if not isinstance(name, str) or not name or not isinstance(version, str):
                raise PoolInputError(
                    f"device {self.id}: frameworks must map names to version strings, "
                    f"got {name!r}: {version!r}"
                )
            clean[name.lower()] = version
        set_field(self, "frameworks", MappingProxyType(dict(sorted(clean.items()))))

    def class_key(self) -> tuple[Any, ...]:
        """What placement constraints can see of this device (devices alike share it)."""
        return (
            self.vendor,
            self.model,
            self.memory_bytes,
            self.arch,
            tuple(self.frameworks.items()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vendor": self.vendor,
            "model": self.model,
            "memory_bytes": self.memory_bytes,
            "arch": self.arch,
            "frameworks": dict(self.frameworks),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpec:
        return from_dict(cls, data, ("id", "vendor", "model", "memory_bytes", "arch", "frameworks"))


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """An acceptor host as it registers: its id, where clients reach it, its devices.

    ``address`` is the acceptor's URL (``tcp://gpu7.example:7447``); the pool
    hands it to clients in a placement. Device ids are unique within the node.
    """

    id: str
    address: str
    devices: tuple[DeviceSpec, ...] = ()

    def __post_init__(self) -> None:
        check_id(self.id, "node id")
        if (
            not isinstance(self.address, str)
            or "://" not in self.address
            or any(c.isspace() for c in self.address)
        ):
            raise PoolInputError(
                f"node {self.id}: address must be a URL such as 'tcp://host:7447', "
                f"got {self.address!r}"
            )
        devices = tuple(self.devices)
        if not all(isinstance(d, DeviceSpec) for d in devices):
            raise PoolInputError(f"node {self.id}: devices must be DeviceSpec records")
        seen: set[str] = set()
        for d in devices:
            if d.id in seen:
                raise PoolInputError(f"node {self.id}: device id {d.id!r} appears twice")
            seen.add(d.id)
        set_field(self, "devices", devices)

    def device(self, device_id: str) -> DeviceSpec:
        """The device called ``device_id``; :class:`PoolNotFoundError` if there is none."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise PoolNotFoundError(f"node {self.id} has no device {device_id!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "devices": [d.to_dict() for d in self.devices],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSpec:
        devices = data.get("devices", ())
        if not isinstance(devices, list | tuple):
            raise PoolInputError("node devices must be a list")
        return cls(
            id=data.get("id"),  # type: ignore[arg-type]  # validated in __post_init__
            address=data.get("address"),  # type: ignore[arg-type]
            devices=tuple(
                d if isinstance(d, DeviceSpec) else DeviceSpec.from_dict(d) for d in devices
            ),
        )


# --------------------------------------------------------------------------- leases


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A slice held over time; usage is computed from leases alone.

    ``fraction`` and ``memory_bytes`` are *per device*: a lease of two whole
    devices has ``fraction=1.0`` and ``device_ids`` of length 2. ``share`` is
    the total (fraction times devices). ``end``/``end_reason`` are None while
    the lease is open. ``last_heartbeat`` is the last time the pool heard the
    lease was alive; a lease the pool lost track of is closed there.
    """

    id: str
    node: str
    device_ids: tuple[str, ...]
    fraction: float
    memory_bytes: int
    team: str
    user: str
    start: float
    last_heartbeat: float
    end: float | None = None
    end_reason: EndReason | None = None

    def __post_init__(self) -> None:
        check_id(self.id, "lease id")
        check_id(self.node, "lease node")
        check_id(self.team, "team")
        check_id(self.user, "user")
        ids = tuple(self.device_ids)
        if not ids or len(set(ids)) != len(ids):
            raise PoolInputError(
                f"lease {self.id}: device ids must be a non-empty list without repeats"
            )
        set_field(self, "device_ids", ids)
        set_field(self, "fraction", parse_fraction(self.fraction, what=f"lease {self.id} fraction"))
        set_field(
            self, "memory_bytes", parse_memory(self.memory_bytes, what=f"lease {self.id} memory")
        )
        start = check_time(self.start, f"lease {self.id} start")
        beat = check_time(self.last_heartbeat, f"lease {self.id} last heartbeat")
        set_field(self, "start", start)
        set_field(self, "last_heartbeat", beat)
        if beat < start:
            raise PoolInputError(
                f"lease {self.id}: last heartbeat {beat} is before its start {start}"
            )
        if (self.end is None) != (self.end_reason is None):
            raise PoolInputError(f"lease {self.id}: end and end_reason go together")
        if self.end is not None:
            set_field(self, "end", check_time(self.end, f"lease {self.id} end"))
            if self.end < start:
                raise PoolInputError(f"lease {self.id}: end {self.end} is before its start {start}")
            if self.end_reason not in END_REASONS:
                raise PoolInputError(
                    f"lease {self.id}: end reason must be one of {END_REASONS}, "
                    f"got {self.end_reason!r}"
                )

    @property
    def share_units(self) -> int:
        """Total share in units of 1/SHARE_SCALE device (all devices of the lease)."""
        return share_units(self.fraction) * len(self.device_ids)

    @property
    def share(self) -> float:
        """Total share in devices (fraction times the number of devices)."""
        return self.share_units / SHARE_SCALE

    @property
    def total_memory_bytes(self) -> int:
        return self.memory_bytes * len(self.device_ids)

    @property
    def is_open(self) -> bool:
        return self.end is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "device_ids": list(self.device_ids),
            "fraction": self.fraction,
            "memory_bytes": self.memory_bytes,
            "team": self.team,
            "user": self.user,
            "start": self.start,
            "last_heartbeat": self.last_heartbeat,
            "end": self.end,
            "end_reason": self.end_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lease:
        kwargs = dict(data)
        if isinstance(kwargs.get("device_ids"), list):
            kwargs["device_ids"] = tuple(kwargs["device_ids"])
        return from_dict(
            cls,
            kwargs,
            ("id", "node", "device_ids", "fraction", "memory_bytes", "team", "user", "start",
             "last_heartbeat", "end", "end_reason"),
        )  # fmt: skip


# --------------------------------------------------------------------------- quotas & config


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """A team's limits; None means unlimited.

    ``max_share``: the most devices' worth of share the team may hold at once
    (sum of fractions: two half slices and one whole device is 2.0).
    ``max_memory_bytes``: the most device memory held at once.
    ``max_device_hours_per_month``: fraction-weighted device-hours per calendar
    month (UTC); once spent, new requests are refused until the month ends
    (running leases are not cut).
    """

    team: str
    max_share: float | None = None
    max_memory_bytes: int | None = None
    max_device_hours_per_month: float | None = None

    def __post_init__(self) -> None:
        check_id(self.team, "team")
        if self.max_share is not None:
            v = self.max_share
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or v < 0
                or v > 1e6
            ):
                raise PoolInputError(
                    f"team {self.team}: max share must be a number of devices >= 0, got {v!r}"
                )
            set_field(self, "max_share", float(v))
        if self.max_memory_bytes is not None:
            if self.max_memory_bytes == 0:
                pass  # a team with no memory at all: allowed, it just gets nothing
            else:
                set_field(
                    self,
                    "max_memory_bytes",
                    parse_memory(self.max_memory_bytes, what=f"team {self.team} max memory"),
                )
        if self.max_device_hours_per_month is not None:
            v = self.max_device_hours_per_month
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or v < 0
            ):
                raise PoolInputError(
                    f"team {self.team}: device-hours per month must be >= 0, got {v!r}"
                )
            set_field(self, "max_device_hours_per_month", float(v))

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "max_share": self.max_share,
            "max_memory_bytes": self.max_memory_bytes,
            "max_device_hours_per_month": self.max_device_hours_per_month,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quota:
        return from_dict(
            cls, data, ("team", "max_share", "max_memory_bytes", "max_device_hours_per_month")
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """The pool's timing and policy knobs (all seconds).

    ``node_timeout_s``: a node silent this long is lost. ``lease_timeout_s``: a
    lease without heartbeat this long expires. ``default_queue_timeout_s`` /
    ``max_queue_timeout_s``: how long a request waits when it names no timeout /
    the most it may ask. ``clock_skew_s``: how far an event's time may lag the
    newest time the state has seen before it is rejected as a clock gone
    backwards (smaller lags are read as "now"). ``policy``: the default
    placement policy.
    """

    node_timeout_s: float = 30.0
    lease_timeout_s: float = 90.0
    default_queue_timeout_s: float = 300.0
    max_queue_timeout_s: float = 86_400.0
    clock_skew_s: float = 5.0
    policy: PlacementPolicy = PlacementPolicy.BEST_FIT

    def __post_init__(self) -> None:
        for name in (
            "node_timeout_s",
            "lease_timeout_s",
            "default_queue_timeout_s",
            "max_queue_timeout_s",
        ):
            check_positive_seconds(getattr(self, name), name)
        check_positive_seconds(self.clock_skew_s, "clock_skew_s", allow_zero=True)
        set_field(self, "policy", PlacementPolicy.parse(self.policy))
