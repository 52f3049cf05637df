"""Group requests in the pure policy: feed events, assert the exact decisions."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.pool import (
    SHARE_SCALE,
    Lease,
    LeaseReleased,
    NodeRegistered,
    Placed,
    PoolConfig,
    PoolConflictError,
    PoolInputError,
    PoolState,
    Quota,
    QuotaSet,
    Refused,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._events import Decision, GroupPlaced, GroupQueued, GroupRequested, LeaseEnded
from tether.pool._group_request import GroupRequest
from tether.pool._queue import QueueEntry

from ._helpers import T0, GiB, node, req

CFG = PoolConfig(node_timeout_s=30, lease_timeout_s=60, default_queue_timeout_s=300, clock_skew_s=5)


def pool(*nodes_: object) -> PoolState:
    s = PoolState(CFG)
    for n in nodes_:
        s.handle(NodeRegistered(now=T0, node=n))  # type: ignore[arg-type]
    return s


def group(
    gid: str, n: int, *, low: int | None = None, name: str = "sweep", **kw: object
) -> GroupRequest:
    kw.setdefault("fraction", 0.25)
    return GroupRequest(
        shape=req(gid, **kw),
        name=name,
        min_count=n if low is None else low,
        max_count=n,
        member_ids=tuple(f"{gid}-{i}" for i in range(n)),
    )


def ask(s: PoolState, t: float, g: GroupRequest) -> list[Decision]:
    return s.handle(GroupRequested(now=t, group=g))


def quarter(lid: str, dev: str, t: float, node_: str = "a") -> Placed:
    lease = Lease(id=lid, node=node_, device_ids=(dev,), fraction=0.25, memory_bytes=20 * GiB,
                  team="ml", user="ada", start=t, last_heartbeat=t)  # fmt: skip
    return Placed(lease=lease, address=f"tcp://{node_}:7447")


# --------------------------------------------------------------------------- the record


def test_a_group_names_one_member_id_per_slice_wanted() -> None:
    with pytest.raises(PoolInputError, match="needs 3 distinct member ids"):
        GroupRequest(
            shape=req("g", fraction=0.5),
            name="x",
            min_count=1,
            max_count=3,
            member_ids=("m1", "m2"),
        )
    with pytest.raises(PoolInputError, match="min count 4 is above its max count 2"):
        GroupRequest(
            shape=req("g", fraction=0.5),
            name="x",
            min_count=4,
            max_count=2,
            member_ids=("m1", "m2"),
        )
    with pytest.raises(PoolInputError, match="min count must be a whole number from 1 to 10000"):
        group("g", 0)
    g = group("g", 3, low=2)
    assert not g.gang and group("h", 3).gang
    assert g.describe() == "2 to 3 x (0.25 of a device)"
    assert GroupRequest.from_dict(g.to_dict()) == g


# --------------------------------------------------------------------------- placing


def test_a_gang_that_fits_is_placed_in_one_decision_packed_best_fit() -> None:
    s = pool(node("a", 2))
    out = ask(s, T0 + 1, group("g", 8))
    members = tuple(quarter(f"g-{i}", f"cuda:{i // 4}", T0 + 1) for i in range(8))
    assert out == [GroupPlaced(group=group("g", 8), members=members)]
    assert [lease.id for lease in s.leases()] == [f"g-{i}" for i in range(8)]
    assert s.device_usage("a") == {"cuda:0": (1.0, 80 * GiB), "cuda:1": (1.0, 80 * GiB)}


def test_a_gang_the_registered_devices_can_never_hold_is_refused_at_once() -> None:
    s = pool(node("a", 2))
    out = ask(s, T0 + 1, group("g", 9))
    assert out == [
        Refused(
            request_id="g",
            code="unsatisfiable",
            team="ml",
            message="group sweep: the pool's devices, even all empty, hold at most 8 of "
            "0.25 of a device; the group needs at least 9",
        )
    ]
    assert s.leases() == [] and s.queued() == []


def test_a_gang_that_does_not_fit_now_waits_as_one_entry_and_is_placed_when_room_appears() -> None:
    s = pool(node("a", 2))
    s.handle(SliceRequested(now=T0 + 1, request=req("big", fraction=1.0)))
    g = group("g", 8)
    out = ask(s, T0 + 2, g)
    assert out == [
        GroupQueued(
            group=g,
            position=1,
            reason="group sweep: room for 4 of 0.25 of a device now, needs 8",
            enqueued_at=T0 + 2,
            deadline=T0 + 302,
        )
    ]
    assert [lease.id for lease in s.leases()] == ["big"]  # nothing of the gang is held
    assert [e.id for e in s.queued()] == ["g"]
    out = s.handle(LeaseReleased(now=T0 + 3, lease_id="big"))
    assert isinstance(out[0], LeaseEnded)
    assert out[1:] == [
        GroupPlaced(
            group=g, members=tuple(quarter(f"g-{i}", f"cuda:{i // 4}", T0 + 3) for i in range(8))
        )
    ]
    assert s.queued() == []


def test_at_least_min_up_to_max_takes_what_fits_now() -> None:
    s = pool(node("a", 2))
    s.handle(SliceRequested(now=T0 + 1, request=req("whole", fraction=1.0)))
    out = ask(s, T0 + 2, group("g", 8, low=3))
    assert out == [
        GroupPlaced(
            group=group("g", 8, low=3),
            members=tuple(quarter(f"g-{i}", "cuda:1", T0 + 2) for i in range(4)),
        )
    ]


def test_no_wait_refuses_capacity_at_once() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 1, group("g", 4))
    out = ask(s, T0 + 2, group("h", 2, wait=False))
    assert out == [
        Refused(
            request_id="h",
            code="capacity",
            team="ml",
            message="group sweep: room for 0 of 0.25 of a device now, needs 2",
        )
    ]
    assert s.queued() == []


# --------------------------------------------------------------------------- quotas


def test_a_group_is_counted_against_the_quota_as_a_whole() -> None:
    s = pool(node("a", 4))
    s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=1.0)))
    out = ask(s, T0 + 1, group("g", 8))
    assert out == [
        Refused(
            request_id="g",
            code="quota",
            team="ml",
            message="group sweep: team ml: concurrent share 0.00 of 1.00 used, request 2.00 "
            "exceeds by 1.00 (the request alone is over the team's limit)",
            limit="max_share",
            used=0.0,
            limit_value=1.0,
            left=1.0,
        )
    ]
    # At least 2, up to 8: the quota stops it at 4 (1.00 device).
    out = ask(s, T0 + 2, group("h", 8, low=2))
    assert len(out) == 1 and isinstance(out[0], GroupPlaced) and out[0].count == 4
    assert s.team_use("ml").share_units == SHARE_SCALE
    # Anything more waits for the team's own share to come back.
    out = ask(s, T0 + 3, group("k", 2))
    assert isinstance(out[0], GroupQueued)
    assert out[0].reason.startswith("group sweep: team ml: concurrent share 1.00 of 1.00 used")


# --------------------------------------------------------------------------- the queue


def test_a_waiting_group_blocks_its_team_but_other_teams_backfill() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 1, group("g", 2))  # half the device
    ask(s, T0 + 2, group("big", 4))  # waits: needs the whole device
    mine = s.handle(SliceRequested(now=T0 + 3, request=req("mine", fraction=0.25)))
    assert [type(d).__name__ for d in mine] == ["Queued"]
    assert mine[0].reason == "behind earlier requests of team ml"  # type: ignore[union-attr]
    theirs = s.handle(SliceRequested(now=T0 + 4, request=req("theirs", fraction=0.25, team="cv")))
    assert [type(d).__name__ for d in theirs] == ["Placed"]


def test_a_waiting_group_can_be_cancelled_and_times_out_as_one() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 1, group("g", 4))
    ask(s, T0 + 2, group("h", 4))
    assert s.handle(RequestCancelled(now=T0 + 3, request_id="h")) == [
        Refused(
            request_id="h",
            code="cancelled",
            team="ml",
            message="the request was cancelled while it waited",
        )
    ]
    ask(s, T0 + 4, group("k", 4, queue_timeout_s=10))
    out = s.handle(Tick(now=T0 + 20))
    assert [(type(d).__name__, getattr(d, "code", None)) for d in out] == [("Refused", "timeout")]
    assert s.queued() == []


def test_a_waiting_group_survives_a_restore() -> None:
    s = pool(node("a", 1))
    ask(s, T0 + 1, group("g", 4))
    g = group("h", 4)
    entry = QueueEntry(request=g.shape, enqueued_at=T0 + 2, deadline=T0 + 302, seq=7, group=g)
    again = PoolState.restore(
        CFG, now=T0 + 3, nodes=[s.node("a")], leases=s.leases(), queue=[entry]
    )
    assert [e.id for e in again.queued()] == ["h"]
    out = []
    for i in range(4):
        out += again.handle(LeaseReleased(now=T0 + 4, lease_id=f"g-{i}"))
    placed = [d for d in out if isinstance(d, GroupPlaced)]
    assert len(placed) == 1 and placed[0].count == 4


def test_member_ids_in_use_are_a_conflict_and_change_nothing() -> None:
    s = pool(node("a", 2))
    ask(s, T0 + 1, group("g", 2))
    clash = GroupRequest(
        shape=req("other", fraction=0.25), name="x", min_count=1, max_count=1, member_ids=("g-1",)
    )
    with pytest.raises(PoolConflictError, match="'g-1' is already in use"):
        ask(s, T0 + 2, clash)
    assert len(s.leases()) == 2


# --------------------------------------------------------------------------- properties

_fractions = st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0])


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[list[int], float | None, list[tuple[str, object]]]:
    nodes_ = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    quota = draw(st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.5, 4.0])))
    steps: list[tuple[str, object]] = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["group", "group", "single", "release", "cancel"]))
        if kind == "group":
            high = draw(st.integers(1, 12))
            low = draw(st.integers(1, high))
            steps.append(
                (
                    "group",
                    (
                        f"g{i}",
                        high,
                        low,
                        draw(_fractions),
                        draw(st.booleans()),
                        draw(st.sampled_from(["ml", "cv"])),
                    ),
                )
            )
        elif kind == "single":
            steps.append(("single", (f"s{i}", draw(_fractions))))
        else:
            steps.append((kind, draw(st.integers(0, 40))))
    return nodes_, quota, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenario())
def test_groups_are_never_partly_placed_below_min_nor_over_quota(
    scenario: tuple[list[int], float | None, list[tuple[str, object]]],
) -> None:
    sizes, quota, steps = scenario
    s = pool(*(node(f"n{k}", n) for k, n in enumerate(sizes)))
    if quota is not None:
        s.handle(QuotaSet(now=T0, quota=Quota(team="ml", max_share=quota)))
    groups: dict[str, GroupRequest] = {}
    placed_members: set[str] = set()
    t = T0
    for kind, arg in steps:
        t += 1
        if kind == "group":
            gid, high, low, fraction, wait, team = arg  # type: ignore[misc]
            g = group(gid, high, low=low, fraction=fraction, wait=wait, team=team)
            groups[gid] = g
            out = ask(s, t, g)
        elif kind == "single":
            sid, fraction = arg  # type: ignore[misc]
            out = s.handle(SliceRequested(now=t, request=req(sid, fraction=fraction)))
        elif kind == "release":
            open_ = s.leases()
            if not open_:
                continue
            out = s.handle(LeaseReleased(now=t, lease_id=open_[int(arg) % len(open_)].id))  # type: ignore[call-overload]
        else:
            waiting = s.queued()
            if not waiting:
                continue
            out = s.handle(RequestCancelled(now=t, request_id=waiting[int(arg) % len(waiting)].id))  # type: ignore[call-overload]
        for d in out:
            if isinstance(d, GroupPlaced):
                g = groups[d.group.id]
                assert g.min_count <= d.count <= g.max_count
                assert [m.lease.id for m in d.members] == list(g.member_ids[: d.count])
                placed_members.update(m.lease.id for m in d.members)
        # Nothing of a group is ever held unless the group was placed as a whole.
        for lease in s.leases():
            if lease.id.startswith("g"):
                assert lease.id in placed_members
        if quota is not None:
            assert s.team_use("ml").share_units <= round(quota * SHARE_SCALE)
        for k in range(len(sizes)):
            for share, memory in s.device_usage(f"n{k}").values():
                assert share <= 1.0 + 1e-9 and memory <= 80 * GiB
