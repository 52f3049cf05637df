"""The core of the pool service: the policy (:class:`PoolState`) driven over the store.

(Over 400 lines: the write path, and what it keeps of the database besides the
state -- the queue-order counter, the nodes' registrations -- which is valid only
as long as the write path says, so it lives beside it.)

:class:`ServiceCore` owns the in-memory state and the one way to change it
(:meth:`ServiceCore.mutate`). The service's parts (:mod:`~tether.pool._nodes`,
:mod:`~tether.pool._sessions`, :mod:`~tether.pool._group_sessions`,
:mod:`~tether.pool._accounting`) each hold the one core and change the pool
only through it; :class:`~tether.pool._service.PoolService` is their facade.

Theory of operation
-------------------
Every change goes through :meth:`ServiceCore.mutate`: inside a *serialised*
database transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock)
the service reads the clock, turns the request into a policy event, feeds it
to the in-memory :class:`PoolState`, writes every decision that comes back,
and bumps a ``generation`` counter. If the transaction fails, the database is
unchanged and the in-memory state is thrown away and rebuilt from the database
on the next change, so the two never disagree for long.

Group commit: changes that arrive while one transaction is being written wait,
and the next writer takes all of them (up to :data:`MAX_BATCH`) into one
transaction, each in its own savepoint, with one commit (one fsync) for the lot.
A change that fails rolls back to its savepoint only, and the state is rebuilt
from the transaction before the next change of the batch. No caller gets its
answer before the commit that holds its change has returned, so what a client
was told is on disk; if the commit fails, every change of the batch fails.
Under load this turns a commit per request into a commit per batch, and takes
the lock once per batch instead of once per request (measured in
``bench/pool_write.py``; figures in docs/performance.md).

Several pool processes may share one PostgreSQL database: each keeps its own
PoolState, and when it takes the lock and finds that the generation moved (some
other process wrote), it rebuilds its state from the database before deciding.
The lock is what makes double allocation impossible; the store re-checks each
device's total share below the policy as a last line of defence.

Rebuilding happens in two ways. At start-up (:meth:`ServiceCore.start`) the
state is restored at *now*: every node and open lease gets one full timeout to
check in again, so restarting the pool does not end live sessions; leases of
clients that died with the pool are then closed at their last heartbeat, which
is all usage counts. When re-syncing with another replica, the state is
restored at the oldest last heartbeat instead, so timeouts keep their true
deadlines, and the next tick ends whatever is overdue.

Reads (listings, usage) go straight to the database and need no lock.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tether._errors import PoolError
from tether._ticket import node_key
from tether.pool._db import Tx
from tether.pool._events import (
    Decision,
    Event,
    Tick,
)
from tether.pool._model import PoolConfig
from tether.pool._persist import Counters, NewSession, persist
from tether.pool._secrets import SecretSource
from tether.pool._state import PoolState
from tether.pool._store import Store
from tether.pool._usage import month_bounds
from tether.pool._values import PoolConflictError, PoolInputError, PoolNotFoundError, parse_memory
from tether.poolapi import Conflict, NotFound, PoolRequestError

__all__ = [
    "MAX_BATCH",
    "ServiceConfig",
    "ServiceCore",
    "Unchanged",
    "opt_memory",
]

T = TypeVar("T")

#: The most changes one group commit takes: bounds how long the first waits.
MAX_BATCH = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Knobs of the service around the policy.

    ``heartbeat_skew_s``: how far a node's clock (``sent_at``) may differ from
    the pool's before its heartbeat is rejected. ``ticket_ttl_s``: life of a
    signed ticket.
    """

    policy: PoolConfig = field(default_factory=PoolConfig)
    heartbeat_skew_s: float = 30.0
    ticket_ttl_s: float = 300.0


def _policy_error(exc: PoolError) -> PoolRequestError:
    """The API error for an error the policy raised on bad input."""
    message = str(exc)
    if isinstance(exc, PoolNotFoundError):
        return NotFound(message)
    if isinstance(exc, PoolConflictError):
        return Conflict(message)
    return PoolRequestError(message)


@dataclass(slots=True, eq=False)
class _Change:
    """One caller's change waiting for (or done by) a group commit."""

    work: Callable[[Tx, PoolState, float], Any]
    ready: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class _NothingWritten(Exception):
    """Every change of a batch failed: roll the (empty) transaction back."""


class Unchanged(Exception):
    """Carries an API error out of a transaction that must roll back."""

    def __init__(self, error: PoolRequestError) -> None:
        super().__init__(str(error))
        self.error = error


def opt_memory(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_memory(value, what=what)
    except PoolInputError as exc:
        raise PoolRequestError(str(exc)) from None


class ServiceCore:
    """The policy over the store: restoring it, and making every change (see above).

    ``clock`` is injectable for tests. The parts call :meth:`mutate` with a
    ``work(tx, state, now)`` that feeds events through :meth:`handle` and writes
    their decisions with :meth:`persist`.
    """

    def __init__(
        self,
        store: Store,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        secret: SecretSource | None = None,
    ) -> None:
        self.store = store
        self.config = config or ServiceConfig()
        self.clock = clock
        # The secret every ticket key derives from lives outside the database
        # (tether.pool._secrets): replicas are given the same one. Without one
        # (tests), a random secret that dies with the process.
        self.secret = secret if secret is not None else SecretSource.ephemeral()
        self.secret.load()  # a bad secret file fails the start, not the first request
        # Held while the state changes (a batch is written, the state restored).
        self._lock = threading.Lock()
        # Guards the changes waiting for a group commit and who is writing them.
        self._queue = threading.Lock()
        self._waiting: list[_Change] = []
        self._writing = False
        self._state: PoolState | None = None
        self._generation = -1
        # The last queue-order number handed out, read from the database once and
        # saved once a batch (None: read it at the next need); good while the
        # generation is the one this process last wrote.
        self._seq: int | None = None
        self._seq_saved = True
        # Node name -> its registration's hash (what tickets are signed with), read
        # under the lock: forgotten with the seq, and a node's when it registers.
        self._registrations: dict[str, str | None] = {}
        self._now = 0.0  # the time of the change in progress
        self._dirty = False  # the change in progress has altered the in-memory state
        self.counters = Counters()

    def start(self) -> None:
        """Restore the policy from the database (start-up), ending what is overdue."""
        with self._lock, self.store.db.transaction(serialize=True) as tx:
            now = self._now = self.clock()
            self._state = self._restore(tx, at=now)
            self._forget_cached()
            self.persist(tx, self._state.handle(Tick(now=now)))
            self._save_seq(tx)
            self._generation = self.store.bump_generation_tx(tx)

    def _restore(self, tx: Tx, *, at: float | None) -> PoolState:
        nodes = self.store.node_records_tx(tx)
        open_leases = self.store.leases_tx(tx, open_only=True)
        now = self.clock()
        month_start, _ = month_bounds(now)
        if at is None:
            # Re-sync: restore at the oldest heartbeat so no deadline is stretched.
            beats = [n.last_heartbeat for n in nodes if not n.lost]
            beats += [lease.last_heartbeat for lease in open_leases]
            at = max(month_start, min([now, *beats]))
        month_leases = [
            lease
            for lease in self.store.leases_tx(tx, overlapping=(month_start, math.inf))
            if lease.end is not None
        ]
        return PoolState.restore(
            self.config.policy,
            now=at,
            nodes=nodes,
            leases=[*open_leases, *month_leases],
            queue=[*self.store.queue_tx(tx), *self.store.group_queue_tx(tx)],
            quotas=self.store.policy_quotas_tx(tx),
        )

    def mutate(self, work: Callable[[Tx, PoolState, float], T]) -> T:
        """Run ``work(tx, state, now)`` serialised against every other change.

        Returns what ``work`` returned once the transaction holding it has
        committed; raises what it raised (an :class:`Unchanged` as its API
        error), or the commit's error, and then nothing of it was written.
        """
        change = _Change(work)
        with self._queue:
            self._waiting.append(change)
            lead = not self._writing
            self._writing = True
        if not lead:
            # Woken once: when a batch holding this change has been written, or
            # to write the next batch (the writer before hands over to one
            # waiter, rather than waking them all to race for it).
            change.ready.wait()
            lead = not change.done
        if lead:
            try:
                while not change.done:
                    self._write_waiting()
            finally:
                with self._queue:
                    after = self._waiting[0] if self._waiting else None
                    self._writing = after is not None
                if after is not None:
                    after.ready.set()
        if change.error is not None:
            raise change.error
        return change.result  # type: ignore[no-any-return]

    def _write_waiting(self) -> None:
        """One transaction for the changes waiting: each in a savepoint, one commit."""
        with self._lock:
            # Taken once the lock is ours: what queued while a tick or a restore
            # held it joins this batch.
            with self._queue:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
            try:
                with self.store.db.transaction(serialize=True) as tx:
                    seen = self.store.generation_tx(tx)
                    if seen != self._generation:
                        self._state = None  # another replica wrote: rebuild
                        self._forget_cached()
                    # One change alone needs no savepoint: if it fails, the whole
                    # transaction rolls back (two statements fewer when not busy).
                    alone = len(batch) == 1
                    written = sum(self._apply(tx, change, savepoint=not alone) for change in batch)
                    if not written:
                        raise _NothingWritten
                    self._save_seq(tx)
                    generation = self.store.bump_generation_tx(tx, seen)
            except _NothingWritten:
                if self._state is not None:
                    self._generation = seen  # restored from what the database holds
            except BaseException as exc:
                self._state = None  # the database rolled back: rebuild from it next time
                self._forget_cached()
                for change in batch:
                    if change.error is None:
                        change.result, change.error = None, exc
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt, SystemExit: every change has its error
            else:
                self._generation = generation
            finally:
                for change in batch:
                    change.done = True
                    change.ready.set()

    def _apply(self, tx: Tx, change: _Change, *, savepoint: bool = True) -> bool:
        """Run one change (in its savepoint); True if it wrote, False if it failed.

        Without ``savepoint`` a failed change may leave writes behind: the caller
        must then roll the transaction back.
        """
        now = self._now = self.clock()
        self._dirty = False
        try:
            with tx.savepoint() if savepoint else nullcontext():
                if self._state is None:
                    self._state = self._restore(tx, at=None)
                change.result = change.work(tx, self._state, now)
        except Unchanged as exc:
            error: Exception = exc.error
        except PoolRequestError as exc:
            error = exc  # refused before or after it changed the state (see _dirty)
        except Exception as exc:
            self._dirty = True  # a bug or the store's: trust nothing in memory
            error = exc
        else:
            return True
        if self._dirty:
            self._state = None  # its part rolled back: rebuild from the transaction
        change.error = error
        return False

    def handle(self, state: PoolState, event: Event) -> list[Decision]:
        """Feed one event; bad input raises an API error and changes nothing."""
        try:
            decisions = state.handle(event)
            self._dirty = True
            return decisions
        except (PoolInputError, PoolNotFoundError, PoolConflictError) as exc:
            raise Unchanged(_policy_error(exc)) from exc

    def feed(self, tx: Tx, state: PoolState, event: Event) -> list[Decision]:
        """:meth:`handle` one event and :meth:`persist` its decisions; returns them."""
        decisions = self.handle(state, event)
        self.persist(tx, decisions)
        return decisions

    def persist(self, tx: Tx, decisions: Iterable[Decision], new: NewSession | None = None) -> None:
        """Write decisions (:func:`~tether.pool._persist.persist`) at the change's time.
        ``new``: the session row to insert with its first decision."""
        persist(
            tx,
            self.store,
            self.counters,
            decisions,
            now=self._now,
            new=new,
            next_seq=lambda: self.next_seq(tx),
        )

    def next_seq(self, tx: Tx) -> int:
        """The next queue-order number, inside the serialised transaction of a change.

        Handed out from memory (the counter is read once, then only when another
        replica wrote or a batch failed) and saved once a batch, before its
        commit: two statements a new session fewer. A change that fails after
        taking one leaves a gap, which orders nothing wrongly.
        """
        if self._seq is None:
            self._seq = self.store.seq_tx(tx)
        self._seq += 1
        self._seq_saved = False
        return self._seq

    def _forget_cached(self) -> None:
        """What this process keeps of the database besides the state may be stale."""
        self._seq = None
        self._registrations.clear()

    def _save_seq(self, tx: Tx) -> None:
        if not self._seq_saved and self._seq is not None:
            self.store.set_seq_tx(tx, self._seq)
            self._seq_saved = True

    # ------------------------------------------------------------ ticket keys

    @staticmethod
    def registration_hash(registration: str) -> str:
        """What the database keeps of a registration id (which is a bearer credential)."""
        return hashlib.sha256(registration.encode("utf-8")).hexdigest()

    def registration_of(self, tx: Tx, node: str) -> str | None:
        return self.store.registration_tx(tx, node)

    def registration_in_change(self, tx: Tx, node: str) -> str | None:
        """:meth:`registration_of`, inside a change only: from memory once read (a
        placement's ticket needs it, and it changes only when the node registers)."""
        try:
            return self._registrations[node]
        except KeyError:
            found = self._registrations[node] = self.store.registration_tx(tx, node)
            return found

    def registration_changed(self, node: str) -> None:
        """``node`` has a new registration (in the change in progress)."""
        self._registrations.pop(node, None)

    def signing_key(self, node: str, registration: str | None) -> bytes:
        """The key ``node``'s tickets are signed with now (its current registration's)."""
        return node_key(self.secret.load().current, node, registration or "")

    def node_keys(self, node: str, registration: str | None, now: float) -> list[bytes]:
        """Every key a ticket for ``node`` may carry at ``now``: current first."""
        return [node_key(s, node, registration or "") for s in self.secret.load().verifying(now)]

    def tick(self) -> None:
        """Let time pass: lose silent nodes, expire leases, time out the queue."""

        def work(tx: Tx, state: PoolState, now: float) -> None:
            self.feed(tx, state, Tick(now=now))

        self.mutate(work)

    def next_deadline(self) -> float | None:
        state = self._state
        return state.next_deadline() if state is not None else None

    # ------------------------------------------------------------ for the parts

    def queue_position(self, request_id: str) -> int | None:
        """A waiting request's place in line as this process's state has it (None:
        not waiting, or no state yet). Reads under the lock, not in a transaction."""
        state = self._state
        if state is None:
            return None
        with self._lock:
            try:
                return state.queue_position(request_id)
            except PoolNotFoundError:
                return None

    def forget_state(self) -> None:
        """The change in progress rewrote history the state's books hold (a lease's
        end moved back): rebuild the state from the database before the next change."""
        self._state = None
