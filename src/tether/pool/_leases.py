"""The open leases of :class:`~tether.pool._state.PoolState`: a table, pure like the state.

:class:`LeaseTable` keeps each open lease, the deadline by which it must beat
again, and the restored leases the inventory could not hold (to be ended on
the next event). It holds no reference to any other part of the state:
opening and ending a lease also move the placement index, the node's lease
set and the team's books, which :class:`~tether.pool._tables.PoolTables` does
in one place (:meth:`~tether.pool._tables.PoolTables.open_lease`,
:meth:`~tether.pool._tables.PoolTables.end_lease`).

Leases end on release, when their session ends at the acceptor (at the time
it measured, however late the report), on expiry (no heartbeat for
``lease_timeout_s``, ended at their last heartbeat), on node loss, on a device
disappearing from the node's report, and on drain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from tether.pool._deadlines import Deadlines
from tether.pool._model import EndReason, Lease
from tether.pool._values import PoolInputError, PoolNotFoundError

__all__ = ["LeaseTable"]


class LeaseTable:
    """The open leases by id, their deadlines, and the restored ones due to end."""

    def __init__(self, lease_timeout_s: float) -> None:
        self._timeout = lease_timeout_s
        self._leases: dict[str, Lease] = {}
        self._deadlines = Deadlines()
        self._pending_end: list[tuple[str, EndReason]] = []

    def get(self, lease_id: str) -> Lease:
        """The lease; :class:`PoolNotFoundError` if it is not open."""
        try:
            return self._leases[lease_id]
        except KeyError:
            raise PoolNotFoundError(
                f"no open lease {lease_id!r} (it ended, or never existed)"
            ) from None

    def find(self, lease_id: str) -> Lease | None:
        return self._leases.get(lease_id)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        """The open leases, by id."""
        return iter([lease for _, lease in sorted(self._leases.items())])

    def next_deadline(self, now: float) -> float | None:
        """When the next lease expires unless it beats first (``now`` if one is due to end)."""
        due = self._deadlines.next()
        if self._pending_end:
            return now if due is None else min(due, now)
        return due

    def add(self, lease: Lease, now: float) -> None:
        """Add an open lease; it must beat within a full timeout from ``now``.

        :class:`PoolInputError` if its id is open already (a store restoring it twice).
        """
        if lease.id in self._leases:
            raise PoolInputError(f"restore: lease {lease.id!r} appears twice")
        self._leases[lease.id] = lease
        self._deadlines.set(lease.id, now + self._timeout)

    def add_pending(self, lease: Lease, reason: EndReason) -> None:
        """Add a restored lease that nothing can hold: it ends on the next event."""
        if lease.id in self._leases:
            raise PoolInputError(f"restore: lease {lease.id!r} appears twice")
        self._leases[lease.id] = lease
        self._pending_end.append((lease.id, reason))

    def renew(self, lease_id: str, now: float) -> None:
        """The lease beat at ``now``."""
        self._leases[lease_id] = replace(self._leases[lease_id], last_heartbeat=now)
        self._deadlines.set(lease_id, now + self._timeout)

    def pop(self, lease_id: str) -> Lease:
        """Take an open lease out (and its deadline)."""
        lease = self._leases.pop(lease_id)
        self._deadlines.discard(lease_id)
        return lease

    def pop_pending(self) -> tuple[Lease, EndReason] | None:
        """The next restored lease due to end (still open), or None."""
        while self._pending_end:
            lease_id, reason = self._pending_end.pop(0)
            lease = self._leases.get(lease_id)
            if lease is not None:
                return lease, reason
        return None

    def pop_expired(self, now: float) -> Lease | None:
        """A lease whose deadline passed by ``now`` (still open; no longer timed), or None."""
        lease_id = self._deadlines.pop_due(now)
        return None if lease_id is None else self._leases[lease_id]
