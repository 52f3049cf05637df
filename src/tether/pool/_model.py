"""The pool's data model: what devices, nodes, requests, leases and quotas are.

Every record is a frozen, slotted, keyword-only dataclass that validates when it
is built (as h11's events do), so a value that exists is a valid value: the
state machine, the store and the API never re-check them. Bad input raises
:class:`PoolInputError` (a :class:`ValueError` too) with a message that names
the field, the value and what would be accepted.

Units, fixed once for the whole pool:

- time: float seconds since the Unix epoch (UTC). Nothing here reads a clock.
- memory: int bytes. :func:`parse_memory` accepts ``"8GiB"``, ``"512MiB"``,
  ``"8G"`` (read as GiB: accelerator memory is sold in binary units) or an int.
- compute share: a fraction of one device in ``(0, 1]``. Internally shares are
  integers in units of ``1 / SHARE_SCALE`` (:func:`share_units`), so that sums
  of fractions never drift: three slices of ``1/3`` fill a device exactly
  (0.3333 each) instead of over-committing it by a float epsilon.

Records convert to and from plain JSON-able dicts (``to_dict`` / ``from_dict``)
for the store and the HTTP API.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from tether._errors import PoolError

__all__ = [
    "END_REASONS",
    "MAX_MEMORY_BYTES",
    "SHARE_SCALE",
    "DeviceSpec",
    "EndReason",
    "FrameworkRequirement",
    "Lease",
    "NodeSpec",
    "PlacementPolicy",
    "PoolConfig",
    "PoolConflictError",
    "PoolInputError",
    "PoolNotFoundError",
    "Quota",
    "SliceRequest",
    "format_memory",
    "format_share",
    "parse_fraction",
    "parse_memory",
    "share_units",
]

_T = TypeVar("_T")

#: One whole device, in share units. A share of ``f`` is ``round(f * SHARE_SCALE)``.
SHARE_SCALE = 10_000

#: Largest memory size accepted anywhere (1 PiB): anything above is a typo
#: (``8GB`` written as ``8000000000000``), not a device.
MAX_MEMORY_BYTES = 1 << 50

#: Why a lease ended. ``released``: the client let it go. ``expired``: no lease
#: heartbeat within the lease timeout. ``node-lost``: its node went silent past
#: the node timeout. ``drained``: an admin drained its node. ``device-lost``: its
#: node stopped reporting one of the lease's devices.
EndReason = Literal["released", "expired", "node-lost", "drained", "device-lost"]
END_REASONS: tuple[str, ...] = get_args(EndReason)

#: ``best-fit`` packs fractions onto the fullest device that still fits (the
#: default: it keeps whole devices free for whole-device requests);
#: ``spread`` puts each slice on the emptiest device (least interference);
#: ``first-fit`` takes the first device in inventory order (the baseline).
PlacementPolicy = Literal["best-fit", "spread", "first-fit"]
PLACEMENT_POLICIES: tuple[str, ...] = get_args(PlacementPolicy)


class PoolInputError(PoolError, ValueError):
    """Bad input to the pool: a malformed value, an impossible size, a clock gone backwards.

    Raised before anything changes: the state that saw it is as it was.
    The HTTP layer answers 400 with the message.
    """


class PoolNotFoundError(PoolError, LookupError):
    """A node, lease or request id the pool does not know (HTTP 404)."""


class PoolConflictError(PoolError):
    """The input is well formed but clashes with the pool's state (HTTP 409).

    Example: a request id that is already in use.
    """


# --------------------------------------------------------------------------- parsing

_MEMORY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1000**4,
    "tib": 1 << 40,
}


def parse_memory(value: str | int, *, what: str = "memory size") -> int:
    """Return a memory size in bytes.

    Takes an int (bytes) or a string: ``"8GiB"``, ``"512MiB"``, ``"1.5GiB"``,
    ``"8G"`` / ``"8g"`` (binary: GiB), ``"8GB"`` (decimal: 10**9 bytes), ``"4096"``.
    Raises :class:`PoolInputError` for anything else, for zero or negative sizes,
    and for sizes above :data:`MAX_MEMORY_BYTES` (1 PiB); ``what`` names the
    value in the message.
    """
    if isinstance(value, bool):
        raise PoolInputError(
            f"{what} must be a size such as '8GiB' or a number of bytes, not {value!r}"
        )
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _MEMORY_RE.match(value)
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _MEMORY_UNITS:
            raise PoolInputError(
                f"{what} {value!r} is not a size: write a number and a unit, such as "
                "'8GiB', '512MiB', '8G' or a plain number of bytes"
            )
        number = float(m.group(1))
        size = math.ceil(number * _MEMORY_UNITS[unit])
    else:
        raise PoolInputError(
            f"{what} must be a string such as '8GiB' or an int, not {type(value).__name__}"
        )
    if size <= 0:
        raise PoolInputError(f"{what} must be positive, got {value!r}")
    if size > MAX_MEMORY_BYTES:
        raise PoolInputError(
            f"{what} {value!r} is absurd ({format_memory(size)}): the largest accepted is "
            f"{format_memory(MAX_MEMORY_BYTES)}; did you mean a smaller unit?"
        )
    return size


def format_memory(size: int) -> str:
    """Render bytes for people: ``8.00GiB``, ``512MiB``, ``4096B``."""
    for unit, scale in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if abs(size) >= scale:
            amount = size / scale
            return f"{amount:.0f}{unit}" if amount == int(amount) else f"{amount:.2f}{unit}"
    return f"{size}B"


def parse_fraction(value: str | float, *, what: str = "fraction") -> float:
    """Return a device fraction in ``(0, 1]``, rounded to 1/SHARE_SCALE.

    Accepts a float or int (``0.25``, ``1``), a decimal string (``"0.25"``) or a
    percentage (``"25%"``). Raises :class:`PoolInputError` for negative, zero,
    above-one, non-finite values and for fractions smaller than one share unit.
    """
    if isinstance(value, bool):
        raise PoolInputError(f"{what} must be a number in (0, 1], not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise PoolInputError(
                f"{what} {value!r} is not a number: write a fraction such as 0.25 or 25%"
            ) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise PoolInputError(f"{what} must be a number in (0, 1], not {type(value).__name__}")
    if not math.isfinite(number) or number <= 0 or number > 1:
        raise PoolInputError(
            f"{what} must be greater than 0 and at most 1 (one whole device), got {value!r}; "
            "ask for several whole devices with a count instead"
        )
    units = round(number * SHARE_SCALE)
    if units < 1:
        raise PoolInputError(f"{what} {value!r} is below the smallest share, 1/{SHARE_SCALE}")
    return units / SHARE_SCALE


def share_units(fraction: float) -> int:
    """The integer share of ``fraction`` of a device (``SHARE_SCALE`` is one device)."""
    return round(fraction * SHARE_SCALE)


def format_share(units: int) -> str:
    """Render share units as a number of devices: ``1.50``."""
    return f"{units / SHARE_SCALE:.2f}"


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise PoolInputError(
            f"{what} must be a non-empty printable string of at most 200 characters, got {value!r}"
        )
    return value


def _check_time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PoolInputError(
            f"{what} must be a finite number of seconds since the epoch, got {value!r}"
        )
    if value < 0:
        raise PoolInputError(f"{what} must not be before 1970, got {value!r}")
    return float(value)


def _check_positive_seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PoolInputError(f"{what} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise PoolInputError(
            f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        )
    return float(value)


def _set(obj: object, name: str, value: object) -> None:
    # Frozen dataclasses normalise their own fields in __post_init__ this way.
    object.__setattr__(obj, name, value)


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
        _check_id(self.id, "device id")
        if not isinstance(self.vendor, str) or not self.vendor.strip():
            raise PoolInputError(
                f"device {self.id}: vendor must be a non-empty string, got {self.vendor!r}"
            )
        _set(self, "vendor", self.vendor.strip().lower())
        if not isinstance(self.model, str):
            raise PoolInputError(f"device {self.id}: model must be a string, got {self.model!r}")
        _set(self, "memory_bytes", parse_memory(self.memory_bytes, what=f"device {self.id} memory"))
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
        _set(self, "frameworks", MappingProxyType(dict(sorted(clean.items()))))

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
        return _from_dict(
            cls, data, ("id", "vendor", "model", "memory_bytes", "arch", "frameworks")
        )


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
        _check_id(self.id, "node id")
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
        _set(self, "devices", devices)

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


# --------------------------------------------------------------------------- requests

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameworkRequirement:
    """A framework a device must have: ``torch``, ``torch>=2.4``, ``torch>=2.4,<3``.

    Build it with :meth:`parse`. Versions are compared with
    :mod:`packaging.specifiers` when it is importable, else with a small
    fallback that understands ``==, !=, >=, <=, >, <`` over dotted numbers
    (local build tags such as ``+cu121`` are ignored).
    """

    name: str
    specifier: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise PoolInputError(f"framework name {self.name!r} is not a package name")
        _set(self, "name", self.name.lower())
        _check_specifier(self.specifier)

    @classmethod
    def parse(cls, text: str) -> FrameworkRequirement:
        """Parse ``"torch>=2.4"``; :class:`PoolInputError` if it is not a requirement."""
        if not isinstance(text, str):
            raise PoolInputError(
                f"framework requirement must be a string such as 'torch>=2.4', got {text!r}"
            )
        m = _REQ_RE.match(text)
        if m is None:
            raise PoolInputError(f"framework requirement {text!r} is not of the form 'torch>=2.4'")
        return cls(name=m.group(1), specifier=m.group(2))

    def satisfied_by(self, frameworks: Mapping[str, str]) -> bool:
        """True when ``frameworks`` (name -> version) has this framework in a matching version."""
        version = frameworks.get(self.name)
        if version is None:
            return False
        return _version_matches(version, self.specifier)

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


def _check_specifier(spec: str) -> None:
    if not isinstance(spec, str):
        raise PoolInputError(f"version specifier must be a string, got {spec!r}")
    if not spec:
        return
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:
        for clause in spec.split(","):
            if _FALLBACK_CLAUSE.match(clause) is None:
                raise PoolInputError(
                    f"version specifier {spec!r} is not valid (e.g. '>=2.4,<3')"
                ) from None
        return
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        raise PoolInputError(f"version specifier {spec!r} is not valid (e.g. '>=2.4,<3')") from None


_FALLBACK_CLAUSE = re.compile(r"^\s*(==|!=|>=|<=|>|<|~=)\s*([0-9]+(?:\.[0-9]+)*)\s*$")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+", 1)[0].split("."):
        m = re.match(r"[0-9]+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def _version_matches(version: str, spec: str) -> bool:
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return _fallback_matches(version, spec)
    try:
        parsed = Version(version)
    except InvalidVersion:
        return _fallback_matches(version, spec)
    return SpecifierSet(spec).contains(parsed, prereleases=True)


def _fallback_matches(version: str, spec: str) -> bool:
    have = _version_tuple(version)
    for clause in spec.split(","):
        m = _FALLBACK_CLAUSE.match(clause)
        if m is None:
            return False
        op, want_text = m.groups()
        want = _version_tuple(want_text)
        width = max(len(have), len(want))
        a = have + (0,) * (width - len(have))
        b = want + (0,) * (width - len(want))
        ok = {
            "==": a == b,
            "!=": a != b,
            ">=": a >= b,
            "<=": a <= b,
            ">": a > b,
            "<": a < b,
            "~=": a >= b and a[: max(len(want) - 1, 1)] == b[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceRequest:
    """What a client asks the pool for.

    Size, one of:

    - ``fraction`` alone: that share of one device, and the same fraction of
      its memory (``0.25`` of an 80GiB device is 20GiB);
    - ``memory_bytes`` alone: that much memory on one device, and the share
      ``memory / device memory`` (rounded up) of its compute;
    - ``fraction`` and ``memory_bytes``: both, as given;
    - ``count``: that many whole devices on one node (no fraction, no memory).

    Constraints: ``vendor`` (exact, case-insensitive), ``model`` (a glob, case-
    insensitive: ``"*H100*"``), ``min_memory_bytes`` (of the whole device),
    ``frameworks`` (requirements such as ``"torch>=2.4"``, all must hold), and
    ``node`` (pin to one node id).

    ``id`` is chosen by the caller (the store), unique across the pool's life;
    the lease that a placement creates has the same id. ``team`` and ``user``
    are filled by the API from the caller's token. ``priority``: higher is
    served first. ``wait``: queue when nothing fits now (False: refuse at
    once, the CLI's ``--no-wait``). ``queue_timeout_s``: how long it may wait
    (None: the pool's default).
    """

    id: str
    fraction: float | None = None
    memory_bytes: int | None = None
    count: int | None = None
    vendor: str | None = None
    model: str | None = None
    min_memory_bytes: int | None = None
    frameworks: tuple[FrameworkRequirement, ...] = ()
    node: str | None = None
    team: str = "default"
    user: str = "anonymous"
    priority: int = 0
    wait: bool = True
    queue_timeout_s: float | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, "request id")
        _check_id(self.team, "team")
        _check_id(self.user, "user")
        if self.count is not None:
            if (
                isinstance(self.count, bool)
                or not isinstance(self.count, int)
                or not 1 <= self.count <= 1024
            ):
                raise PoolInputError(
                    f"device count must be a whole number from 1 to 1024, got {self.count!r}"
                )
            if self.fraction is not None or self.memory_bytes is not None:
                raise PoolInputError(
                    "ask either for whole devices (count) or for a slice "
                    "(fraction and/or memory), not both"
                )
        else:
            if self.fraction is None and self.memory_bytes is None:
                raise PoolInputError(
                    "a request needs a fraction, a memory size or a count of whole devices"
                )
            if self.fraction is not None:
                _set(self, "fraction", parse_fraction(self.fraction))
            if self.memory_bytes is not None:
                _set(self, "memory_bytes", parse_memory(self.memory_bytes, what="requested memory"))
        if self.vendor is not None:
            if not isinstance(self.vendor, str) or not self.vendor.strip():
                raise PoolInputError(f"vendor must be a non-empty string, got {self.vendor!r}")
            _set(self, "vendor", self.vendor.strip().lower())
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise PoolInputError(
                f"model must be a non-empty glob such as '*H100*', got {self.model!r}"
            )
        if self.min_memory_bytes is not None:
            _set(
                self, "min_memory_bytes", parse_memory(self.min_memory_bytes, what="minimum memory")
            )
        if isinstance(self.frameworks, str):  # type: ignore[unreachable]  # untyped callers
            raise PoolInputError("frameworks must be a list of requirements such as ['torch>=2.4']")
        reqs = tuple(
            r if isinstance(r, FrameworkRequirement) else FrameworkRequirement.parse(r)
            for r in self.frameworks
        )
        _set(self, "frameworks", reqs)
        if self.node is not None:
            _check_id(self.node, "node")
        if (
            isinstance(self.priority, bool)
            or not isinstance(self.priority, int)
            or abs(self.priority) > 1000
        ):
            raise PoolInputError(
                f"priority must be a whole number from -1000 to 1000, got {self.priority!r}"
            )
        if not isinstance(self.wait, bool):
            raise PoolInputError(f"wait must be true or false, got {self.wait!r}")
        if self.queue_timeout_s is not None:
            _check_positive_seconds(self.queue_timeout_s, "queue timeout", allow_zero=True)

    @property
    def devices_wanted(self) -> int:
        """How many devices the request takes (1 for a slice)."""
        return self.count if self.count is not None else 1

    def matches(self, device: DeviceSpec) -> bool:
        """Whether ``device`` satisfies the constraints (not whether it has room)."""
        if self.vendor is not None and device.vendor != self.vendor:
            return False
        if self.model is not None and not fnmatch.fnmatchcase(
            device.model.lower(), self.model.lower()
        ):
            return False
        if self.min_memory_bytes is not None and device.memory_bytes < self.min_memory_bytes:
            return False
        if self.memory_bytes is not None and device.memory_bytes < self.memory_bytes:
            return False
        return all(r.satisfied_by(device.frameworks) for r in self.frameworks)

    def constraint_key(self) -> tuple[Any, ...]:
        """Hashable summary of the constraints (requests alike match the same devices)."""
        return (
            self.vendor,
            self.model,
            self.min_memory_bytes,
            self.memory_bytes,
            tuple(str(r) for r in self.frameworks),
        )

    def describe(self) -> str:
        """The request in words, for messages: ``0.50 of a device, 8GiB, vendor=nvidia``."""
        if self.count is not None or (self.fraction == 1.0 and self.memory_bytes is None):
            n = self.count or 1
            parts = [f"{n} whole device{'s' if n > 1 else ''}"]
        else:
            parts = []
            if self.fraction is not None:
                parts.append(f"{self.fraction:.4g} of a device")
            if self.memory_bytes is not None:
                parts.append(format_memory(self.memory_bytes))
        if self.vendor:
            parts.append(f"vendor={self.vendor}")
        if self.model:
            parts.append(f"model={self.model}")
        if self.min_memory_bytes:
            parts.append(f"min memory={format_memory(self.min_memory_bytes)}")
        parts.extend(str(r) for r in self.frameworks)
        if self.node:
            parts.append(f"node={self.node}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fraction": self.fraction,
            "memory_bytes": self.memory_bytes,
            "count": self.count,
            "vendor": self.vendor,
            "model": self.model,
            "min_memory_bytes": self.min_memory_bytes,
            "frameworks": [str(r) for r in self.frameworks],
            "node": self.node,
            "team": self.team,
            "user": self.user,
            "priority": self.priority,
            "wait": self.wait,
            "queue_timeout_s": self.queue_timeout_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceRequest:
        fields = (
            "id", "fraction", "memory_bytes", "count", "vendor", "model", "min_memory_bytes",
            "frameworks", "node", "team", "user", "priority", "wait", "queue_timeout_s",
        )  # fmt: skip
        kwargs = dict(data)
        if "frameworks" in kwargs and isinstance(kwargs["frameworks"], list):
            kwargs["frameworks"] = tuple(kwargs["frameworks"])
        return _from_dict(cls, kwargs, fields)


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
        _check_id(self.id, "lease id")
        _check_id(self.node, "lease node")
        _check_id(self.team, "team")
        _check_id(self.user, "user")
        ids = tuple(self.device_ids)
        if not ids or len(set(ids)) != len(ids):
            raise PoolInputError(
                f"lease {self.id}: device ids must be a non-empty list without repeats"
            )
        _set(self, "device_ids", ids)
        _set(self, "fraction", parse_fraction(self.fraction, what=f"lease {self.id} fraction"))
        _set(self, "memory_bytes", parse_memory(self.memory_bytes, what=f"lease {self.id} memory"))
        start = _check_time(self.start, f"lease {self.id} start")
        beat = _check_time(self.last_heartbeat, f"lease {self.id} last heartbeat")
        _set(self, "start", start)
        _set(self, "last_heartbeat", beat)
        if beat < start:
            raise PoolInputError(
                f"lease {self.id}: last heartbeat {beat} is before its start {start}"
            )
        if (self.end is None) != (self.end_reason is None):
            raise PoolInputError(f"lease {self.id}: end and end_reason go together")
        if self.end is not None:
            _set(self, "end", _check_time(self.end, f"lease {self.id} end"))
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
        return _from_dict(
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
        _check_id(self.team, "team")
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
            _set(self, "max_share", float(v))
        if self.max_memory_bytes is not None:
            if self.max_memory_bytes == 0:
                pass  # a team with no memory at all: allowed, it just gets nothing
            else:
                _set(
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
            _set(self, "max_device_hours_per_month", float(v))

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "max_share": self.max_share,
            "max_memory_bytes": self.max_memory_bytes,
            "max_device_hours_per_month": self.max_device_hours_per_month,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quota:
        return _from_dict(
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
    policy: PlacementPolicy = "best-fit"

    def __post_init__(self) -> None:
        for name in (
            "node_timeout_s",
            "lease_timeout_s",
            "default_queue_timeout_s",
            "max_queue_timeout_s",
        ):
            _check_positive_seconds(getattr(self, name), name)
        _check_positive_seconds(self.clock_skew_s, "clock_skew_s", allow_zero=True)
        if self.policy not in PLACEMENT_POLICIES:
            raise PoolInputError(
                f"placement policy must be one of {PLACEMENT_POLICIES}, got {self.policy!r}"
            )


def _from_dict(cls: type[_T], data: Mapping[str, Any], names: tuple[str, ...]) -> _T:
    if not isinstance(data, Mapping):
        raise PoolInputError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    unknown = set(data) - set(names)
    if unknown:
        raise PoolInputError(
            f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {list(names)}"
        )
    try:
        return cls(**{k: v for k, v in data.items() if v is not None or k in ("end", "end_reason")})
    except TypeError as exc:  # a missing required field
        raise PoolInputError(f"{cls.__name__}: {exc}") from None
