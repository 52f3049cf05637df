"""The store and the service over it, on SQLite and on PostgreSQL for real."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from tether._errors import AuthenticationError
from tether.pool._auth import Principal
from tether.pool._db import StoreUnavailable, open_database
from tether.pool._migrations import MIGRATIONS
from tether.pool._model import PoolConfig
from tether.pool._orders import SliceOrder
from tether.pool._service import PoolService, ServiceConfig
from tether.pool._store import Store
from tether.pool._values import PoolInputError
from tether.poolapi import Conflict, NotFound, PoolRequestError, Refused

from ._pooltest import DEVICE_SPECS, FakeClock, db_url, pg_url  # noqa: F401  (fixtures)

LATEST = MIGRATIONS[-1][0]


@pytest.fixture
def store(db_url: str) -> Store:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.close()


# --------------------------------------------------------------------------- schema


def test_first_open_creates_the_schema_and_reopening_is_a_no_op(db_url: str) -> None:  # noqa: F811
    first = Store.open(db_url)
    assert first.schema_version() == LATEST
    first.create_team("ml", now=1.0)
    first.close()
    again = Store.open(db_url)
    assert again.schema_version() == LATEST
    assert [t.name for t in again.teams()] == ["ml"]  # nothing re-created, nothing lost
    again.close()


def test_sqlite_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "pool.db"
    Store.open(f"sqlite:///{path}").close()
    assert path.exists()


def test_unknown_database_scheme_is_refused_clearly() -> None:
    with pytest.raises(StoreUnavailable, match="unsupported database URL"):
        open_database("mysql://x/y")


@pytest.mark.postgres
def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open the pool database"):
        Store.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


# --------------------------------------------------------------------------- teams, users


def test_teams_users_memberships(store: Store) -> None:
    store.create_team("ml", now=1.0)
    store.create_team("vision", now=1.0)
    with pytest.raises(Conflict, match="already exists"):
        store.create_team("ml", now=2.0)
    ann = store.create_user("ann", is_admin=False, teams=["ml"], now=3.0)
    assert ann.teams == ("ml",) and not ann.is_admin
    with pytest.raises(NotFound, match="no team named 'nope'"):
        store.create_user("bob", is_admin=False, teams=["nope"], now=3.0)
    assert [u.name for u in store.users()] == ["ann"]  # the failed create left nothing
    assert store.set_membership("vision", "ann", member=True).teams == ("ml", "vision")
    assert store.set_membership("ml", "ann", member=False).teams == ("vision",)
    with pytest.raises(NotFound):
        store.set_membership("ml", "ann", member=False)


# --------------------------------------------------------------------------- tokens


def test_tokens_are_stored_hashed_shown_once_and_revocable(store: Store, db_url: str) -> None:  # noqa: F811
    store.create_user("ann", is_admin=True, teams=(), now=1.0)
    record, text = store.create_token(kind="user", user="ann", label="laptop", now=2.0)
    assert text.startswith(f"tu_{record.id}_") and len(text) > 40
    with store.db.transaction() as tx:
        row = tx.one("SELECT * FROM tokens WHERE id = ?", (record.id,))
    assert row is not None
    assert text not in str(row.values())  # the secret itself is nowhere
    assert row["hash"] == hashlib.sha256(text.encode()).hexdigest()

    who = store.authenticate(text)
    assert (who.kind, who.user_name, who.is_admin) == ("user", "ann", True)
    with pytest.raises(AuthenticationError, match="invalid token"):
        store.authenticate(text[:-1] + ("A" if text[-1] != "A" else "B"))
    with pytest.raises(AuthenticationError, match="malformed"):
        store.authenticate("hunter2")
    store.revoke_token(record.id, now=3.0)
    with pytest.raises(AuthenticationError, match="revoked"):
        store.authenticate(text)


def test_node_tokens_name_their_node(store: Store) -> None:
    _record, text = store.create_token(kind="node", node_name="gpu1", now=1.0)
    who = store.authenticate(text)
    assert (who.kind, who.node_name) == ("node", "gpu1")
    # A user-token id with a node prefix does not authenticate.
    with pytest.raises(AuthenticationError):
        store.authenticate("tu" + text[2:])


# --------------------------------------------------------------------------- the service


def _service(store: Store, clock: FakeClock, **policy: float) -> PoolService:
    cfg = ServiceConfig(policy=PoolConfig(**policy), heartbeat_skew_s=30.0)  # type: ignore[arg-type]
    service = PoolService(store, cfg, clock=clock)
    service.start()
    return service


def _principals(store: Store) -> tuple[Principal, Principal, Principal]:
    store.create_team("ml", now=1.0)
    store.create_user("root", is_admin=True, teams=(), now=1.0)
    store.create_user("ann", is_admin=False, teams=["ml"], now=1.0)
    admin = store.authenticate(store.create_token(kind="user", user="root", now=1.0)[1])
    ann = store.authenticate(store.create_token(kind="user", user="ann", now=1.0)[1])
    node = store.authenticate(store.create_token(kind="node", node_name="gpu1", now=1.0)[1])
    return admin, ann, node


def test_place_release_and_usage_are_persisted(store: Store) -> None:
    clock = FakeClock()
    service = _service(store, clock, node_timeout_s=7200.0, lease_timeout_s=7200.0)
    _admin, ann, node = _principals(store)
    reg = service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    assert reg.status == "ready" and len(reg.ticket_key) == 64
    s = service.request_slice(ann, SliceOrder(fraction=0.5))
    assert s.state == "placed" and s.address == "tcp://h:7447" and s.ticket
    clock.advance(3600)
    service.node_heartbeat(node, "gpu1", sent_at=clock.now, device_ids=None, sessions=[])
    service.heartbeat(ann, s.id)
    service.release(ann, s.id)
    [row] = [r for r in service.usage(ann, team="ml", user=None, month=None) if r.user == "ann"]
    assert row.device_seconds == pytest.approx(1800.0)
    assert row.memory_gib_seconds == pytest.approx(40 * 3600.0)
    assert (row.sessions, row.peak_share) == (1, 0.5)


def test_the_store_refuses_to_over_allocate_below_the_policy(store: Store) -> None:
    clock = FakeClock()
    service = _service(store, clock)
    _admin, ann, node = _principals(store)
    service.register_node(
        node,
        name="gpu1",
        address="tcp://h:7447",
        devices=DEVICE_SPECS[:1],
        replace=False,
        sent_at=None,
    )
    s = service.request_slice(ann, SliceOrder(fraction=0.75))
    team_id, user_id = store.team("ml").id, store.user("ann").id
    with (
        pytest.raises(PoolRequestError, match="over-allocated"),
        store.db.transaction(serialize=True) as tx,
    ):
        store.insert_session_tx(
            tx,
            session_id="intruder",
            team_id=team_id,
            user_id=user_id,
            request={},
            priority=0,
            now=clock.now,
            queue_deadline=None,
        )
        store.place_session_tx(
            tx, "intruder", node_name="gpu1", devices=[("cuda:0", 0.5, 1)], now=clock.now
        )
    with store.db.transaction() as tx:
        assert store.allocation_tx(tx) == {("gpu1", "cuda:0"): (0.75, 60 << 30)}
        assert tx.one("SELECT id FROM sessions WHERE id = 'intruder'") is None
    assert s.state == "placed"


def test_a_crashed_pool_closes_dead_leases_at_their_last_heartbeat(db_url: str) -> None:  # noqa: F811
    clock = FakeClock()
    store = Store.open(db_url)
    service = _service(store, clock, lease_timeout_s=60.0, node_timeout_s=60.0)
    _admin, ann, node = _principals(store)
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    alive = service.request_slice(ann, SliceOrder(fraction=0.5))
    dead = service.request_slice(ann, SliceOrder(fraction=0.5))
    clock.advance(30)
    service.heartbeat(ann, dead.id)
    last_beat_of_dead = clock.now
    store.close()  # the pool dies here: no release, no tick

    clock.advance(600)  # ... and comes back ten minutes later
    store = Store.open(db_url)
    service = _service(store, clock, lease_timeout_s=60.0, node_timeout_s=60.0)
    # Restored, not ended: a live client gets one full timeout to check in again.
    assert service.session(ann, dead.id).state == "placed"
    clock.advance(30)
    service.node_heartbeat(node, "gpu1", sent_at=clock.now, device_ids=None, sessions=[])
    service.heartbeat(ann, alive.id)
    clock.advance(40)
    service.tick()
    ended = service.session(ann, dead.id)
    assert ended.state == "ended" and ended.end_reason == "expired"
    assert ended.ended_at == pytest.approx(last_beat_of_dead)  # not the restart, not now
    assert service.session(ann, alive.id).state == "placed"
    store.close()


def test_queue_survives_a_restart_in_order(db_url: str) -> None:  # noqa: F811
    clock = FakeClock()
    store = Store.open(db_url)
    service = _service(store, clock)
    _admin, ann, node = _principals(store)
    service.register_node(
        node,
        name="gpu1",
        address="tcp://h:7447",
        devices=DEVICE_SPECS[:1],
        replace=False,
        sent_at=None,
    )
    holder = service.request_slice(ann, SliceOrder(fraction=1.0))
    first = service.request_slice(ann, SliceOrder(fraction=1.0))
    second = service.request_slice(ann, SliceOrder(fraction=0.5))
    assert (first.state, first.position) == ("queued", 1)
    assert (second.state, second.position) == ("queued", 2)
    store.close()

    store = Store.open(db_url)
    service = _service(store, clock)
    assert service.session(ann, second.id).position == 2
    clock.advance(1)
    service.release(ann, holder.id)
    assert service.session(ann, first.id).state == "placed"
    assert service.session(ann, second.id).state == "queued"
    store.close()


def test_bad_input_changes_nothing(store: Store) -> None:
    clock = FakeClock()
    service = _service(store, clock)
    _admin, ann, node = _principals(store)
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    with store.db.transaction() as tx:
        before = store.generation_tx(tx)
    for bad in ({"fraction": 1.5}, {"fraction": -0.1}, {"memory_bytes": "9PiB"}):
        with pytest.raises(PoolInputError):  # no order: the service never sees it
            SliceOrder(**{"fraction": 0.5, **bad})  # type: ignore[arg-type]
    with pytest.raises(PoolRequestError):
        service.request_slice(ann, SliceOrder(fraction=0.5, team="nope"))
    with pytest.raises(Conflict, match="already registered and alive"):
        service.register_node(
            node,
            name="gpu1",
            address="tcp://h:1",
            devices=DEVICE_SPECS,
            replace=False,
            sent_at=None,
        )
    with pytest.raises(PoolRequestError, match="clock skew"):
        service.node_heartbeat(node, "gpu1", sent_at=clock.now + 3600, device_ids=None, sessions=[])
    with store.db.transaction() as tx:
        assert store.generation_tx(tx) == before
        assert store.sessions_tx(tx, states=("queued", "placed", "ended")) == []
        assert store.nodes_tx(tx)[0].address == "tcp://h:7447"


def test_refusal_names_the_quota_limit_and_what_is_left(store: Store) -> None:
    clock = FakeClock()
    service = _service(store, clock)
    admin, ann, node = _principals(store)
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    service.set_quota(admin, "ml", max_share=1.0, max_memory=None, device_hours_per_month=None)
    service.request_slice(ann, SliceOrder(fraction=0.75))
    with pytest.raises(Refused) as info:
        service.request_slice(ann, SliceOrder(fraction=0.5, wait=False))
    assert info.value.detail["limit"] == "max_share"
    assert info.value.detail["left"] == pytest.approx(0.25)
    assert "0.25" in str(info.value)


@pytest.mark.parametrize(
    "order",
    [
        SliceOrder(fraction=0.5, name="mine"),
        SliceOrder(memory_bytes=10 << 30, priority=2),
        SliceOrder(count=2),
    ],
    ids=["fraction", "memory", "devices"],
)
def test_placing_and_releasing_answer_what_reading_the_session_gives(
    store: Store, order: SliceOrder
) -> None:
    # The answers are built from what was written, not read back: they must be what
    # a read of the session gives (the ticket aside, which a read signs afresh).
    clock = FakeClock()
    service = _service(store, clock)
    _admin, ann, node = _principals(store)
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    placed = service.request_slice(ann, order)
    assert placed.state == "placed" and placed.ticket
    read = service.session(ann, placed.id)
    assert read.ticket
    untick = {"ticket": None, "ticket_expires_at": None}
    assert replace(placed, **untick) == replace(read, **untick)
    assert replace(placed, **untick).to_json() == replace(read, **untick).to_json()
    clock.advance(5)
    released = service.release(ann, placed.id)
    assert released.state == "ended" and released.end_reason == "released"
    assert released == service.session(ann, placed.id)


def test_queue_order_numbers_increase_across_replicas_and_restarts(store: Store) -> None:
    # Each core hands them out from memory; another replica's write or a restart
    # must make it read the counter again, never reuse a number.
    clock = FakeClock()
    first = _service(store, clock)
    _admin, ann, node = _principals(store)
    first.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )
    second = _service(store, clock)
    ids = []
    for service in (first, second, first, first, second, _service(store, clock), first):
        session = service.request_slice(ann, SliceOrder(fraction=0.125))
        ids.append(session.id)
        service.release(ann, session.id)
    with store.db.transaction() as tx:
        seqs = [store.session_tx(tx, i).seq for i in ids]
    assert seqs == sorted(set(seqs))
