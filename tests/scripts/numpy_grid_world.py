# tether-test: remote=numpy
"""Grid-world dynamic programming under a remoted numpy, as textbook code writes it: each
step builds a small int array from a Python list, adds an action vector and turns the
sum back into a list (`(np.array(state) + action).tolist()`), then reads and writes
float tables. The client builds arrays of plain data itself, makes int and float
arithmetic on its copies, answers `tolist()`, `item()` and `copy()` from them, and has
the worker build the same arrays under memory keys it names. The rest checks that
nothing it builds or keeps ever shows a value the worker's numpy would not: views of
built arrays, the worker's own writes, ints past 64 bits, ragged lists, empty arrays,
booleans, mixed lists, `.item()` of a larger array."""

import numpy as np

SIZE = 4
ACTIONS = [np.array([0, -1]), np.array([-1, 0]), np.array([0, 1]), np.array([1, 0])]


def step(state, action):
    if state in ([0, 0], [SIZE - 1, SIZE - 1]):
        return state, 0
    next_state = (np.array(state) + action).tolist()
    x, y = next_state
    if x < 0 or x >= SIZE or y < 0 or y >= SIZE:
        next_state = state
    return next_state, -1


def evaluate(in_place):
    new = np.zeros((SIZE, SIZE))
    sweeps = 0
    while True:
        values = new if in_place else new.copy()
        old = values.copy()
        for i in range(SIZE):
            for j in range(SIZE):
                total = 0
                for action in ACTIONS:
                    (ni, nj), reward = step([i, j], action)
                    total += 0.25 * (reward + values[ni, nj])
                new[i, j] = total
        sweeps += 1
        if abs(old - new).max() < 1e-4:
            return new, sweeps


def optimal():
    value = np.zeros((SIZE, SIZE))
    for _ in range(30):
        nxt = np.zeros_like(value)
        for i in range(SIZE):
            for j in range(SIZE):
                options = []
                for action in ACTIONS:
                    (ni, nj), reward = step([i, j], action)
                    options.append(reward + 0.9 * value[ni, nj])
                nxt[i, j] = np.max(options)
        value = nxt
    return value


values, sweeps = evaluate(in_place=True)
print("in place:", sweeps, "sweeps")
print(np.round(values, 2).tolist())
values, sweeps = evaluate(in_place=False)
print("synchronous:", sweeps, "sweeps")
print(np.round(values, 1).tolist())
print("optimal:", np.round(optimal(), 3).tolist())

# Int arithmetic on built arrays, as numpy makes it.
a = np.array([3, -7, 2**40])
b = np.arange(3)
print("int ops:", (a + b).tolist(), (a - 1).tolist(), (a * b).tolist(), (a / 2).tolist())
print("compare:", (a > b).tolist(), (a == 3).tolist(), (a + 0.5).tolist())
print("wraps:", (np.array([2**62]) * 4).tolist(), (np.array([-(2**63)]) - 1).tolist())
print("ranges:", np.arange(5, 0, -2).tolist(), np.arange(0).tolist(), np.arange(2, 5).tolist())
print("shapes:", np.ones((2, 3)).tolist(), np.zeros(0).tolist(), np.asarray((1.5, 2)).tolist())
print("mixed:", np.array([True, 2]).tolist(), np.array([1, 2.5]).tolist(), np.array([]).tolist())
print("bools:", np.array([True, False]).tolist(), (np.array([1.0]) < 2).tolist())
print("items:", np.array([4.5]).item(), np.array([[7]]).item(), a.copy().tolist())
print("reduce lists:", np.max([1.5, 3.0]), np.argmax([1, 9, 3]), np.min((4, 2)), np.any([0, 0]))
print(
    "sums:", np.arange(10).sum(), np.sum(np.arange(5)), np.array([2**62, 4]).prod(), np.sum([1, 2])
)
print("float sums:", np.array([0.1, 0.2, 0.3]).sum(), np.sum([0.1, 0.2]), np.ones(3).prod())

# A view of a built array sees a write to it, and a write through the view.
base = np.zeros(4)
view = base[1:]
print("view:", view.tolist(), float(view[0]))
base[2] = 5.0
print("view after write:", view.tolist(), float(view[1]))
view[0] = -1.0
print("base after view write:", base.tolist(), base.copy().tolist())
print("shape:", base.shape, view.ndim, base.size, base.nbytes, view.itemsize)
base.shape = (2, 2)  # in place: what was known of its shape is not any more
print("reshaped:", base.shape, base.ndim, base.tolist(), view.shape)

# The worker's own writes reach the copies.
c = np.array([1.0, 2.0])
d = c.copy()
np.add(c, 1.0, out=c)
print("after out=:", c.tolist(), d.tolist(), np.zeros_like(c).tolist())
d += 10
print("after +=:", d.tolist(), c.item(0) if c.size > 1 else None)

# What numpy refuses or builds otherwise is the worker's to answer, as locally.
print("past int64:", np.array([2**64]).dtype, np.array([2**64]).tolist())
try:
    np.array([[1], [1, 2]])
except ValueError as exc:
    print("ragged:", type(exc).__name__)
try:
    np.array([1, 2]).item()
except ValueError as exc:
    print("item of two:", exc)
print("strings:", np.array(["ab", "c"]).tolist(), np.array([1 + 2j]).tolist())
