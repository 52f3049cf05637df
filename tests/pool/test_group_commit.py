"""Group commit: changes that wait together are written in one transaction, each
in its own savepoint, on SQLite and on PostgreSQL for real.

The batch is made deterministic by holding the service's write lock while the
callers queue up (the same lock a tick or a restore holds), then letting go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tether.pool import _core
from tether.pool._auth import Principal
from tether.pool._core import MAX_BATCH
from tether.pool._db import Tx
from tether.pool._orders import SliceOrder
from tether.pool._service import PoolService
from tether.pool._session_views import SessionView
from tether.pool._state import PoolState
from tether.pool._store import Store
from tether.poolapi._problems import PoolRequestError

from ._pooltest import DEVICE_SPECS, db_url  # noqa: F401  (fixture)

WAIT_S = 30.0


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.close()


def _setup(store: Store) -> tuple[PoolService, Principal, Principal]:
    service = PoolService(store)
    service.start()
    store.create_team("ml", now=1.0)
    store.create_user("ann", is_admin=False, teams=["ml"], now=1.0)
    ann = store.authenticate(store.create_token(kind="user", user="ann", now=1.0)[1])
    node = store.authenticate(store.create_token(kind="node", node_name="gpu1", now=1.0)[1])
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    return service, ann, node


def _generation(store: Store) -> int:
    with store.db.transaction() as tx:
        return store.generation_tx(tx)


def _in_one_batch(service: PoolService, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads that all queue while the write lock is held; each
    result is what the call returned or the exception it raised."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with service.core._lock:
        for t in threads:
            t.start()
        deadline = time.monotonic() + WAIT_S
        while len(service.core._waiting) < len(calls):
            assert time.monotonic() < deadline, "the callers never queued"
            time.sleep(0.01)
    for t in threads:
        t.join(WAIT_S)
        assert not t.is_alive()
    return results


def test_changes_waiting_together_share_one_commit(store: Store) -> None:
    service, ann, _node = _setup(store)
    before = _generation(store)
    calls = [lambda: service.request_slice(ann, SliceOrder(fraction=0.25, wait=False))] * 6
    results = _in_one_batch(service, calls)
    assert all(isinstance(r, SessionView) and r.state == "placed" for r in results), results
    assert _generation(store) == before + 1  # one transaction for the six
    assert len({r.id for r in results}) == 6
    with store.db.transaction() as tx:
        placed = store.sessions_tx(tx, states=("placed",))
        assert sorted(s.id for s in placed) == sorted(r.id for r in results)
        alloc = store.allocation_tx(tx)
    assert sum(share for share, _mem in alloc.values()) == pytest.approx(1.5)
    assert all(share <= 1.0 for share, _mem in alloc.values())


def test_a_failing_change_is_undone_alone_and_the_batch_commits(store: Store) -> None:
    service, ann, node = _setup(store)
    first = service.request_slice(ann, SliceOrder(fraction=0.5, wait=False))

    def buggy(tx: Tx, state: PoolState, now: float) -> None:
        # Writes, then fails as a bug would: its write must not survive.
        tx.execute("INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)", ("t-x", "x", now))
        raise RuntimeError("a bug in one change")

    calls: list[Callable[[], Any]] = [
        lambda: service.request_slice(ann, SliceOrder(fraction=0.25, wait=False)),
        lambda: service.core.mutate(buggy),
        # Refused inside the transaction (its clock is an hour off): changes nothing.
        lambda: service.node_heartbeat(
            node, "gpu1", sent_at=time.time() + 3600, device_ids=None, sessions=[]
        ),
        lambda: service.release(ann, first.id),
        lambda: service.request_slice(ann, SliceOrder(fraction=0.25, wait=False)),
    ]
    before = _generation(store)
    placed, bug, skew, released, placed2 = _in_one_batch(service, calls)
    assert isinstance(bug, RuntimeError)
    assert isinstance(skew, PoolRequestError) and "clock skew" in str(skew)
    assert placed.state == placed2.state == "placed"
    assert released.state == "ended"
    assert _generation(store) == before + 1
    with store.db.transaction() as tx:
        assert tx.one("SELECT id FROM teams WHERE name = 'x'") is None
        live = sorted(s.id for s in store.sessions_tx(tx, states=("placed",)))
        alloc = store.allocation_tx(tx)
    assert live == sorted([placed.id, placed2.id])
    assert sum(share for share, _mem in alloc.values()) == pytest.approx(0.5)
    # The in-memory policy agrees with the database after the bug's rebuild: the
    # rest of the devices is still there to place (1.5 devices free).
    more = [service.request_slice(ann, SliceOrder(fraction=0.5, wait=False)) for _ in range(3)]
    assert [m.state for m in more] == ["placed"] * 3


def test_a_batch_where_every_change_fails_writes_nothing(store: Store) -> None:
    service, _ann, node = _setup(store)
    before = _generation(store)
    skewed = time.time() + 3600
    calls = [
        lambda: service.node_heartbeat(node, "gpu1", sent_at=skewed, device_ids=None, sessions=[])
    ] * 3
    results = _in_one_batch(service, calls)
    assert all(isinstance(r, PoolRequestError) for r in results)
    assert _generation(store) == before


def test_more_callers_than_one_batch_all_get_their_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_BATCH >= 16
    monkeypatch.setattr(_core, "MAX_BATCH", 4)  # as many threads as MAX_BATCH would be many
    service, ann, _node = _setup(store)
    n = 4 + 3
    calls = [lambda: service.request_slice(ann, SliceOrder(fraction=0.25, wait=False))] * n
    before = _generation(store)
    results = _in_one_batch(service, calls)
    assert all(isinstance(r, SessionView) and r.state == "placed" for r in results), [
        r for r in results if not isinstance(r, SessionView)
    ][:3]
    assert _generation(store) == before + 2  # a full batch, then the rest
