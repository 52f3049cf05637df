"""When the session opens a fast lane for an operator, and what the lane watches."""

from __future__ import annotations

import operator

from tether.client._lanes import Lane, Lanes
from tether.client._predict import NONE_AFTER, HandleOf, Predictions
from tether.wire._compact import CompactEncoder
from tether.wire._ops import NONE


class _Meta(type):
    pass


class Proxy(metaclass=_Meta):
    def __init__(self, hid: int) -> None:
        self._t_id = hid


class Mirrors:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, tid: int) -> type:
        self.asked.append(tid)
        return Proxy


def _lanes() -> tuple[Predictions, Lanes, Mirrors]:
    predictions = Predictions()
    mirrors = Mirrors()
    return predictions, Lanes(predictions, CompactEncoder(_Meta), mirrors), mirrors


KEY = ("o", operator.mul, 4, float)


def test_no_lane_before_the_site_is_predictable() -> None:
    predictions, lanes, _ = _lanes()
    lanes.offer_op(KEY, operator.mul, Proxy(1), 0.5)
    assert lanes.ops.get((operator.mul, Proxy, float)) is None
    for _ in range(NONE_AFTER - 1):  # None once is no prediction yet
        predictions.learn(KEY, NONE)
        lanes.offer_op(KEY, operator.mul, Proxy(1), 0.5)
        assert lanes.ops.get((operator.mul, Proxy, float)) is None
    predictions.learn(KEY, NONE)
    lanes.offer_op(KEY, operator.mul, Proxy(1), 0.5)
    lane = lanes.ops.get((operator.mul, Proxy, float))
    assert isinstance(lane, Lane) and lane.cls is None  # a lane for calls that return None


def test_a_learned_handle_opens_a_lane_that_watches_the_site() -> None:
    predictions, lanes, mirrors = _lanes()
    predictions.learn(KEY, HandleOf(4))
    lanes.offer_op(KEY, operator.mul, Proxy(1), 0.5)
    lane = lanes.ops.get((operator.mul, Proxy, float))
    assert isinstance(lane, Lane)
    assert lane.key == KEY and lane.cls is Proxy and mirrors.asked == [4]
    site = predictions.site(KEY)
    assert lane.site is site and site is not None and lane.version == site.version
    # Learning another template moves the version the lane compares with.
    predictions.learn(KEY, HandleOf(5))
    assert site.version != lane.version
    # So does a NOTICE for a call sent on a lane of the site.
    predictions.learn(KEY, HandleOf(4))
    lanes.ops.clear()
    lanes.offer_op(KEY, operator.mul, Proxy(1), 0.5)
    lane = lanes.ops.get((operator.mul, Proxy, float))
    assert isinstance(lane, Lane) and lane.version == site.version
    predictions.sent(9, KEY)
    predictions.mispredicted(9)
    assert site.never and site.version != lane.version


def test_methods_and_callables_have_lanes_keyed_by_their_operands_classes() -> None:
    predictions, lanes, _ = _lanes()
    obj, fn = Proxy(1), Proxy(2)
    predictions.learn(("m", 4, "add_"), HandleOf(4))
    lanes.offer_method(("m", 4, "add_"), obj, "add_", (Proxy(3), 2.0))
    assert isinstance(lanes.methods.get((Proxy, "add_", Proxy, float)), Lane)
    assert lanes.methods.get((Proxy, "add_", Proxy, int)) is None  # other classes: not yet
    predictions.learn(("c", 2, 4), HandleOf(4))
    lanes.offer_call(("c", 2, 4), fn, (Proxy(3),))
    assert isinstance(lanes.calls.get((2, Proxy)), Lane)
    lanes.offer_call(("c", 2, 4), fn, ("text",))
    assert lanes.calls.get((2, str)) is False  # a str has no fixed-size item


def test_an_operator_without_a_fixed_layout_is_remembered_as_laneless() -> None:
    predictions, lanes, mirrors = _lanes()
    key = ("o", operator.mul, 4, bool)
    predictions.learn(key, HandleOf(4))
    lanes.offer_op(key, operator.mul, Proxy(1), True)
    assert lanes.ops.get((operator.mul, Proxy, bool)) is False
    assert mirrors.asked == []  # no proxy class is built for it
