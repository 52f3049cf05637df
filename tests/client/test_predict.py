"""Prediction of result shapes, without a session or a worker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.client._predict import (
    NONE_AFTER,
    TOUCHES_ALLOWED,
    HandleOf,
    ItemsOf,
    Predictions,
    Template,
    instantiate,
)
from tether.wire._ops import NONE, Handle, Items, shape_handles


def test_the_first_call_of_a_site_is_synchronous_and_teaches_it() -> None:
    p = Predictions()
    assert p.predict("site") is None
    p.learn("site", HandleOf(7))
    assert p.predict("site") == HandleOf(7)


def test_none_is_assumed_only_after_it_came_back_several_times_in_a_row() -> None:
    p = Predictions()
    for _ in range(NONE_AFTER - 1):
        p.learn("site", NONE)
        assert p.predict("site") is None
    p.learn("site", NONE)
    assert p.predict("site") is NONE
    p.learn("site", HandleOf(1))  # a method that returns None, then a tensor
    p.learn("site", NONE)
    assert p.predict("site") is None


def test_a_site_that_returned_none_and_an_object_is_never_predicted_again() -> None:
    for first, then in [(NONE, HandleOf(1)), (HandleOf(1), NONE)]:
        p = Predictions()
        for _ in range(NONE_AFTER):
            p.learn("get", first)  # dict.get: misses, then a hit (or the other way)
        p.learn("get", then)
        for _ in range(NONE_AFTER):
            p.learn("get", then)
        assert p.predict("get") is None and p.is_never("get")
    p = Predictions()
    p.learn("site", HandleOf(1))
    p.learn("site", HandleOf(2))  # another class: predictable again
    assert p.predict("site") == HandleOf(2)


def test_each_change_of_prediction_moves_the_sites_version() -> None:
    p = Predictions()
    p.learn("site", HandleOf(1))
    site = p.site("site")
    assert site is not None
    seen = [site.version]
    p.learn("site", HandleOf(1))  # the same again: no change
    assert site.version == seen[-1]
    p.learn("site", HandleOf(2))
    seen.append(site.version)
    p.sent(5, "site")
    p.mispredicted(5)
    seen.append(site.version)
    assert len(set(seen)) == 3


def test_an_unpredictable_result_makes_the_site_synchronous_again() -> None:
    p = Predictions()
    p.learn("site", HandleOf(1))
    p.learn("site", None)  # a plain value came back
    assert p.predict("site") is None


def test_a_notice_for_a_pipelined_call_stops_its_site_for_good() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    p.learn("b", HandleOf(2))
    p.sent(5, "a")
    p.sent(6, "b")
    p.mispredicted(5)
    assert p.predict("a") is None and p.predict("b") == HandleOf(2)
    p.learn("a", HandleOf(1))
    assert p.predict("a") is None and p.is_never("a")


def test_a_notice_hands_back_what_stood_for_the_result_until_the_sync_point() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    p.sent(5, "a", "the proxy of 5")
    p.sent(6, "a", "the proxy of 6")
    p.sent(7, "a")  # nothing was made for it
    assert p.mispredicted(5) == "the proxy of 5"
    assert p.mispredicted(5) is None and p.mispredicted(7) is None
    p.synced()
    assert p.mispredicted(6) is None


def test_the_table_of_pipelined_calls_asks_for_a_sync_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tether.client._predict.MAX_PENDING", 3)
    p = Predictions()
    p.learn("a", HandleOf(1))
    assert [p.sent(seq, "a", f"proxy {seq}") for seq in (1, 2, 3)] == [False, False, True]
    p.synced()
    assert not p.sent(4, "a") and p.mispredicted(1) is None


def test_a_notice_after_the_sync_point_is_ignored() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    p.sent(5, "a")
    p.synced()
    p.mispredicted(5)
    assert p.predict("a") == HandleOf(1)


def test_a_call_that_used_the_client_makes_the_next_one_wait() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1), nopipe=True)  # the first call paged in its globals
    assert p.predict("a") is None
    p.learn("a", HandleOf(1))  # the next one needed nothing from the client
    assert p.predict("a") == HandleOf(1)


def test_a_site_that_uses_the_client_every_time_always_waits() -> None:
    p = Predictions()
    for _ in range(5):  # forward reads args.lr, a script object, on every call
        p.learn("a", HandleOf(1), nopipe=True)
        assert p.predict("a") is None
    assert not p.is_never("a")


def test_a_use_of_the_client_moves_the_sites_version_once() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    site = p.site("a")
    assert site is not None
    v = site.version
    p.learn("a", HandleOf(1), nopipe=True)
    p.learn("a", HandleOf(1), nopipe=True)
    assert site.version == v + 1  # a lane planned before is stale
    p.learn("a", HandleOf(1))
    assert site.version == v + 2


def test_a_site_whose_pipelined_calls_keep_using_the_client_stops_pipelining() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    for n in range(1, TOUCHES_ALLOWED + 1):
        p.sent(n, "a")
        p.touched(n)  # a branch read a global for the first time, answered late
        assert p.predict("a") is None
        p.learn("a", HandleOf(1))
    assert p.is_never("a") and p.predict("a") is None


def test_a_touch_keeps_what_the_site_returned_before() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    p.learn("a", NONE, nopipe=True)
    p.learn("a", NONE)  # an object once, None now: this site never pipelines
    assert p.is_never("a")


def test_instantiate_numbers_handles_in_order() -> None:
    template = ItemsOf(False, (HandleOf(3), ItemsOf(True, (HandleOf(4), HandleOf(3)))))
    shape, next_id = instantiate(template, 10)
    assert shape == Items(False, (Handle(10, 3), Items(True, (Handle(11, 4), Handle(12, 3)))))
    assert next_id == 13
    assert instantiate(NONE, 10) == (NONE, 10)


_templates: st.SearchStrategy[Template] = st.recursive(
    st.builds(HandleOf, st.integers(0, 99)),
    lambda inner: st.builds(ItemsOf, st.booleans(), st.tuples(inner) | st.tuples(inner, inner)),
    max_leaves=12,
)


@given(_templates, st.integers(1, 2**40))
def test_instantiated_ids_are_fresh_and_consecutive(template: Template, start: int) -> None:
    shape, next_id = instantiate(template, start)
    assert shape_handles(shape) == list(range(start, next_id))


def test_a_site_whose_classes_vary_is_learnt_by_place() -> None:
    p = Predictions()
    p.learn("dot", HandleOf(1))  # x.dot(m): an array
    p.sent(1, "dot")
    p.mispredicted(1)  # then a number at the same site: (x - m).dot(x - m)
    assert p.is_never("dot") and p.by_place("dot")


def test_a_site_that_returned_none_is_never_learnt_by_place() -> None:
    # d.get(k): None for some keys, a tensor for others, at one place as at
    # many; a place learnt afresh would guess a tensor where None comes.
    p = Predictions()
    p.learn("get", NONE)
    p.learn("get", HandleOf(1))
    assert p.is_never("get") and not p.by_place("get")
    q = Predictions()
    q.learn("get", HandleOf(1))
    q.sent(1, "get")
    q.mispredicted(1, none=True)  # a pipelined guess met None
    assert q.is_never("get") and not q.by_place("get")


def test_a_site_that_kept_using_the_client_is_not_learnt_by_place() -> None:
    p = Predictions()
    p.learn("a", HandleOf(1))
    for n in range(TOUCHES_ALLOWED):
        p.sent(n, "a")
        p.touched(n)
    assert p.is_never("a") and not p.by_place("a")
