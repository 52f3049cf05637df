"""Group requests through the service and the store, on SQLite and on PostgreSQL for real."""

from __future__ import annotations

import re

import pytest

from tether.pool._auth import Principal
from tether.pool._model import PoolConfig
from tether.pool._orders import GroupOrder, SliceOrder
from tether.pool._service import PoolService, ServiceConfig
from tether.pool._store import Store
from tether.pool._values import PoolInputError
from tether.poolapi._problems import Forbidden, NotFound, Refused

from ._pooltest import DEVICE_SPECS, FakeClock, db_url  # noqa: F401  (fixtures)


@pytest.fixture
def store(db_url: str) -> Store:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.close()


def _service(store: Store, clock: FakeClock) -> PoolService:
    cfg = ServiceConfig(
        policy=PoolConfig(node_timeout_s=7200.0, lease_timeout_s=7200.0), heartbeat_skew_s=30.0
    )
    service = PoolService(store, cfg, clock=clock)
    service.start()
    return service


def _setup(store: Store, clock: FakeClock) -> tuple[PoolService, Principal, Principal, Principal]:
    service = _service(store, clock)
    store.create_team("ml", now=1.0)
    store.create_team("cv", now=1.0)
    store.create_user("ann", is_admin=False, teams=["ml"], now=1.0)
    store.create_user("bob", is_admin=False, teams=["cv"], now=1.0)
    ann = store.authenticate(store.create_token(kind="user", user="ann", now=1.0)[1])
    bob = store.authenticate(store.create_token(kind="user", user="bob", now=1.0)[1])
    node = store.authenticate(store.create_token(kind="node", node_name="gpu1", now=1.0)[1])
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    return service, ann, bob, node


def test_a_group_is_placed_in_one_call_with_a_ticket_per_member(store: Store) -> None:
    clock = FakeClock()
    service, ann, bob, _node = _setup(store, clock)
    g = service.request_group(
        ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="sweep", max_count=8)
    )
    assert (g.state, g.placed_count, g.running, g.name) == ("placed", 8, 8, "sweep")
    assert [m.index for m in g.members] == list(range(8))
    assert all(m.state == "placed" and m.ticket for m in g.members)
    assert {m.address for m in g.members} == {"tcp://h:7447"}
    # Members are ordinary sessions: listed, and the devices are full.
    assert len(service.sessions(ann)) == 8
    with store.db.transaction() as tx:
        assert store.allocation_tx(tx) == {
            ("gpu1", "cuda:0"): (1.0, 80 << 30),
            ("gpu1", "cuda:1"): (1.0, 80 << 30),
        }
    # By name, too; one member alone (what a pod asks for); another team sees none of it.
    assert service.group(ann, "sweep").id == g.id
    third = service.group_member(ann, "sweep", 3)
    assert (third.index, third.id, third.state) == (3, f"{g.id}-3", "placed")
    assert third.ticket
    with pytest.raises(NotFound, match="has no placed member 8"):
        service.group_member(ann, "sweep", 8)
    with pytest.raises(NotFound):
        service.group_member(bob, g.id, 3)
    with pytest.raises(NotFound):
        service.group(bob, "sweep")
    with pytest.raises(NotFound):
        service.group(bob, g.id)
    with pytest.raises(Forbidden, match="not a member of team 'ml'"):
        service.request_group(
            bob, GroupOrder(shape=SliceOrder(fraction=0.25, team="ml"), max_count=1)
        )


def test_a_gang_waits_as_a_unit_survives_a_restart_and_is_placed_when_room_appears(
    db_url: str,  # noqa: F811
) -> None:
    clock = FakeClock()
    store = Store.open(db_url)
    service, ann, _bob, _node = _setup(store, clock)
    first = service.request_group(
        ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="a", max_count=8)
    )
    with pytest.raises(
        Refused, match=re.escape("room for 0 of 0.25 of a device now, needs 4")
    ) as no_wait:
        service.request_group(
            ann, GroupOrder(shape=SliceOrder(fraction=0.25, wait=False), name="b", max_count=4)
        )
    assert no_wait.value.detail["reason"] == "capacity"
    second = service.request_group(
        ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="b", max_count=4)
    )
    assert (second.state, second.position, second.members) == ("queued", 1, ())
    store.close()
    # The pool restarts: the waiting group is still one entry in the queue.
    store = Store.open(db_url)
    service = _service(store, clock)
    assert service.group(ann, "b").state == "queued"
    clock.advance(60)
    service.cancel_group(ann, first.id)
    done = service.group(ann, "a")
    assert (done.state, done.running, done.ended) == ("ended", 0, 8)
    placed = service.group(ann, "b")
    assert (placed.state, placed.placed_count) == ("placed", 4)
    assert [g.name for g in service.groups(ann, state="placed")] == ["b"]
    store.close()


def test_a_group_that_can_never_fit_is_refused_at_once(store: Store) -> None:
    clock = FakeClock()
    service, ann, _bob, _node = _setup(store, clock)
    never = "hold at most 8 of 0.25 of a device; the group needs at least 9"
    with pytest.raises(Refused, match=re.escape(never)) as exc:
        service.request_group(
            ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="big", max_count=9)
        )
    assert exc.value.detail["reason"] == "unsatisfiable"
    refused = service.group(ann, "big")
    assert (refused.state, refused.end_reason) == ("ended", "unsatisfiable")
    # A group that cannot be is no order at all: refused when built, before the service.
    with pytest.raises(PoolInputError, match="min count 5 is above its max count 4"):
        GroupOrder(shape=SliceOrder(fraction=0.25), max_count=4, min_count=5)
    with store.db.transaction() as tx:
        assert store.allocation_tx(tx) == {}


def test_quota_counts_the_whole_group(store: Store) -> None:
    clock = FakeClock()
    service, ann, _bob, _node = _setup(store, clock)
    store.create_user("root", is_admin=True, teams=(), now=1.0)
    root = store.authenticate(store.create_token(kind="user", user="root", now=1.0)[1])
    service.set_quota(root, "ml", max_share=1.0, max_memory=None, device_hours_per_month=None)
    with pytest.raises(Refused, match=re.escape("request 2.00 exceeds by 1.00")) as exc:
        service.request_group(
            ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="g", max_count=8)
        )
    assert exc.value.detail["limit"] == "max_share"
    g = service.request_group(
        ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="h", max_count=8, min_count=2)
    )
    assert g.placed_count == 4


def test_usage_per_group_and_per_member(store: Store) -> None:
    clock = FakeClock()
    service, ann, bob, _node = _setup(store, clock)
    g = service.request_group(
        ann, GroupOrder(shape=SliceOrder(fraction=0.25), name="sweep", max_count=4)
    )
    single = service.request_slice(ann, SliceOrder(fraction=0.5))
    clock.advance(3600)
    service.cancel_group(ann, "sweep")
    service.release(ann, single.id)
    [row] = service.group_usage(ann, team=None, month=None)
    assert (row.group, row.group_id, row.members, row.sessions) == (
        "sweep",
        g.id,
        4,
        4,
    )
    assert row.device_seconds == pytest.approx(4 * 0.25 * 3600)
    assert row.peak_share == pytest.approx(1.0)
    assert service.group_usage(bob, team=None, month=None) == []
    members = service.group(ann, "sweep").members
    assert all(m.end_reason == "released" for m in members)
    # The per-user usage still counts every member, beside the single session.
    [mine] = [r for r in service.usage(ann, team="ml", user=None, month=None) if r.user == "ann"]
    assert mine.sessions == 5
