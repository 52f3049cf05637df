"""What a client asks for when it wants many slices of one shape: :class:`GroupRequest`.

The policy for groups lives in :mod:`tether.pool._groups`; this module holds
only the record (validated when built, like every request), so that the events
can name it without importing the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tether.pool._request import SliceRequest
from tether.pool._values import PoolInputError, check_id, set_field

__all__ = ["MAX_GROUP_SIZE", "GroupRequest", "check_counts"]

#: The most members one group may ask for.
MAX_GROUP_SIZE = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRequest:
    """What a client asks for when it wants many slices of one shape.

    ``shape`` is the per-member request; its ``id`` is the group's id and its
    ``team``, ``user``, ``priority``, ``wait`` and ``queue_timeout_s`` are the
    group's. ``member_ids`` names the members (``max_count`` of them, chosen by
    the caller like request ids); member ``i`` gets the lease ``member_ids[i]``,
    and the placed members are always the first ones. ``name`` is for people.
    """

    shape: SliceRequest
    name: str
    min_count: int
    max_count: int
    member_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.shape, SliceRequest):
            raise PoolInputError("a group's shape must be a SliceRequest")
        check_id(self.name, "group name")
        check_counts(self.min_count, self.max_count)
        ids = tuple(self.member_ids)
        for member in ids:
            check_id(member, "group member id")
        if len(ids) != self.max_count or len(set(ids)) != len(ids) or self.shape.id in ids:
            raise PoolInputError(
                f"a group of up to {self.max_count} needs {self.max_count} distinct member ids, "
                "none equal to the group's id"
            )
        set_field(self, "member_ids", ids)

    @property
    def id(self) -> str:
        return self.shape.id

    @property
    def team(self) -> str:
        return self.shape.team

    @property
    def gang(self) -> bool:
        """All or nothing: ``min_count == max_count``."""
        return self.min_count == self.max_count

    def member(self, index: int) -> SliceRequest:
        """Member ``index``'s own request (the shape under the member's id)."""
        return replace(self.shape, id=self.member_ids[index])

    def describe(self) -> str:
        """``16 x (0.25 of a device)`` or ``4 to 16 x (...)``, for messages."""
        count = str(self.max_count) if self.gang else f"{self.min_count} to {self.max_count}"
        return f"{count} x ({self.shape.describe()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape.to_dict(),
            "name": self.name,
            "min_count": self.min_count,
            "max_count": self.max_count,
            "member_ids": list(self.member_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupRequest:
        if not isinstance(data, Mapping):
            raise PoolInputError("a group request must be an object")
        shape = data.get("shape")
        ids = data.get("member_ids")
        if not isinstance(shape, Mapping) or not isinstance(ids, list | tuple):
            raise PoolInputError("a group request needs a shape and member ids")
        return cls(
            shape=SliceRequest.from_dict(shape),
            name=data.get("name"),  # type: ignore[arg-type]  # validated in __post_init__
            min_count=data.get("min_count"),  # type: ignore[arg-type]
            max_count=data.get("max_count"),  # type: ignore[arg-type]
            member_ids=tuple(ids),
        )


def check_counts(min_count: object, max_count: object) -> None:
    """A group's member counts are whole numbers in ``[1, MAX_GROUP_SIZE]``, min at
    most max; :class:`PoolInputError` naming the first that is not (the one check,
    for the request and for the order the API builds)."""
    for what, n in (("min count", min_count), ("max count", max_count)):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GROUP_SIZE:
            raise PoolInputError(
                f"group {what} must be a whole number from 1 to {MAX_GROUP_SIZE}, got {n!r}"
            )
    assert isinstance(min_count, int) and isinstance(max_count, int)
    if min_count > max_count:
        raise PoolInputError(f"group min count {min_count} is above its max count {max_count}")
