"""PoolState: feed events, assert the exact decisions."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import PoolError
from tether.pool import (
    SHARE_SCALE,
    Lease,
    LeaseEnded,
    LeaseHeartbeat,
    LeaseReleased,
    LeaseRenewed,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeHeartbeatRecorded,
    NodeLost,
    NodeRegistered,
    NodeSpec,
    NodeUncordoned,
    NodeUpdated,
    Placed,
    PoolConfig,
    PoolConflictError,
    PoolInputError,
    PoolNotFoundError,
    PoolState,
    Queued,
    Quota,
    QuotaSet,
    QuotaUpdated,
    Refused,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._events import Decision, Event

from ._helpers import T0, GiB, node, req

CFG = PoolConfig(node_timeout_s=30, lease_timeout_s=60, default_queue_timeout_s=300, clock_skew_s=5)


def pool(*nodes_: object, cfg: PoolConfig = CFG) -> PoolState:
    s = PoolState(cfg)
    for n in nodes_:
        s.handle(NodeRegistered(now=T0, node=n))  # type: ignore[arg-type]
    return s


def ask(s: PoolState, t: float, rid: str, **kw: object) -> list[Decision]:
    return s.handle(SliceRequested(now=t, request=req(rid, **kw)))


def lease(
    lid: str,
    node_: str,
    devs: tuple[str, ...],
    fraction: float,
    mem: int,
    start: float,
    team: str = "ml",
    user: str = "ada",
    **kw: object,
) -> Lease:
    return Lease(
        id=lid,
        node=node_,
        device_ids=devs,
        fraction=fraction,
        memory_bytes=mem,
        team=team,
        user=user,
        start=start,
        last_heartbeat=kw.pop("beat", start),  # type: ignore[arg-type]
        **kw,
    )  # type: ignore[arg-type]


def placed(lid: str, node_: str, dev: str, fraction: float, t: float, **kw: object) -> Placed:
    mem = kw.pop("mem", round(80 * GiB * fraction))
    return Placed(
        lease=lease(lid, node_, (dev,), fraction, mem, t, **kw),  # type: ignore[arg-type]
        address=f"tcp://{node_}:7447",
    )


# --------------------------------------------------------------------------- inventory


def test_registration_is_a_decision() -> None:
    s = PoolState(CFG)
    n = node("a", 2)
    assert s.handle(NodeRegistered(now=T0, node=n)) == [
        NodeUpdated(node=n, status="ready", admin_state="active", last_heartbeat=T0)
    ]
    assert s.statistics().capacity_share == 2.0


def test_place_a_fraction() -> None:
    s = pool(node("a", 2))
    assert ask(s, T0 + 1, "r1", fraction=0.25) == [placed("r1", "a", "cuda:0", 0.25, T0 + 1)]
    assert ask(s, T0 + 2, "r2", fraction=0.5, memory_bytes="8GiB") == [
        placed("r2", "a", "cuda:0", 0.5, T0 + 2, mem=8 * GiB)
    ]
    assert s.team_use("ml").share_units == 7500
    assert s.device_usage("a") == {"cuda:0": (0.75, 28 * GiB), "cuda:1": (0.0, 0)}


def test_unsatisfiable_is_refused_at_once_even_when_waiting() -> None:
    s = pool(node("a", 2))
    assert ask(s, T0 + 1, "r1", count=3) == [
        Refused(
            request_id="r1",
            code="unsatisfiable",
            team="ml",
            message="no device in the pool can ever hold 3 whole devices",
        )
    ]
    assert ask(s, T0 + 1, "r2", fraction=0.5, vendor="amd") == [
        Refused(
            request_id="r2",
            code="unsatisfiable",
            team="ml",
            message="no device in the pool can ever hold 0.5 of a device, vendor=amd",
        )
    ]


def test_no_wait_is_refused_for_capacity() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "r1", fraction=0.75)
    assert ask(s, T0 + 1, "r2", fraction=0.5, wait=False) == [
        Refused(
            request_id="r2",
            code="capacity",
            team="ml",
            message="no matching device has room for 0.5 of a device now",
        )
    ]
    assert ask(s, T0 + 1, "r3", fraction=0.5, queue_timeout_s=0)[0].code == "capacity"  # type: ignore[union-attr]


def test_queued_then_placed_when_room_appears() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "r1", fraction=0.75)
    q = ask(s, T0 + 1, "r2", fraction=0.5)
    assert q == [
        Queued(
            request=req("r2", fraction=0.5),
            position=1,
            enqueued_at=T0 + 1,
            deadline=T0 + 301,
            reason="no matching device has room for 0.5 of a device now",
        )
    ]
    assert s.queue_position("r2") == 1
    assert s.handle(LeaseReleased(now=T0 + 10, lease_id="r1")) == [
        LeaseEnded(
            lease=lease(
                "r1", "a", ("cuda:0",), 0.75, 60 * GiB, T0, end=T0 + 10, end_reason="released"
            )
        ),
        placed("r2", "a", "cuda:0", 0.5, T0 + 10),
    ]
    assert s.queued() == []


def test_queue_timeout_and_cancel() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "big", count=1)
    ask(s, T0 + 1, "w1", fraction=0.5, queue_timeout_s=10, team="cv")
    ask(s, T0 + 2, "w2", fraction=0.5, team="hpc")
    assert s.next_deadline() == T0 + 11
    assert s.handle(Tick(now=T0 + 10.5)) == []
    assert s.handle(Tick(now=T0 + 11)) == [
        Refused(
            request_id="w1",
            code="timeout",
            team="cv",
            message="waited 10s in the queue without room for 0.5 of a device",
        )
    ]
    assert s.handle(RequestCancelled(now=T0 + 12, request_id="w2")) == [
        Refused(
            request_id="w2",
            code="cancelled",
            team="hpc",
            message="the request was cancelled while it waited",
        )
    ]
    with pytest.raises(PoolNotFoundError):
        s.handle(RequestCancelled(now=T0 + 12, request_id="w2"))


# --------------------------------------------------------------------------- quotas


def test_over_share_quota_queues_with_a_message_then_places() -> None:
    s = pool(node("a", 4))
    assert s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=2))) == [
        QuotaUpdated(quota=Quota(team="ml", max_share=2))
    ]
    ask(s, T0, "r1", count=1)
    ask(s, T0, "r2", fraction=0.5)
    d = ask(s, T0 + 1, "r3", fraction=0.75)
    assert isinstance(d[0], Queued)
    assert (
        d[0].reason == "team ml: concurrent share 1.50 of 2.00 used, request 0.75 exceeds by 0.25"
    )
    # Another team is not held back by ml's quota.
    assert isinstance(ask(s, T0 + 2, "cv1", fraction=0.75, team="cv")[0], Placed)
    ended, got = s.handle(LeaseReleased(now=T0 + 3, lease_id="r2"))
    assert isinstance(ended, LeaseEnded) and isinstance(got, Placed) and got.lease.id == "r3"


def test_over_quota_no_wait_refusal_names_the_limit() -> None:
    s = pool(node("a", 4))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=2)))
    ask(s, T0, "r1", count=1)
    ask(s, T0, "r2", fraction=0.5)
    assert ask(s, T0 + 1, "r3", fraction=0.75, wait=False) == [
        Refused(
            request_id="r3",
            code="quota",
            team="ml",
            limit="max_share",
            used=1.5,
            limit_value=2.0,
            left=0.5,
            message="team ml: concurrent share 1.50 of 2.00 used, request 0.75 exceeds by 0.25",
        )
    ]


def test_request_alone_over_the_limit_is_refused_even_when_waiting() -> None:
    s = pool(node("a", 4))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=1, max_memory_bytes=16 * GiB)))
    d = ask(s, T0, "r1", count=2)
    assert [(x.code, x.limit) for x in d] == [("quota", "max_share")]  # type: ignore[union-attr]
    assert "request alone" in d[0].message  # type: ignore[union-attr]
    d = ask(s, T0, "r2", fraction=0.1, memory_bytes="20GiB")
    assert [(x.code, x.limit) for x in d] == [("quota", "max_memory_bytes")]  # type: ignore[union-attr]


def test_memory_quota_counts_implied_memory() -> None:
    s = pool(node("a", 2))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_memory_bytes=50 * GiB)))
    assert isinstance(ask(s, T0, "r1", fraction=0.5)[0], Placed)  # 40GiB
    d = ask(s, T0, "r2", fraction=0.25, wait=False)  # 20GiB more: 60 > 50
    assert d[0].limit == "max_memory_bytes"  # type: ignore[union-attr]
    assert d[0].message == (  # type: ignore[union-attr]
        "team ml: concurrent memory 40GiB of 50GiB used, request 20GiB exceeds by 10GiB"
    )


def test_monthly_device_hours_refuse_new_requests_but_do_not_cut_leases() -> None:
    s = pool(node("a", 2), cfg=PoolConfig(node_timeout_s=3600, lease_timeout_s=3600))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_device_hours_per_month=1)))
    ask(s, T0, "r1", fraction=0.5)
    for k in range(1, 5):  # keep the lease alive for two hours
        s.handle(NodeHeartbeat(now=T0 + k * 1800, node_id="a"))
        s.handle(LeaseHeartbeat(now=T0 + k * 1800, lease_id="r1"))
    assert s.team_use("ml").month_device_seconds == pytest.approx(3600)
    d = ask(s, T0 + 7200, "r2", fraction=0.1)
    assert [(x.code, x.limit) for x in d] == [("quota", "max_device_hours_per_month")]  # type: ignore[union-attr]
    assert "r1" in {x.id for x in s.leases()}


# --------------------------------------------------------------------------- time and failures


def test_lease_heartbeat_renews_and_silence_expires_at_last_heartbeat() -> None:
    s = pool(node("a", 1), cfg=PoolConfig(node_timeout_s=1000, lease_timeout_s=60))
    ask(s, T0, "r1", fraction=0.5)
    assert s.handle(LeaseHeartbeat(now=T0 + 50, lease_id="r1")) == [
        LeaseRenewed(lease_id="r1", last_heartbeat=T0 + 50)
    ]
    s.handle(NodeHeartbeat(now=T0 + 109, node_id="a"))  # lease deadline T0+110 not reached
    assert s.handle(NodeHeartbeat(now=T0 + 110, node_id="a")) == [
        LeaseEnded(
            lease=lease(
                "r1",
                "a",
                ("cuda:0",),
                0.5,
                40 * GiB,
                T0,
                beat=T0 + 50,
                end=T0 + 50,
                end_reason="expired",
            )
        ),
        NodeHeartbeatRecorded(node_id="a", last_heartbeat=T0 + 110),
    ]
    with pytest.raises(PoolNotFoundError, match="no open lease"):
        s.handle(LeaseHeartbeat(now=T0 + 112, lease_id="r1"))


def test_a_finished_session_ends_its_lease_when_it_ended_however_late_told() -> None:
    from tether.pool._events import LeaseFinished

    s = pool(node("a", 1), cfg=PoolConfig(node_timeout_s=1000, lease_timeout_s=600))
    ask(s, T0, "r1", fraction=0.5)
    s.handle(LeaseHeartbeat(now=T0 + 5, lease_id="r1"))
    # Ended at T0 + 6, reported at T0 + 64 (after an outage): it ends at T0 + 6.
    assert s.handle(LeaseFinished(now=T0 + 64, lease_id="r1", end=T0 + 6)) == [
        LeaseEnded(
            lease=lease(
                "r1", "a", ("cuda:0",), 0.5, 40 * GiB, T0,
                beat=T0 + 5, end=T0 + 6, end_reason="finished",
            )
        )
    ]  # fmt: skip
    # Nothing renews it after that, and a measured end is kept inside the lease.
    with pytest.raises(PoolNotFoundError, match="no open lease"):
        s.handle(LeaseHeartbeat(now=T0 + 65, lease_id="r1"))
    ask(s, T0 + 70, "r2", fraction=0.5)
    (ended,) = s.handle(LeaseFinished(now=T0 + 71, lease_id="r2", end=T0 - 100))
    assert isinstance(ended, LeaseEnded) and ended.lease.end == T0 + 70


def test_silent_node_is_lost_and_comes_back() -> None:
    a, b = node("a", 1), node("b", 1)
    s = pool(a, b)
    ask(s, T0, "r1", fraction=0.5, node="a")
    s.handle(NodeHeartbeat(now=T0 + 20, node_id="b"))
    s.handle(LeaseHeartbeat(now=T0 + 25, lease_id="r1"))
    assert s.handle(Tick(now=T0 + 29)) == []
    assert s.handle(Tick(now=T0 + 31)) == [
        NodeLost(node_id="a", last_heartbeat=T0, now=T0 + 31),
        LeaseEnded(
            lease=lease(
                "r1",
                "a",
                ("cuda:0",),
                0.5,
                40 * GiB,
                T0,
                beat=T0 + 25,
                end=T0,
                end_reason="node-lost",
            )
        ),
    ]
    assert s.node("a").status == "lost"
    # Nothing new goes to a lost node.
    assert ask(s, T0 + 32, "r2", fraction=0.5, node="a", wait=False)[0].code == "capacity"  # type: ignore[union-attr]
    assert ask(s, T0 + 32, "r3", fraction=1.0)[0].lease.node == "b"  # type: ignore[union-attr]
    ask(s, T0 + 33, "r4", fraction=0.5)
    # It returns with a heartbeat; the queued request goes there.
    assert s.handle(NodeHeartbeat(now=T0 + 40, node_id="a")) == [
        NodeUpdated(node=a, status="ready", admin_state="active", last_heartbeat=T0 + 40),
        placed("r4", "a", "cuda:0", 0.5, T0 + 40),
    ]


def test_cordon_keeps_leases_and_blocks_new_slices() -> None:
    a = node("a", 1)
    s = pool(a)
    ask(s, T0, "r1", fraction=0.5)
    assert s.handle(NodeCordoned(now=T0 + 1, node_id="a")) == [
        NodeUpdated(node=a, status="cordoned", admin_state="cordoned", last_heartbeat=T0)
    ]
    assert isinstance(ask(s, T0 + 2, "r2", fraction=0.25)[0], Queued)
    assert [x.id for x in s.leases()] == ["r1"]
    assert s.handle(NodeUncordoned(now=T0 + 3, node_id="a")) == [
        NodeUpdated(node=a, status="ready", admin_state="active", last_heartbeat=T0),
        placed("r2", "a", "cuda:0", 0.25, T0 + 3),
    ]


def test_drain_ends_leases_and_survives_loss_and_return() -> None:
    a = node("a", 1)
    s = pool(a)
    ask(s, T0, "r1", fraction=0.5)
    assert s.handle(NodeDrained(now=T0 + 5, node_id="a")) == [
        LeaseEnded(
            lease=lease("r1", "a", ("cuda:0",), 0.5, 40 * GiB, T0, end=T0 + 5, end_reason="drained")
        ),
        NodeUpdated(node=a, status="drained", admin_state="drained", last_heartbeat=T0),
    ]
    s.handle(Tick(now=T0 + 100))
    assert s.node("a").status == "lost"
    assert s.handle(NodeRegistered(now=T0 + 101, node=a)) == [
        NodeUpdated(node=a, status="drained", admin_state="drained", last_heartbeat=T0 + 101)
    ]
    assert s.statistics().capacity_share == 0


def test_device_missing_from_heartbeat_ends_its_leases() -> None:
    s = pool(node("a", 2))
    ask(s, T0, "r0", fraction=0.5, node="a")
    ask(s, T0, "r1", count=1)
    assert s.leases()[1].device_ids == ("cuda:1",)
    d = s.handle(NodeHeartbeat(now=T0 + 10, node_id="a", device_ids=("cuda:0",)))
    assert d == [
        LeaseEnded(
            lease=lease("r1", "a", ("cuda:1",), 1.0, 80 * GiB, T0, end=T0, end_reason="device-lost")
        ),
        NodeUpdated(
            node=node("a", 1), status="ready", admin_state="active", last_heartbeat=T0 + 10
        ),
    ]
    assert s.statistics().devices == 1


def test_re_registration_with_fewer_devices() -> None:
    s = pool(node("a", 2))
    ask(s, T0, "r1", count=2)
    d = s.handle(NodeRegistered(now=T0 + 10, node=node("a", 1)))
    assert [type(x).__name__ for x in d] == ["LeaseEnded", "NodeUpdated"]
    assert d[0].lease.end_reason == "device-lost" and d[0].lease.end == T0  # type: ignore[union-attr]


# --------------------------------------------------------------------------- fairness


def test_team_later_request_does_not_overtake_its_earlier_one() -> None:
    s = pool(node("a", 2))
    ask(s, T0, "x", fraction=0.5)
    ask(s, T0, "y", fraction=0.5, node="a")
    ask(s, T0, "big", count=2)  # queued: nothing whole is free
    d = ask(s, T0 + 1, "small", fraction=0.25)  # would fit, but waits behind "big"
    assert isinstance(d[0], Queued) and d[0].position == 2
    assert d[0].reason == "behind earlier requests of team ml"
    # Another team's small request may go past (backfill).
    assert isinstance(ask(s, T0 + 2, "cv", fraction=0.25, team="cv")[0], Placed)


def test_least_share_team_is_served_first() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "ml-hold", fraction=0.5)
    ask(s, T0, "cv-hold", fraction=0.25, team="cv")
    ask(s, T0 + 1, "ml-next", fraction=0.5)  # queued first, but ml holds more
    ask(s, T0 + 2, "cv-next", fraction=0.5, team="cv")
    assert [e.id for e in s.queued()] == ["cv-next", "ml-next"]
    assert s.queue_position("ml-next") == 2
    # cv frees its slice: it holds nothing now, ml still 0.5 -- cv's request goes first
    # although ml's came first.
    d = s.handle(LeaseReleased(now=T0 + 3, lease_id="cv-hold"))
    assert [type(x).__name__ for x in d] == ["LeaseEnded", "Placed"]
    assert d[1].lease.id == "cv-next"  # type: ignore[union-attr]


def test_priority_beats_arrival() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "hold", count=1)
    ask(s, T0 + 1, "low", fraction=1.0)
    ask(s, T0 + 2, "high", fraction=1.0, priority=5, team="cv")
    d = s.handle(LeaseReleased(now=T0 + 3, lease_id="hold"))
    assert d[1].lease.id == "high"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_and_changes_nothing() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 10, "r1", fraction=0.5)
    before = (s.statistics(), s.leases(), s.now)
    with pytest.raises(PoolInputError, match="before the latest time"):
        s.handle(Tick(now=T0 + 4))  # 6 s back: over the 5 s skew
    with pytest.raises(PoolNotFoundError, match="register it first"):
        s.handle(NodeHeartbeat(now=T0 + 11, node_id="ghost"))
    with pytest.raises(PoolNotFoundError):
        s.handle(LeaseReleased(now=T0 + 11, lease_id="ghost"))
    with pytest.raises(PoolConflictError, match="already in use"):
        ask(s, T0 + 11, "r1", fraction=0.1)
    with pytest.raises(PoolInputError, match="maximum"):
        ask(s, T0 + 11, "r2", fraction=0.1, queue_timeout_s=10**6)
    with pytest.raises(PoolInputError):
        Tick(now=float("nan"))
    with pytest.raises(PoolInputError, match="not a pool event"):
        s.handle("tick")  # type: ignore[arg-type]
    assert (s.statistics(), s.leases(), s.now) == before
    for exc in (PoolInputError, PoolNotFoundError, PoolConflictError):
        assert issubclass(exc, PoolError)


def test_small_clock_skew_is_read_as_now() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 10, "r1", fraction=0.5)
    assert s.handle(LeaseHeartbeat(now=T0 + 7, lease_id="r1")) == [
        LeaseRenewed(lease_id="r1", last_heartbeat=T0 + 10)
    ]


# --------------------------------------------------------------------------- restore


def _snapshot(s: PoolState) -> dict[str, object]:
    return {
        "nodes": s.nodes(),
        "leases": s.leases(),
        "queue": list(s.queued()),
        "quotas": s.quotas(),
    }


def test_restore_rebuilds_an_equivalent_state() -> None:
    s = pool(node("a", 2), node("b", 1))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=2.5)))
    ask(s, T0, "r1", count=2)
    ask(s, T0 + 1, "r2", fraction=0.5)
    ask(s, T0 + 2, "r3", count=1)  # over quota: queued
    ask(s, T0 + 3, "r4", fraction=0.75, team="cv")  # no room: queued
    s.handle(NodeCordoned(now=T0 + 4, node_id="b"))
    snap = _snapshot(s)
    r = PoolState.restore(
        CFG,
        now=s.now,
        nodes=s.nodes(),
        leases=s.leases(),
        queue=s.queued(),
        quotas=s.quotas(),
    )
    assert _snapshot(r) == snap
    assert r.team_use("ml") == s.team_use("ml")
    assert r.queue_position("r4") == s.queue_position("r4")
    assert r.handle(Tick(now=T0 + 5)) == s.handle(Tick(now=T0 + 5)) == []
    later: list[Event] = [
        NodeHeartbeat(now=T0 + 6, node_id="a"),
        NodeUncordoned(now=T0 + 6, node_id="b"),
        LeaseReleased(now=T0 + 7, lease_id="r1"),
    ]
    assert [r.handle(e) for e in later] == [s.handle(e) for e in later]


def test_restore_gives_everything_a_full_timeout_and_ends_orphans() -> None:
    s = pool(node("a", 1))
    ask(s, T0, "r1", fraction=0.5)
    orphan = lease("r9", "gone", ("cuda:0",), 0.5, GiB, T0)
    r = PoolState.restore(CFG, now=T0 + 1000, nodes=s.nodes(), leases=[*s.leases(), orphan])
    assert r.next_deadline() == T0 + 1000
    d = r.handle(Tick(now=T0 + 1000))
    assert d == [
        LeaseEnded(
            lease=lease("r9", "gone", ("cuda:0",), 0.5, GiB, T0, end=T0, end_reason="node-lost")
        )
    ]
    assert r.handle(Tick(now=T0 + 1029)) == []  # node a still within its restore grace
    d = r.handle(Tick(now=T0 + 1030))
    assert [type(x).__name__ for x in d] == ["NodeLost", "LeaseEnded"]
    assert d[1].lease.end == T0  # type: ignore[union-attr]  # closed at the last heartbeat


def test_restore_counts_closed_leases_towards_the_month() -> None:
    closed = lease(
        "old", "a", ("cuda:0",), 1.0, 80 * GiB, T0 - 7200, end=T0 - 3600, end_reason="released"
    )
    r = PoolState.restore(CFG, now=T0, nodes=[], leases=[closed])
    assert r.team_use("ml").month_device_seconds == 3600


# --------------------------------------------------------------------------- properties


_OPS = ["ask"] * 5 + ["release"] * 2 + ["beat"] * 3 + ["tick", "cordon", "uncordon", "uncordon",
                                                      "drain", "quota", "cancel"]  # fmt: skip
_events = st.lists(
    st.tuples(
        st.sampled_from(_OPS),
        st.integers(0, 10**6),
        st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 1.0, None]),
        st.sampled_from([0, 0, 0, 1, 2, 3]),
        st.floats(0, 12),
    ),
    max_size=50,
)


NAMES = ("a", "b", "c")


def _nodes() -> list[NodeSpec]:
    return [node("a", 2), node("b", 1, mem=24 * GiB), node("c", 3, mem=40 * GiB)]


def _step(s: PoolState, op: str, pick: int, frac: float | None, count: int, t: float,
          rid: str) -> list[Decision]:  # fmt: skip
    """Apply one generated operation (always valid input); return its decisions."""
    out: list[Decision] = []
    if op == "ask":
        kw: dict[str, object] = {"team": ["ml", "cv"][pick % 2]}
        if frac is None:
            kw["memory_bytes"] = (pick % 30 + 1) * GiB
        elif count:
            kw["count"] = count
        else:
            kw["fraction"] = frac
        kw["wait"] = pick % 3 != 0
        out += ask(s, t, rid, **kw)
    elif op == "release" and s.leases():
        out += s.handle(LeaseReleased(now=t, lease_id=s.leases()[pick % len(s.leases())].id))
    elif op == "beat":
        out += s.handle(Tick(now=t))  # ends what is due, so every lease below is open
        for lease_ in s.leases():
            out += s.handle(LeaseHeartbeat(now=t, lease_id=lease_.id))
        for n in NAMES:
            if pick % 4:
                out += s.handle(NodeHeartbeat(now=t, node_id=n))
    elif op == "tick":
        out += s.handle(Tick(now=t))
    elif op in ("cordon", "uncordon", "drain"):
        cls = {"cordon": NodeCordoned, "uncordon": NodeUncordoned, "drain": NodeDrained}[op]
        out += s.handle(cls(now=t, node_id=NAMES[pick % 3]))
    elif op == "quota":
        out += s.handle(QuotaSet(now=t, quota=Quota(team="ml", max_share=(pick % 5) / 2)))
    elif op == "cancel" and s.queued():
        out += s.handle(RequestCancelled(now=t, request_id=s.queued()[0].id))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events)
def test_state_never_over_commits_and_keeps_its_books(ops: list) -> None:  # type: ignore[type-arg]
    nodes_ = _nodes()
    s = pool(*nodes_)
    t = T0
    for k, (op, pick, frac, count, dt) in enumerate(ops):
        t += dt
        try:
            _step(s, op, pick, frac, count, t, f"r{k}")
        except PoolError as exc:  # pragma: no cover - the sequence above is always valid
            raise AssertionError(f"valid event refused: {exc}") from exc
        # Books: per device and per team, the open leases add up to the counters.
        for n in nodes_:
            usage = s.device_usage(n.id)
            for d in n.devices:
                if d.id not in usage:
                    continue
                held = [x for x in s.leases(node=n.id) if d.id in x.device_ids]
                units = sum(round(x.fraction * SHARE_SCALE) for x in held)
                mem = sum(x.memory_bytes for x in held)
                assert usage[d.id] == (units / SHARE_SCALE, mem)
                assert units <= SHARE_SCALE and mem <= d.memory_bytes
        for team in ("ml", "cv"):
            mine = s.leases(team=team)
            assert s.team_use(team).share_units == sum(x.share_units for x in mine)
        for e in s.queued():
            assert s.queue_position(e.id) >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events, _events)
def test_a_restored_state_decides_like_the_original(before: list, after: list) -> None:  # type: ignore[type-arg]
    """What the store persists (nodes, open leases, the month's closed leases, queue,
    quotas) is enough: restored at the oldest heartbeat, as the service does when it
    re-syncs, the state makes the same decisions as the one that never stopped."""
    s = pool(*_nodes())
    t = T0
    closed: list[Lease] = []
    for k, (op, pick, frac, count, dt) in enumerate(before):
        t += dt
        closed += [d.lease for d in _step(s, op, pick, frac, count, t, f"r{k}")
                   if isinstance(d, LeaseEnded)]  # fmt: skip
    beats = [n.last_heartbeat for n in s.nodes() if not n.lost]
    beats += [x.last_heartbeat for x in s.leases()]
    at = min([s.now, *beats])
    r = PoolState.restore(
        CFG, now=at, nodes=s.nodes(), leases=[*s.leases(), *closed], queue=s.queued(),
        quotas=s.quotas(),
    )  # fmt: skip
    assert r.handle(Tick(now=s.now)) == []
    for team in ("ml", "cv"):
        assert r.team_use(team).share_units == s.team_use(team).share_units
        # Seconds are differences of epoch floats: equal to well under a microsecond.
        assert r.team_use(team).month_device_seconds == pytest.approx(
            s.team_use(team).month_device_seconds, abs=1e-6
        )
    for k, (op, pick, frac, count, dt) in enumerate(after):
        t += dt
        assert _step(r, op, pick, frac, count, t, f"q{k}") == _step(
            s, op, pick, frac, count, t, f"q{k}"
        )
