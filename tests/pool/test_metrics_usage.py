"""The pool's usage, quota and queue-wait series, and session names, over a real
database (SQLite and PostgreSQL) with a clock the test moves."""

from __future__ import annotations

import re

import pytest

from tether.pool._db import open_database
from tether.pool._metrics import PLACEMENT_BUCKETS, Histogram, render
from tether.pool._migrations import MIGRATIONS
from tether.pool._model import PoolConfig
from tether.pool._orders import SliceOrder
from tether.pool._service import PoolService, ServiceConfig
from tether.pool._store import Store
from tether.pool._usage_views import Statistics

from ._pooltest import DEVICE_SPECS, FakeClock, db_url, pg_url  # noqa: F401  (fixtures)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; fails if absent."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{inner}}}" if inner else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"no sample {name}{labels} in:\n{text}"
    return float(match.group(1))


def _world(
    db: str, lease_timeout_s: float = 1e6
) -> tuple[Store, PoolService, FakeClock, object, object]:
    clock = FakeClock()
    store = Store.open(db)
    cfg = ServiceConfig(policy=PoolConfig(node_timeout_s=1e6, lease_timeout_s=lease_timeout_s))
    service = PoolService(store, cfg, clock=clock)
    service.start()
    store.create_team("ml", now=1.0)
    store.create_user("ann", is_admin=False, teams=["ml"], now=1.0)
    ann = store.authenticate(store.create_token(kind="user", user="ann", now=1.0)[1])
    node = store.authenticate(store.create_token(kind="node", node_name="gpu1", now=1.0)[1])
    service.register_node(
        node,
        name="gpu1",
        address="tcp://h:7447",
        devices=DEVICE_SPECS[:1],
        replace=False,
        sent_at=None,
    )
    return store, service, clock, ann, node


def test_usage_counters_quotas_and_queue_waits(db_url: str) -> None:  # noqa: F811
    store, service, clock, ann, _node = _world(db_url)
    try:
        first = service.request_slice(ann, SliceOrder(fraction=0.5, memory_bytes=40 << 30))
        second = service.request_slice(ann, SliceOrder(fraction=0.75, queue_timeout_s=3600))
        assert (first.state, second.state) == ("placed", "queued")
        clock.advance(600)  # the second waits ten minutes for the first to end
        service.release(ann, first.id)
        assert service.session(ann, second.id).state == "placed"
        clock.advance(1200)
        service.heartbeat(ann, second.id)
        text = render(service.statistics())

        # 0.5 of a device for 600 s, then 0.75 for 1200 s (open: up to its last heartbeat)
        assert _sample(text, "tether_pool_team_device_seconds_total", team="ml") == pytest.approx(
            0.5 * 600 + 0.75 * 1200
        )
        assert _sample(text, "tether_pool_team_month_device_seconds", team="ml") == pytest.approx(
            0.5 * 600 + 0.75 * 1200
        )
        gib_s = _sample(text, "tether_pool_team_memory_gib_seconds_total", team="ml")
        assert gib_s >= 40 * 600
        assert _sample(text, "tether_pool_team_leases_total", team="ml") == 2
        # one placed at once, one after 600 s
        wait = "tether_pool_queue_wait_seconds"
        assert _sample(text, wait + "_count", team="ml") == 2
        assert _sample(text, wait + "_sum", team="ml") == pytest.approx(600)
        assert _sample(text, wait + "_bucket", team="ml", le="0.1") == 1
        assert _sample(text, wait + "_bucket", team="ml", le="300.0") == 1
        assert _sample(text, wait + "_bucket", team="ml", le="900.0") == 2
        assert _sample(text, wait + "_bucket", team="ml", le="+Inf") == 2
        assert "tether_pool_team_quota_share{" not in text  # no quota: no limit series

        admin_store_user = store.create_user("root", is_admin=True, teams=(), now=1.0)
        assert admin_store_user is not None
        root = store.authenticate(store.create_token(kind="user", user="root", now=1.0)[1])
        service.set_quota(
            root, "ml", max_share=1.5, max_memory="100GiB", device_hours_per_month=10.0
        )
        text = render(service.statistics())
        assert _sample(text, "tether_pool_team_quota_share", team="ml") == 1.5
        assert _sample(text, "tether_pool_team_quota_memory_bytes", team="ml") == 100 * 2**30
        assert _sample(text, "tether_pool_team_quota_month_device_seconds", team="ml") == 36000

        # an open lease counts up to its last heartbeat, so the counter only grows
        clock.advance(100)
        lagging = render(service.statistics())
        assert _sample(lagging, "tether_pool_team_device_seconds_total", team="ml") == (
            pytest.approx(0.5 * 600 + 0.75 * 1200)
        )
        service.heartbeat(ann, second.id)
        later = render(service.statistics())
        assert _sample(later, "tether_pool_team_device_seconds_total", team="ml") == pytest.approx(
            0.5 * 600 + 0.75 * 1300
        )
    finally:
        store.close()


def test_the_usage_counter_does_not_fall_when_a_silent_lease_expires(db_url: str) -> None:  # noqa: F811
    """A lease whose client stops heartbeating is closed at its last heartbeat:
    the counter, which never counted past that heartbeat, stays where it was
    (a fall would read as a counter reset and double the monthly chart)."""
    store, service, clock, ann, _node = _world(db_url, lease_timeout_s=60.0)
    try:
        lease = service.request_slice(ann, SliceOrder(fraction=0.5))
        clock.advance(30)
        service.heartbeat(ann, lease.id)
        clock.advance(50)  # silent, not yet expired
        before = _sample(
            render(service.statistics()), "tether_pool_team_device_seconds_total", team="ml"
        )
        clock.advance(100)
        service.tick()
        assert service.session(ann, lease.id).state == "ended"
        after = _sample(
            render(service.statistics()), "tether_pool_team_device_seconds_total", team="ml"
        )
        assert before == after == pytest.approx(0.5 * 30)
    finally:
        store.close()


def test_placement_histogram_is_cumulative() -> None:
    h = Histogram(PLACEMENT_BUCKETS)
    for v in (0.0005, 0.003, 0.003, 7.0):
        h.observe(v)
    empty = Statistics(
        nodes=(),
        devices=(),
        allocation={},
        teams=(),
        queued={},
        team_usage={},
        team_month={},
        quotas={},
        queue_wait={},
        counters=_NoCounters(),  # type: ignore[arg-type]  # only its figures are read
    )
    text = render(empty, h)
    name = "tether_pool_placement_duration_seconds"
    assert _sample(text, name + "_bucket", le="0.001") == 1
    assert _sample(text, name + "_bucket", le="0.0025") == 1
    assert _sample(text, name + "_bucket", le="0.005") == 3
    assert _sample(text, name + "_bucket", le="5.0") == 3
    assert _sample(text, name + "_bucket", le="+Inf") == 4
    assert _sample(text, name + "_count") == 4


class _NoCounters:
    placements = 0
    queued = 0
    refusals: dict[str, int] = {}
    leases_ended: dict[str, int] = {}


def test_a_session_keeps_its_name(db_url: str) -> None:  # noqa: F811
    store, service, _clock, ann, _node = _world(db_url)
    try:
        named = service.request_slice(ann, SliceOrder(fraction=0.25, name="train-7"))
        plain = service.request_slice(ann, SliceOrder(fraction=0.25))
        assert service.session(ann, named.id).name == "train-7"
        assert service.session(ann, plain.id).name is None
        listed = {s.id: s.name for s in service.sessions(ann)}
        assert listed == {named.id: "train-7", plain.id: None}
    finally:
        store.close()


def test_migration_4_adds_names_to_an_existing_database(db_url: str) -> None:  # noqa: F811
    """A pool at schema 2 with a session in it upgrades in place: the old session
    reads with no name, new ones keep theirs."""
    db = open_database(db_url)
    with db.transaction(serialize=True) as tx:
        tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        tx.execute("INSERT INTO schema_version (version) VALUES (2)")
        for number, statements in MIGRATIONS:
            if number <= 2:
                for statement in statements:
                    tx.execute(statement)
        tx.execute("INSERT INTO teams (id, name, created_at) VALUES ('t1', 'ml', 1.0)")
        tx.execute(
            "INSERT INTO users (id, name, is_admin, created_at) VALUES ('u1', 'ann', ?, 1.0)",
            (False,),
        )
        tx.execute(
            "INSERT INTO sessions (id, team_id, user_id, state, request, priority, seq, "
            "submitted_at) VALUES ('old', 't1', 'u1', 'ended', '{}', 0, 1, 5.0)"
        )
    db.close()
    store = Store.open(db_url)
    try:
        assert store.schema_version() == max(n for n, _ in MIGRATIONS)
        with store.db.transaction() as tx:
            [old] = store.sessions_tx(tx, states=("ended",))
            assert old.id == "old" and old.name is None
            store.set_session_name_tx(tx, "old", "renamed")
        with store.db.transaction() as tx:
            [old] = store.sessions_tx(tx, states=("ended",))
            assert old.name == "renamed"
    finally:
        store.close()
