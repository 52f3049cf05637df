"""Units every part of Tether reads the same way: a fraction of a device, a memory
size, a month. One parse and one message each, whoever reads the value: the pool's
API and policy, the CLI's options, ``tether.lease()``, a session ticket, a slice.

Each parser names the value in its message (``what``) and raises ``error`` (default
:class:`ValueError`), which callers set to their own class: the pool's
``PoolInputError`` (an HTTP 400), a ticket's ``TicketMalformed``, the acceptor's
``SliceError``. The class must take the message as its only argument.

- memory: int bytes. :func:`parse_memory` accepts ``"8GiB"``, ``"512MiB"``, ``"8G"``
  (read as GiB: accelerator memory is sold in binary units), ``"8GB"`` (decimal) or an
  int, up to :data:`MAX_MEMORY_BYTES`.
- fraction of a device: a number in ``(0, 1]``, to ``1 / SHARE_SCALE``
  (:func:`parse_fraction`; the pool counts shares as integers of that unit).
- month: ``"YYYY-MM"``, a UTC calendar month (:func:`parse_month`).

Standard library only: the client and the acceptor import it.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "MAX_MEMORY_BYTES",
    "SHARE_SCALE",
    "format_memory",
    "parse_fraction",
    "parse_memory",
    "parse_month",
]

#: One whole device, in share units. A share of ``f`` is ``round(f * SHARE_SCALE)``.
SHARE_SCALE = 10_000

#: Largest memory size accepted anywhere (1 PiB): anything above is a typo
#: (``8GB`` written as ``8000000000000``), not a device.
MAX_MEMORY_BYTES = 1 << 50


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


def parse_memory(
    value: str | int, *, what: str = "memory size", error: type[Exception] = ValueError
) -> int:
    """Return a memory size in bytes.

    Takes an int (bytes) or a string: ``"8GiB"``, ``"512MiB"``, ``"1.5GiB"``,
    ``"8G"`` / ``"8g"`` (binary: GiB), ``"8GB"`` (decimal: 10**9 bytes), ``"4096"``.
    Raises ``error`` for anything else, for zero or negative sizes,
    and for sizes above :data:`MAX_MEMORY_BYTES` (1 PiB); ``what`` names the
    value in the message.
    """
    if isinstance(value, bool):
        raise error(f"{what} must be a size such as '8GiB' or a number of bytes, not {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _MEMORY_RE.match(value)
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _MEMORY_UNITS:
            raise error(
                f"{what} {value!r} is not a size: write a number and a unit, such as "
                "'8GiB', '512MiB', '8G' or a plain number of bytes"
            )
        number = float(m.group(1))
        size = math.ceil(number * _MEMORY_UNITS[unit])
    else:
        raise error(f"{what} must be a string such as '8GiB' or an int, not {type(value).__name__}")
    if size <= 0:
        raise error(f"{what} must be positive, got {value!r}")
    if size > MAX_MEMORY_BYTES:
        raise error(
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


def parse_fraction(
    value: str | float, *, what: str = "fraction", error: type[Exception] = ValueError
) -> float:
    """Return a device fraction in ``(0, 1]``, rounded to 1/SHARE_SCALE.

    Accepts a float or int (``0.25``, ``1``), a decimal string (``"0.25"``) or a
    percentage (``"25%"``). Raises ``error`` for negative, zero,
    above-one, non-finite values and for fractions smaller than one share unit.
    """
    if isinstance(value, bool):
        raise error(f"{what} must be a number in (0, 1], not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise error(
                f"{what} {value!r} is not a number: write a fraction such as 0.25 or 25%"
            ) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise error(f"{what} must be a number in (0, 1], not {type(value).__name__}")
    if not math.isfinite(number) or number <= 0 or number > 1:
        raise error(
            f"{what} must be greater than 0 and at most 1 (one whole device), got {value!r}; "
            "ask for several whole devices with a count instead"
        )
    units = round(number * SHARE_SCALE)
    if units < 1:
        raise error(f"{what} {value!r} is below the smallest share, 1/{SHARE_SCALE}")
    return units / SHARE_SCALE


_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def parse_month(month: str, *, what: str = "month", error: type[Exception] = ValueError) -> str:
    """``month`` as ``"YYYY-MM"`` (surrounding blanks dropped); ``error`` with an example
    otherwise."""
    text = month.strip() if isinstance(month, str) else ""
    if not _MONTH.fullmatch(text):
        raise error(f"{what} {month!r} is not a month: give a UTC month as YYYY-MM, e.g. 2026-11")
    return text
