# tether-test: remote=numpy
"""Tabular reinforcement learning under a remoted numpy, as textbook code writes it:
every step reads small arrays element by element, reduces them (`np.max(q[s])` in a
list comprehension), draws from the seeded global generator and writes one element
back (`q[s][a] += ...`). The client answers reads, reductions, iteration and the sum
of two tables from local copies, and each write keeps the copies of other memory. The
rest checks that the copies never show a stale value: views that share memory, writes
through views, in-place arithmetic, the worker's own functions writing in place, int,
float32 and bool arrays, arrays too large to copy at once, NaN, and empty arrays."""

import copy

import numpy as np

np.random.seed(7)
N_ACTIONS = [2, 6, 1]
NEXT = [[2, 1], [2] * 6]
INITIAL = [np.zeros(n) for n in N_ACTIONS]


def choose(state, q_value, eps=0.1):
    if np.random.binomial(1, eps) == 1:
        return np.random.choice(range(N_ACTIONS[state]))
    values = q_value[state]
    return np.random.choice([a for a, v in enumerate(values) if v == np.max(values)])


def episode(q1, q2=None):
    state, lefts = 0, 0
    while state != 2:
        if q2 is None:
            action = choose(state, q1)
        else:
            action = choose(state, [a + b for a, b in zip(q1, q2)])
        lefts += state == 0 and action == 1
        reward = 0.0 if state == 0 else np.random.normal(-0.1, 1)
        nxt = NEXT[state][action]
        if q2 is None:
            active, target = q1, np.max(q1[nxt])
        else:
            active, other = (q1, q2) if np.random.binomial(1, 0.5) else (q2, q1)
            best = np.random.choice(
                [a for a, v in enumerate(active[nxt]) if v == np.max(active[nxt])]
            )
            target = other[nxt][best]
        active[state][action] += 0.1 * (reward + target - active[state][action])
        state = nxt
    return lefts


q, q1, q2 = copy.deepcopy(INITIAL), copy.deepcopy(INITIAL), copy.deepcopy(INITIAL)
counts = np.zeros((2, 40))
for ep in range(40):
    counts[0, ep] = episode(q)
    counts[1, ep] = episode(q1, q2)
print("left counts", counts.sum(axis=1).tolist(), int(counts[0].argmax()), counts[1].max())
print("q", [t.round(9).tolist() for t in q])
print("double", [(a + b).round(9).tolist() for a, b in zip(q1, q2)])
print("argmax", [int(t.argmax()) for t in q], [bool(t.any()) for t in q], np.random.random())

# Views share memory: a write to either side is seen through the other.
base = np.arange(8.0)
view = base[2:]
print(view[0], np.max(view), base[3])
base[2] = 50.0
print(view[0], np.max(view), [float(x) for x in view][:2])
view[1] = -4.0
print(base[3], np.min(base), base.argmin())
rows = np.zeros((3, 4))
row = rows[1]
print(rows[1, 2], row[2])
rows[1, 2] = 9.5
print(row[2], np.max(row), rows.max())

# In-place arithmetic, and the worker's own functions writing in place.
a, b = np.ones(5), np.full(5, 2.0)
print(a[0], b[0], np.max(a + b))
a += 1.5
print(a[0], b[0], (a + b)[4], (a > b).all())
np.add(b, 10.0, out=b)
print(b[1], np.max(b))
b.fill(-1.0)
print(b[2], [float(x) for x in b], np.argmax(a - b))
np.copyto(a, np.arange(5.0))
print(a[4], a.argmax(), sum(float(x) for x in a))

# Iteration that writes ahead of itself sees its own writes.
chain = np.zeros(6)
for i, x in enumerate(chain):
    if i + 1 < len(chain):
        chain[i + 1] = x + 1.5
print(chain.tolist())

# Other kinds: int (no local write), float32 (rounded the same), bool, NaN, empty.
ints = np.arange(6)
print(ints[2], np.max(ints))
ints[2] = 40
print(ints[2], np.max(ints), ints.argmax())
f32 = np.zeros(3, dtype=np.float32)
print(repr(f32[0]))
f32[0] = 0.1
print(repr(f32[0]), np.max(f32) == np.float32(0.1))
flags = np.zeros(4, dtype=bool)
print(flags[1], np.any(flags))
flags[1] = True
print(flags[1], np.any(flags), np.count_nonzero(flags))
nan = np.array([1.0, np.nan, 3.0])
print(nan[1], np.max(nan), np.argmax(nan), nan.min())
try:
    np.max(np.zeros(0))
except ValueError as exc:
    print("empty:", exc)

# An array too large to come with its first read: read, write, read again.
big = np.arange(5000.0)
print(big[10], big[4999], sum(float(big[k]) for k in range(0, 5000, 250)))
big[10] = -1.0
print(big[10], np.max(big), big.argmin())

# Draws around writes: the stream is the seeded one, before and after an array draw.
walk = np.zeros(5)
for k in range(20):
    walk[k % 5] += np.random.normal()
print(walk.round(9).tolist(), np.random.rand(2).round(9).tolist(), np.random.random())
np.random.shuffle(walk)
print(walk.round(9).tolist(), np.random.binomial(10, 0.5))
