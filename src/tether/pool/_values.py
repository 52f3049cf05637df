"""Single values of the pool: sizes, shares, ids and times, parsed and checked.

Units, fixed once for the whole pool:

- time: float seconds since the Unix epoch (UTC). Nothing here reads a clock.
- memory: int bytes. :func:`parse_memory` accepts ``"8GiB"``, ``"512MiB"``,
  ``"8G"`` (read as GiB: accelerator memory is sold in binary units) or an int.
- compute share: a fraction of one device in ``(0, 1]``. Internally shares are
  integers in units of ``1 / SHARE_SCALE`` (:func:`share_units`), so that sums
  of fractions never drift: three slices of ``1/3`` fill a device exactly
  (0.3333 each) instead of over-committing it by a float epsilon.

The placement policy's name becomes a :class:`PlacementPolicy` here too.

Bad input raises :class:`PoolInputError` (a :class:`ValueError` too) with a
message that names the field, the value and what would be accepted. The
``check_*`` helpers and :func:`from_dict` are what the records of
:mod:`tether.pool._model` and :mod:`tether.pool._request` validate with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from tether import _units
from tether._errors import PoolError
from tether._units import MAX_MEMORY_BYTES, SHARE_SCALE, format_memory

__all__ = [
    "MAX_MEMORY_BYTES",
    "PLACEMENT_POLICIES",
    "SHARE_SCALE",
    "PlacementPolicy",
    "PoolConflictError",
    "PoolInputError",
    "PoolNotFoundError",
    "check_id",
    "check_positive_seconds",
    "check_time",
    "format_memory",
    "format_share",
    "from_dict",
    "parse_fraction",
    "parse_memory",
    "set_field",
    "share_units",
]

_T = TypeVar("_T")


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


def parse_memory(value: str | int, *, what: str = "memory size") -> int:
    """:func:`tether._units.parse_memory`, raising :class:`PoolInputError`."""
    return _units.parse_memory(value, what=what, error=PoolInputError)


def parse_fraction(value: str | float, *, what: str = "fraction") -> float:
    """:func:`tether._units.parse_fraction`, raising :class:`PoolInputError`."""
    return _units.parse_fraction(value, what=what, error=PoolInputError)


def share_units(fraction: float) -> int:
    """The integer share of ``fraction`` of a device (``SHARE_SCALE`` is one device)."""
    return round(fraction * SHARE_SCALE)


def format_share(units: int) -> str:
    """Render share units as a number of devices: ``1.50``."""
    return f"{units / SHARE_SCALE:.2f}"


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise PoolInputError(
            f"{what} must be a non-empty printable string of at most 200 characters, got {value!r}"
        )
    return value


def check_time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PoolInputError(
            f"{what} must be a finite number of seconds since the epoch, got {value!r}"
        )
    if value < 0:
        raise PoolInputError(f"{what} must not be before 1970, got {value!r}")
    return float(value)


def check_positive_seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PoolInputError(f"{what} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise PoolInputError(
            f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        )
    return float(value)


def set_field(obj: object, name: str, value: object) -> None:
    # Frozen dataclasses normalise their own fields in __post_init__ this way.
    object.__setattr__(obj, name, value)


def from_dict(cls: type[_T], data: Mapping[str, Any], names: tuple[str, ...]) -> _T:
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


# --------------------------------------------------------------------------- policy


class PlacementPolicy(StrEnum):
    """How placement picks among devices with room (:mod:`tether.pool._placement`).

    ``best-fit`` packs fractions onto the fullest device that still fits (the
    default: it keeps whole devices free for whole-device requests);
    ``spread`` puts each slice on the emptiest device (least interference);
    ``first-fit`` takes the first device in inventory order (the baseline).

    A :class:`StrEnum`, so JSON, config files and the CLI see the same strings;
    text becomes a member once, where it enters (:meth:`parse`).
    """

    BEST_FIT = "best-fit"
    SPREAD = "spread"
    FIRST_FIT = "first-fit"

    @classmethod
    def parse(cls, value: object) -> PlacementPolicy:
        """The member named by ``value``; :class:`PoolInputError` naming the choices if none."""
        if isinstance(value, str):  # a member is a str too
            try:
                return cls(value)
            except ValueError:
                pass
        raise PoolInputError(f"placement policy must be one of {PLACEMENT_POLICIES}, got {value!r}")

    @classmethod
    def parse_optional(cls, value: object) -> PlacementPolicy | None:
        """:meth:`parse`, with None for "the pool's default"."""
        return None if value is None else cls.parse(value)


PLACEMENT_POLICIES: tuple[str, ...] = tuple(p.value for p in PlacementPolicy)
