"""Shuffling the script's own lists and arrays with a remoted numpy.

Minibatch gradient descent written from scratch shuffles an index list, or a
library's array, in place with `np.random.shuffle` and then reads its own object.
With numpy remoted the list or array is the client's; the shuffle must change it
there, in the order a plain run gives, and the generator must go on from there.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib = matplotlib.cbook.np  # the client's numpy, as a library of the client's uses it

np.random.seed(0)
order = list(range(8))
np.random.shuffle(order)
print("index list:", order)
names = ["ant", "bee", "cat", "dog", "eel"]
np.random.shuffle(names)
print("names:", names)
X = lib.arange(12).reshape(6, 2)  # the client's array: rows shuffled together
np.random.shuffle(X)
print("rows:", X.tolist())
y = lib.arange(5.0)
np.random.shuffle(y)
print("vector:", y.tolist())
print("drawn after:", np.random.randint(0, 100, size=3).tolist())

rng = np.random.default_rng(7)
items = list(range(6))
rng.shuffle(items)
print("generator:", items, rng.integers(0, 100))
rs = np.random.RandomState(3)
arr = lib.arange(6)
rs.shuffle(arr)
print("RandomState:", arr.tolist(), rs.randint(0, 100))

remote = np.arange(6)
np.random.shuffle(remote)
print("remote array:", remote.tolist())
empty: list[int] = []
np.random.shuffle(empty)
print("empty:", empty)
try:
    np.random.shuffle(5)
except TypeError as exc:
    print("not a sequence:", type(exc).__name__)
