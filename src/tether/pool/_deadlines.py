"""Deadlines by key, soonest first: when each node is lost, each lease expires.

A heap with lazy deletion: setting a key again or dropping it leaves the old
entry in the heap, and entries that no longer match the key's deadline are
skipped when they reach the top. Ties go to the smaller key, so the same
events always expire things in the same order.
"""

from __future__ import annotations

import heapq

__all__ = ["Deadlines"]


class Deadlines:
    """Each key's one deadline; :meth:`pop_due` hands out keys whose time has come."""

    __slots__ = ("_at", "_heap")

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def set(self, key: str, at: float) -> None:
        """Give ``key`` the deadline ``at`` (replacing any it had)."""
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))

    def discard(self, key: str) -> None:
        """Forget ``key``'s deadline, if it has one."""
        self._at.pop(key, None)

    def next(self) -> float | None:
        """The soonest deadline, or None when no key has one."""
        self._clean()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> str | None:
        """The key with the soonest deadline at or before ``now`` (and forget it), else None."""
        self._clean()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, key = heapq.heappop(self._heap)
        del self._at[key]
        return key

    def _clean(self) -> None:
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
