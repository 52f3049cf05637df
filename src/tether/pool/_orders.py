"""What a caller orders from the pool's service: :class:`SliceOrder` and
:class:`GroupOrder`; and the devices a node registers (:func:`device_specs`).

An order is a request before the pool has made it its own: it has no id yet,
and its team is only what the caller named (the service resolves it against
the caller's token, and fills in the user). The HTTP layer builds one order
from each request body, once; the records check their fields when built, with
the same checks and messages as :class:`~tether.pool._request.SliceRequest`
and :class:`~tether.pool._group_request.GroupRequest` (one parse, one message
for each unit), so the service only turns an order into the request it files.
A registering node's devices become :class:`~tether.pool._model.DeviceSpec`
records here, once, in the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tether.pool._group_request import check_counts
from tether.pool._model import DeviceSpec, PlacementPolicy
from tether.pool._request import FrameworkRequirement, SliceRequest, check_slice_fields
from tether.pool._values import PoolInputError, check_id, parse_memory, set_field

__all__ = ["GroupOrder", "SliceOrder", "device_specs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceOrder:
    """A slice as a caller asks for it (``POST /v1/sessions``).

    The size and constraints mean what they mean in
    :class:`~tether.pool._request.SliceRequest` (memory sizes may be given as
    text such as ``"8GiB"``; frameworks as requirement strings; the policy by
    name), checked in the same order as the service always checked a body: the
    policy, the memory sizes, then the rest. ``team``: the team it is for (None:
    the caller's only one). ``name``: the caller's name for the session (not
    unique; None for none). Raises :class:`PoolInputError` naming the field.
    """

    fraction: float | None = None
    memory_bytes: int | None = None
    count: int | None = None
    vendor: str | None = None
    model: str | None = None
    min_memory_bytes: int | None = None
    frameworks: tuple[FrameworkRequirement, ...] = ()
    node: str | None = None
    team: str | None = None
    priority: int = 0
    wait: bool = True
    queue_timeout_s: float | None = None
    policy: PlacementPolicy | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        set_field(self, "policy", PlacementPolicy.parse_optional(self.policy))
        # Sizes first, as the service read them before it built the request.
        if self.memory_bytes is not None:
            set_field(
                self, "memory_bytes", parse_memory(self.memory_bytes, what="requested memory")
            )
        if self.min_memory_bytes is not None:
            set_field(
                self, "min_memory_bytes", parse_memory(self.min_memory_bytes, what="minimum memory")
            )
        set_field(self, "frameworks", tuple(self.frameworks))  # a JSON list becomes a tuple here
        check_slice_fields(self)
        if self.team is not None and not isinstance(self.team, str):
            raise PoolInputError(f"team must be a team's name, got {self.team!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise PoolInputError(f"a session's name must be a non-empty string, got {self.name!r}")

    def request(self, *, id: str, team: str, user: str) -> SliceRequest:
        """The request the pool files for this order: its ``id``, the resolved
        ``team`` and the caller's ``user``."""
        return SliceRequest(
            id=id,
            fraction=self.fraction,
            memory_bytes=self.memory_bytes,
            count=self.count,
            vendor=self.vendor,
            model=self.model,
            min_memory_bytes=self.min_memory_bytes,
            frameworks=self.frameworks,
            node=self.node,
            team=team,
            user=user,
            priority=self.priority,
            wait=self.wait,
            queue_timeout_s=self.queue_timeout_s,
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SliceOrder:
        """The order in a ``POST /v1/sessions`` body (its JSON field names:
        ``memory``, ``min_memory``); PoolInputError naming what is wrong. An
        empty name is no name."""
        return cls(
            fraction=body.get("fraction"),
            memory_bytes=body.get("memory"),
            count=body.get("count"),
            vendor=body.get("vendor"),
            model=body.get("model"),
            min_memory_bytes=body.get("min_memory"),
            frameworks=tuple(body.get("frameworks") or ()),
            node=body.get("node"),
            team=body.get("team"),
            priority=int(body.get("priority") or 0),
            wait=bool(body.get("wait", True)),
            queue_timeout_s=body.get("queue_timeout_s"),
            policy=body.get("policy"),
            name=str(body["name"]) if body.get("name") else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOrder:
    """Many slices of one shape as a caller asks for them (``POST /v1/groups``).

    ``shape``: every member's slice, with the group's team, priority, waiting
    and policy (its ``name`` must be None: ``name`` here is the group's, None
    for its id). ``max_count``: members wanted; ``min_count``: place once this
    many fit (None: all of them, a gang). Raises :class:`PoolInputError`.
    """

    shape: SliceOrder
    max_count: int
    min_count: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.shape, SliceOrder):
            raise PoolInputError("a group's shape must be a SliceOrder")
        if self.shape.name is not None:
            raise PoolInputError("a group's shape has no name of its own: name the group")
        if self.name is not None:
            check_id(self.name, "group name")
        check_counts(self.min_count_or_all, self.max_count)

    @property
    def min_count_or_all(self) -> int:
        """The members the group needs placed at once (``max_count`` for a gang)."""
        return self.max_count if self.min_count is None else self.min_count

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GroupOrder:
        """The order in a ``POST /v1/groups`` body: a slice body with ``name``,
        ``max_count`` and ``min_count``; PoolInputError naming what is wrong."""
        shape = {k: v for k, v in body.items() if k not in ("name", "max_count", "min_count")}
        return cls(
            shape=SliceOrder.from_json(shape),
            max_count=body.get("max_count"),  # type: ignore[arg-type]  # checked when built
            min_count=body.get("min_count"),
            name=body.get("name") or None,
        )


def device_specs(devices: Iterable[Mapping[str, Any]]) -> tuple[DeviceSpec, ...]:
    """The devices of a ``POST /v1/nodes`` body as the records the pool keeps.

    Each device is a mapping with the body's field names (``memory``: text such
    as ``"80GiB"``, or bytes; ``arch`` and ``frameworks`` optional). A device's
    memory is read before its other fields, as the service always read them, so
    a device wrong in several ways gets the message it always got. Raises
    :class:`PoolInputError` naming the device and the field.
    """
    return tuple(
        DeviceSpec(
            id=d["id"],
            vendor=d["vendor"],
            model=d["model"],
            memory_bytes=parse_memory(d["memory"], what=f"device {d['id']} memory"),
            arch=d.get("arch", ""),
            frameworks=d.get("frameworks", {}),
        )
        for d in devices
    )
