"""numpy's global generator as the worker lends it (acceptor/_draws.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tether.acceptor._draws import (
    GENERATOR_SHUFFLE,
    SEEDING,
    SHUFFLING,
    check_in,
    check_out,
    drawing_name,
    order,
)


def test_the_global_generators_draws_and_seed_are_named() -> None:
    assert drawing_name(np.random.normal) == "normal"
    assert drawing_name(np.random.rand) == "rand"
    assert drawing_name(np.random.seed) == SEEDING  # a function of the module
    assert drawing_name(np.random.RandomState(0).normal) is None  # not the global one
    assert drawing_name(len) is None


def test_shuffles_are_named_apart_from_draws() -> None:
    # They change what they are given: the client runs the global one on the script's
    # own lists and arrays, and has another generator's order drawn by order().
    assert drawing_name(np.random.shuffle) == SHUFFLING
    assert drawing_name(np.random.default_rng(1).shuffle) == GENERATOR_SHUFFLE
    assert drawing_name(np.random.RandomState(1).shuffle) == GENERATOR_SHUFFLE
    assert drawing_name(np.random.default_rng(1).permutation) is None
    assert drawing_name(np.random.default_rng(1).integers) is None


@pytest.mark.parametrize("make", [np.random.default_rng, np.random.RandomState])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (7, 3), (5, 2, 2)])
def test_an_order_is_what_shuffling_would_do(make: object, shape: tuple[int, ...]) -> None:
    n = shape[0]
    items = np.arange(int(np.prod(shape))).reshape(shape)
    shuffled = items.copy()
    plain, drawn = make(3), make(3)  # type: ignore[operator]
    plain.shuffle(shuffled)
    idx = order(drawn.shuffle, n)
    assert sorted(idx) == list(range(n))
    assert items[idx].tolist() == shuffled.tolist()
    assert drawn.random() == plain.random()  # and the generator went on alike


def test_a_state_checked_out_and_in_goes_on_where_the_client_left_off() -> None:
    expected = np.random.RandomState(5).random_sample(4).tolist()
    np.random.seed(5)
    state = check_out()
    local = np.random.RandomState()
    local.set_state((state[0], np.frombuffer(state[1], np.uint32).copy(), *state[2:]))
    drawn = [local.random_sample() for _ in range(3)]
    name, keys, pos, has_gauss, cached = local.get_state()
    check_in((str(name), keys.tobytes(), int(pos), int(has_gauss), float(cached)))
    assert drawn == expected[:3]
    assert np.random.random_sample() == expected[3]  # the global one, where local stopped
