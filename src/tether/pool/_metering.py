"""What an acceptor reports of a session in a node heartbeat, and what of it is billed.

A report names the session, when it ended (if it did, by the acceptor's
clock) and its metering figures. Figures are held to the lease: a report
cannot bill (or claim) time outside the lease it ran under (:func:`bounded`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionReport", "bounded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionReport:
    """One session in a node heartbeat: its id, its end (None: still running),
    and its metering figures (the report's other fields that are set)."""

    session_id: str
    ended_at: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, meter: Mapping[str, Any]) -> SessionReport:
        """A report from the API's JSON (already checked against its schema)."""
        return cls(
            session_id=meter["session_id"],
            ended_at=meter.get("ended_at"),
            figures={
                k: v
                for k, v in meter.items()
                if k not in ("session_id", "ended_at") and v is not None
            },
        )


#: Metering figures that are time integrals or durations, and the high-water mark
#: each integral is bounded by over the lease's span.
_INTEGRALS = {
    "memory_byte_seconds": "memory_hwm",
    "device_memory_byte_seconds": "device_memory_hwm",
}


def bounded(figures: dict[str, Any], span: float) -> dict[str, Any]:
    """``figures`` held to what a session inside a lease of ``span`` seconds can have
    used: a report cannot bill (or claim) time outside the lease."""
    span = max(span, 0.0)
    out = dict(figures)
    if isinstance(out.get("wall_seconds"), int | float):
        out["wall_seconds"] = min(float(out["wall_seconds"]), span)
    for integral, peak in _INTEGRALS.items():
        value, hwm = out.get(integral), out.get(peak)
        if isinstance(value, int | float) and isinstance(hwm, int | float):
            out[integral] = min(float(value), float(hwm) * span)
    return out
