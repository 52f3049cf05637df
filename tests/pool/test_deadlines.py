"""Deadlines by key: soonest first, ties by key, re-set and dropped keys skipped."""

from __future__ import annotations

from tether.pool._deadlines import Deadlines


def test_due_keys_come_soonest_first_and_ties_by_key() -> None:
    d = Deadlines()
    d.set("b", 5.0)
    d.set("a", 5.0)
    d.set("c", 3.0)
    assert d.next() == 3.0
    assert [d.pop_due(10.0) for _ in range(4)] == ["c", "a", "b", None]
    assert d.next() is None


def test_nothing_is_due_before_its_time() -> None:
    d = Deadlines()
    d.set("a", 5.0)
    assert d.pop_due(4.999) is None
    assert d.pop_due(5.0) == "a"


def test_a_key_set_again_keeps_only_its_new_deadline() -> None:
    d = Deadlines()
    d.set("a", 1.0)
    d.set("a", 9.0)
    d.set("a", 9.0)  # the same time twice still hands the key out once
    assert d.next() == 9.0
    assert d.pop_due(8.0) is None
    assert d.pop_due(9.0) == "a"
    assert d.pop_due(9.0) is None


def test_a_dropped_key_is_never_due() -> None:
    d = Deadlines()
    d.set("a", 1.0)
    d.set("b", 2.0)
    d.discard("a")
    d.discard("zzz")  # unknown keys are fine
    assert d.next() == 2.0
    assert d.pop_due(5.0) == "b"
    assert d.pop_due(5.0) is None
