"""A seeded script whose libraries draw from numpy's global generator.

scikit-learn's `make_blobs()` or a train/test split with no `random_state` draws
from numpy's global generator. With numpy remoted the libraries keep the client's
numpy, so the script's `np.random.seed(n)` must reach their generator too: a seeded
script stays seeded, and a library that draws right after the seed draws what it
would in a plain run.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib = matplotlib.cbook.np  # the client's numpy, as a library of the client's uses it

for seed in (1, 7, 1):
    np.random.seed(seed)
    blobs = lib.random.normal(size=(3, 2)).round(6).tolist()
    order = lib.random.permutation(6).tolist()
    print(seed, "library:", blobs, order)
    np.random.seed(seed)
    print(seed, "script:", np.random.rand(2).round(6).tolist(), np.random.randint(0, 100))

np.random.seed(seed=3)
print("keyword:", lib.random.randint(0, 1000, size=4).tolist())
try:
    np.random.seed(-1)
except ValueError as exc:
    print("bad seed:", type(exc).__name__)
print("after:", lib.random.rand(1).round(6).tolist())  # the failed seed changed nothing
