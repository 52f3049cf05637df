"""Local copies of small remote arrays (client/_replica.py), through a real ``tether run``.

What a copy saves is round trips, so the script below counts them (the session's
``stats``) around each case; the values are checked against local numpy.
(``tests/scripts/numpy_tabular_rl.py`` checks, line for line, that the output is
the local one in many more cases.)
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from tests.e2e.e2e_harness import run_json_script

TABULAR = '''
def tabular(steps):
    """Q-learning on two small tables, as textbook code writes it."""
    np.random.seed(3)
    q = [np.zeros(2), np.zeros(6)]
    seen = []
    for step in range(steps):
        s = step % 2
        values = q[s]
        best = [a for a, v in enumerate(values) if v == np.max(values)]
        a = int(np.random.choice(best)) if np.random.binomial(1, 0.9) else step % len(values)
        target = np.max(q[1 - s])
        q[s][a] += 0.5 * (np.random.normal() + target - q[s][a])
        seen.append(float(q[s][a]))
    return seen + [float(x) for x in q[0]] + [float(x) for x in q[1]]
'''

GRID = '''
ACTIONS = [np.array([0, -1]), np.array([1, 0]), np.array([0, 1])]


def grid_step(state, action):
    return (np.array(state) + action).tolist()


def grid(sweeps):
    """Dynamic programming on a 3 x 3 table, as grid-world code writes it."""
    table = np.zeros((3, 3))
    for _ in range(sweeps):
        old = table.copy()
        rows, cols = table.shape
        for i in range(rows):
            for j in range(cols):
                for action in ACTIONS:
                    x, y = grid_step([i, j], action)
                    if 0 <= x < 3 and 0 <= y < 3:
                        table[i, j] = 0.5 * old[x, y] + table[i, j] - 0.25
        fresh = np.zeros_like(table)
        fresh[0, 0] = abs(old - table).max()
    return table.tolist() + fresh.tolist()
'''

SCRIPT_TEMPLATE = """
import json
import numpy as np
from tether.client import _bootstrap

session = _bootstrap._session
out = {}


def syncs():
    return session.stats["sync"]


{TABULAR}

tabular(10)  # (the first calls learn which functions draw and which reduce)
before = syncs()
out["tabular"] = tabular(200)
out["tabular_syncs"] = syncs() - before

base, other = np.arange(6.0), np.ones(3)
view = base[2:]
out["first_reads"] = [float(view[0]), float(other[0]), float(base[5])]
before = syncs()
base[3] = 30.0  # written through base's copy; view's copy (same memory) dropped
out["after_write"] = [float(other[1]), float(base[3])]
out["after_write_syncs"] = syncs() - before
out["view_sees_it"] = float(view[1])
view[0] = -2.0
out["base_sees_it"] = [float(base[2]), float(np.min(base))]
base += 1.0  # in place, the whole array: its copies go
out["after_iadd"] = [float(base[2]), float(view[0]), float(other[2])]

a = np.zeros(4)
out["zero"] = float(a[1])
a.fill(7.0)  # a method: it may change anything
out["filled"] = [float(a[1]), float(np.max(a))]
np.add(a, 1.0, out=a)
out["added"] = [float(x) for x in a]

big = np.arange(100_000.0)  # 800 kB: more than comes with a first read
before = syncs()
out["big_read"] = float(big[12])
out["big_read_syncs"] = syncs() - before
out["big_known"] = session.replicas.known(big) is not None
out["big_max"] = float(np.max(big))
out["big_known_after_max"] = session.replicas.known(big) is not None

w = np.ones(2)
float(w[0]), int(np.argmax(w + w)), bool((w < w).any())  # (learn these call sites)
x, y = np.linspace(0.0, 1.0, 5), np.full(5, 0.25)
out["xy"] = [float(x[0]), float(y[0])]
before = syncs()
total = x + y
out["total"] = [float(v) for v in total]
out["total_argmax"] = int(np.argmax(total))
out["any_less"] = bool((x < y).any())
out["total_syncs"] = syncs() - before

{GRID}

grid(1)  # (the first calls learn which functions build arrays)
before = syncs()
out["grid"] = grid(6)
out["grid_syncs"] = syncs() - before

{PAIRS}

pairs(2)  # (the first calls learn which functions draw)
before = syncs()
out["pairs"] = pairs(10)
out["pairs_syncs"] = syncs() - before

{PRIORS}

priors(np.array([0, 1, 2, 1, 0, 2, 2, 1] * 10), 1)  # (the first calls learn the functions)
before = syncs()
out["priors"] = priors(np.array([0, 1, 2, 1, 0, 2, 2, 1] * 10), 20)
out["priors_syncs"] = syncs() - before

{ROWS}

rows(np.random.RandomState(1).rand(3, 4), np.random.RandomState(2).rand(2, 4))
train, test = np.random.RandomState(3).rand(40, 4), np.random.RandomState(4).rand(5, 4)
before = syncs()
out["rows"] = rows(train, test)
out["rows_syncs"] = syncs() - before

{PERCEPTRON}

import matplotlib

lib_X = matplotlib.cbook.np.array([[1.0, 2.0], [-1.5, 0.5], [2.0, -1.0], [-0.5, -2.0]])
perceptron(lib_X, np.array([1, 1, 0, 0]), 1)  # (the first calls learn the functions)
before = syncs()
out["perceptron"] = perceptron(lib_X, np.array([1, 1, 0, 0]), 10)
out["perceptron_syncs"] = syncs() - before
print(json.dumps(out))
"""
PERCEPTRON = '''
def perceptron(X, y, epochs):
    """A perceptron's updates over the client's own data, as MLfromscratch has them."""
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(epochs):
        for i, x_i in enumerate(X):
            p = np.where(np.dot(x_i, w) + b >= 0, 1, 0)
            u = 0.1 * (y[i] - p)
            w += u * x_i
            b += u
    return [float(v) for v in w] + [float(b)]
'''
PAIRS = '''
def pairs(n):
    """Parents drawn in pairs, as ML-From-Scratch's genetic algorithm draws them."""
    np.random.seed(5)
    population = ["ab", "cd", "ef", "gh", "ij"]
    picked = []
    for i in np.arange(0, 2 * n, 2):
        a, b = np.random.choice(population, size=2, p=[0.1, 0.2, 0.3, 0.2, 0.2], replace=False)
        cut = np.random.randint(0, len(a))
        picked.append([int(i), a[:cut] + b[cut:], b[:cut] + a[cut:]])
    return picked
'''

PRIORS = '''
def priors(y, rounds):
    """Class priors and a vote per sample, as ML-From-Scratch's naive Bayes has them."""
    classes = np.unique(y)
    votes = []
    for _ in range(rounds):
        posteriors = [np.mean(y == c) * (1.0 + 0.1 * int(c)) for c in classes]
        votes.append(int(classes[np.argmax(posteriors)]))
    return votes + [float(np.mean(y == c)) for c in classes] + [float(np.mean(y))]
'''

ROWS = '''
def rows(train, test):
    """Distances element by element, as k-nearest-neighbour code from scratch has them."""
    out = []
    for t in test:
        out.append([sum((t[i] - x[i]) ** 2 for i in range(len(t))) for x in train])
    return out
'''

SCRIPT = (
    SCRIPT_TEMPLATE.replace("{TABULAR}", TABULAR)
    .replace("{GRID}", GRID)
    .replace("{PAIRS}", PAIRS)
    .replace("{PRIORS}", PRIORS)
    .replace("{ROWS}", ROWS)
    .replace("{PERCEPTRON}", PERCEPTRON)
)


def _local(code: str, name: str, *args: Any) -> Any:
    """One of the script's functions, run here on local numpy."""
    namespace: dict[str, Any] = {"np": numpy}
    exec(code, namespace)
    return namespace[name](*args)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result: dict[str, Any] = run_json_script(tmp_path_factory.mktemp("replica"), SCRIPT, "numpy")
    return result


def test_a_tabular_loop_gives_local_numbers_with_a_few_round_trips(out: dict[str, Any]) -> None:
    assert out["tabular"] == _local(TABULAR, "tabular", 200)
    # Reads, reductions, draws and writes: about ten round trips a step without
    # copies (2,000 here); with them, the seeding and the tables' first reads.
    assert out["tabular_syncs"] <= 10, out["tabular_syncs"]


def test_a_write_keeps_copies_of_other_memory_and_reaches_views_of_its_own(
    out: dict[str, Any],
) -> None:
    assert out["first_reads"] == [2.0, 1.0, 5.0]
    assert out["after_write"] == [1.0, 30.0]
    assert out["after_write_syncs"] == 0  # the write pipelined, both copies still good
    assert out["view_sees_it"] == 30.0
    assert out["base_sees_it"] == [-2.0, -2.0]
    assert out["after_iadd"] == [-1.0, -1.0, 1.0]


def test_the_workers_own_writes_end_every_copy(out: dict[str, Any]) -> None:
    assert out["zero"] == 0.0
    assert out["filled"] == [7.0, 7.0]
    assert out["added"] == [8.0] * 4


def test_a_large_array_is_not_copied_for_one_read(out: dict[str, Any]) -> None:
    assert out["big_read"] == 12.0
    assert out["big_read_syncs"] == 1
    assert not out["big_known"]
    assert out["big_max"] == 99_999.0  # reduced by the worker, not copied
    assert not out["big_known_after_max"]


def test_sums_of_float_tables_are_made_locally(out: dict[str, Any]) -> None:
    assert out["xy"] == [0.0, 0.25]
    expected = numpy.linspace(0.0, 1.0, 5) + 0.25
    assert out["total"] == [float(v) for v in expected]
    assert out["total_argmax"] == 4 and out["any_less"]
    assert out["total_syncs"] == 0


def test_a_grid_world_builds_adds_and_lists_small_arrays_without_waiting(
    out: dict[str, Any],
) -> None:
    assert out["grid"] == _local(GRID, "grid", 6)
    # Each step builds an int array from a list, adds an action and lists the sum;
    # each sweep copies the table, writes it and builds a fresh one: all of it made
    # on the client's copies and sent without a wait (without them, 2-3 round trips
    # a step, 160 here), and the temporaries dropped do not push the tables out.
    assert out["grid_syncs"] == 0, out["grid_syncs"]


def test_a_draw_made_by_the_worker_leaves_the_copies_good(out: dict[str, Any]) -> None:
    assert out["pairs"] == _local(PAIRS, "pairs", 10)
    # The pair's indices are drawn here, from the worker's generator checked out
    # once, and the worker builds the pair from them (np.take), its copy made here:
    # nothing waits. Drawn by the worker, a pair cost two round trips (listing it,
    # checking the generator out again for the cut), and before draws left copies
    # good, three.
    assert out["pairs_syncs"] <= 2, out["pairs_syncs"]


def test_means_of_booleans_and_small_ints_are_made_on_copies(out: dict[str, Any]) -> None:
    y = numpy.array([0, 1, 2, 1, 0, 2, 2, 1] * 10)
    assert out["priors"] == _local(PRIORS, "priors", y, 20)
    # np.mean(y == c) is a count over a length (exact, the worker's to the bit). Before,
    # each asked the worker and moved the epoch, so the loop over the classes and the
    # last index read their copies again: about nine round trips a round, 180 here.
    assert out["priors_syncs"] <= 10, out["priors_syncs"]


def test_rows_walked_in_a_loop_come_with_their_copies(out: dict[str, Any]) -> None:
    train, test = numpy.random.RandomState(3).rand(40, 4), numpy.random.RandomState(4).rand(5, 4)
    assert out["rows"] == _local(ROWS, "rows", train, test)
    # One round trip a walk of train (and a few more: the walk of test, a first
    # read): its rows and its values come in one reply. Before, each row's first
    # read fetched that row, 40 a walk: 218 here.
    assert out["rows_syncs"] <= 5 + 4, out["rows_syncs"]


def test_numpys_functions_that_change_nothing_keep_the_copies(out: dict[str, Any]) -> None:
    X = numpy.array([[1.0, 2.0], [-1.5, 0.5], [2.0, -1.0], [-0.5, -2.0]])
    assert out["perceptron"] == _local(PERCEPTRON, "perceptron", X, numpy.array([1, 1, 0, 0]), 10)
    # Each step waits for np.dot's number and for y[i] - p (a number too); y's copy
    # stays good across np.dot, np.where and w += ... (three round trips a step when
    # any of them dropped it).
    assert out["perceptron_syncs"] <= 2 * 40 + 2, out["perceptron_syncs"]
