"""numpy's global generator as the worker lends it (acceptor/_draws.py)."""

from __future__ import annotations

import numpy as np

from tether.acceptor._draws import SEEDING, check_in, check_out, drawing_name


def test_the_global_generators_draws_and_seed_are_named() -> None:
    assert drawing_name(np.random.normal) == "normal"
    assert drawing_name(np.random.rand) == "rand"
    assert drawing_name(np.random.seed) == SEEDING  # a function of the module
    assert drawing_name(np.random.shuffle) is None  # it writes an array
    assert drawing_name(np.random.RandomState(0).normal) is None  # not the global one
    assert drawing_name(len) is None


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
