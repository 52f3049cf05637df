"""What a client asks for: :class:`SliceRequest` and its framework constraints.

A request names a size (a fraction, memory, or whole devices) and constraints
that a device must meet (vendor, model glob, minimum memory, framework
versions, a node). :meth:`SliceRequest.matches` says whether a device meets the
constraints; whether it has room is placement's business
(:mod:`tether.pool._placement`). Version specifiers are read with
:mod:`packaging` when it is importable, else with a small fallback.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.pool._model import DeviceSpec
from tether.pool._values import (
    PoolInputError,
    check_id,
    check_positive_seconds,
    format_memory,
    from_dict,
    parse_fraction,
    parse_memory,
    set_field,
)

if TYPE_CHECKING:
    from tether.pool._orders import SliceOrder

__all__ = ["FrameworkRequirement", "SliceRequest", "check_slice_fields"]


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
        set_field(self, "name", self.name.lower())
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
        check_id(self.id, "request id")
        check_id(self.team, "team")
        check_id(self.user, "user")
        check_slice_fields(self)

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
        return from_dict(cls, kwargs, fields)


def check_slice_fields(record: SliceRequest | SliceOrder) -> None:
    """Check and normalise the fields a slice request and a slice order share
    (size, constraints, priority, waiting), in place: the one parse of each unit,
    so both records say the same thing about the same bad value."""
    if record.count is not None:
        if (
            isinstance(record.count, bool)
            or not isinstance(record.count, int)
            or not 1 <= record.count <= 1024
        ):
            raise PoolInputError(
                f"device count must be a whole number from 1 to 1024, got {record.count!r}"
            )
        if record.fraction is not None or record.memory_bytes is not None:
            raise PoolInputError(
                "ask either for whole devices (count) or for a slice "
                "(fraction and/or memory), not both"
            )
    else:
        if record.fraction is None and record.memory_bytes is None:
            raise PoolInputError(
                "a request needs a fraction, a memory size or a count of whole devices"
            )
        if record.fraction is not None:
            set_field(record, "fraction", parse_fraction(record.fraction))
        if record.memory_bytes is not None:
            set_field(
                record, "memory_bytes", parse_memory(record.memory_bytes, what="requested memory")
            )
    if record.vendor is not None:
        if not isinstance(record.vendor, str) or not record.vendor.strip():
            raise PoolInputError(f"vendor must be a non-empty string, got {record.vendor!r}")
        set_field(record, "vendor", record.vendor.strip().lower())
    if record.model is not None and (not isinstance(record.model, str) or not record.model):
        raise PoolInputError(
            f"model must be a non-empty glob such as '*H100*', got {record.model!r}"
        )
    if record.min_memory_bytes is not None:
        set_field(
            record, "min_memory_bytes", parse_memory(record.min_memory_bytes, what="minimum memory")
        )
    if isinstance(record.frameworks, str):  # type: ignore[unreachable]  # untyped callers
        raise PoolInputError("frameworks must be a list of requirements such as ['torch>=2.4']")
    reqs = tuple(
        r if isinstance(r, FrameworkRequirement) else FrameworkRequirement.parse(r)
        for r in record.frameworks
    )
    set_field(record, "frameworks", reqs)
    if record.node is not None:
        check_id(record.node, "node")
    if (
        isinstance(record.priority, bool)
        or not isinstance(record.priority, int)
        or abs(record.priority) > 1000
    ):
        raise PoolInputError(
            f"priority must be a whole number from -1000 to 1000, got {record.priority!r}"
        )
    if not isinstance(record.wait, bool):
        raise PoolInputError(f"wait must be true or false, got {record.wait!r}")
    if record.queue_timeout_s is not None:
        check_positive_seconds(record.queue_timeout_s, "queue timeout", allow_zero=True)
