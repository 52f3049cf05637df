"""The queue: priority first, teams take turns, FIFO within a team; positions and timeouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.pool import PoolConflictError, PoolNotFoundError, QueueEntry, RequestQueue

from ._helpers import T0, req


def entry(
    rid: str, seq: int, team: str = "ml", priority: int = 0, timeout: float = 60
) -> QueueEntry:
    return QueueEntry(
        request=req(rid, fraction=0.5, team=team, priority=priority),
        enqueued_at=T0 + seq,
        deadline=T0 + seq + timeout,
        seq=seq,
    )


def ids(entries: list[QueueEntry]) -> list[str]:
    return [e.id for e in entries]


def test_fifo_within_a_team() -> None:
    q = RequestQueue()
    for i in range(3):
        q.push(entry(f"r{i}", i))
    assert ids(q.order({})) == ["r0", "r1", "r2"]
    assert [q.position(f"r{i}", {}) for i in range(3)] == [1, 2, 3]


def test_higher_priority_first() -> None:
    q = RequestQueue()
    q.push(entry("low", 0))
    q.push(entry("high", 1, priority=5))
    assert ids(q.order({})) == ["high", "low"]
    assert q.position("low", {}) == 2


def test_teams_take_turns_least_share_first() -> None:
    q = RequestQueue()
    for i in range(3):
        q.push(entry(f"ml{i}", i, team="ml"))
    q.push(entry("cv0", 10, team="cv"))
    q.push(entry("cv1", 11, team="cv"))
    # Both hold nothing: the team whose oldest request came first goes first.
    assert ids(q.order({})) == ["ml0", "cv0", "ml1", "cv1", "ml2"]
    # ml holds more than cv: cv goes first in each turn.
    shares = {"ml": 20000, "cv": 5000}
    assert ids(q.order(shares)) == ["cv0", "ml0", "cv1", "ml1", "ml2"]
    for pos, rid in enumerate(ids(q.order(shares)), start=1):
        assert q.position(rid, shares) == pos


def test_remove_and_conflicts() -> None:
    q = RequestQueue()
    q.push(entry("a", 0))
    with pytest.raises(PoolConflictError):
        q.push(entry("a", 1))
    assert q.remove("a").id == "a"
    with pytest.raises(PoolNotFoundError):
        q.remove("a")
    assert len(q) == 0 and "a" not in q


def test_team_waiting() -> None:
    q = RequestQueue()
    q.push(entry("a", 0, priority=2))
    assert q.team_waiting("ml", 0) and q.team_waiting("ml", 2)
    assert not q.team_waiting("ml", 3) and not q.team_waiting("cv", 0)


def test_deadlines() -> None:
    q = RequestQueue()
    q.push(entry("a", 0, timeout=10))
    q.push(entry("b", 1, timeout=5))
    q.push(entry("c", 2, timeout=100))
    assert q.next_deadline() == T0 + 6
    assert ids(q.pop_expired(T0 + 5)) == []
    assert ids(q.pop_expired(T0 + 10)) == ["b", "a"]
    q.remove("c")
    assert q.next_deadline() is None and q.pop_expired(T0 + 1000) == []


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(-1, 1)), min_size=1, max_size=40),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 30000)),
)
def test_position_agrees_with_order(specs: list[tuple[str, int]], shares: dict[str, int]) -> None:
    q = RequestQueue()
    for i, (team, prio) in enumerate(specs):
        q.push(entry(f"r{i}", i, team=team, priority=prio))
    order = ids(q.order(shares))
    assert sorted(order) == sorted(f"r{i}" for i in range(len(specs)))
    for pos, rid in enumerate(order, start=1):
        assert q.position(rid, shares) == pos
    # FIFO within (team, priority).
    for team in "abc":
        for prio in (-1, 0, 1):
            mine = [
                r
                for r in order
                if q.get(r).request.team == team and q.get(r).request.priority == prio
            ]
            assert mine == sorted(mine, key=lambda r: int(r[1:]))
