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
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from tether._errors import PoolError

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

#: One whole device, in share units. A share of ``f`` is ``round(f * SHARE_SCALE)``.
SHARE_SCALE = 10_000

#: Largest memory size accepted anywhere (1 PiB): anything above is a typo
#: (``8GB`` written as ``8000000000000``), not a device.
MAX_MEMORY_BYTES = 1 << 50


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
