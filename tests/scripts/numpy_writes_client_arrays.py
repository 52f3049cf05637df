"""numpy functions that write into the script's own arrays, with numpy remoted.

A library's array (scikit-learn's data, a pandas column) is the client's own; the
script fills it, clips it into itself or accumulates into it with numpy's writers
(`np.copyto`, `np.put`, `np.add.at`, `np.fill_diagonal`, `out=`). Each array
travels to the worker as a copy: the script must still see its own array changed,
and get its own array back where numpy returns `out`.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib = matplotlib.cbook.np  # the client's numpy, as a library of the client's uses it

X = lib.zeros(5)
np.copyto(X, 2.5)
print("copyto:", X.tolist())
np.put(X, [0, 3], [-1.0, 7.0])
print("put:", X.tolist())
counts = lib.zeros(4, dtype=lib.int64)
np.add.at(counts, [0, 0, 2, 3, 3, 3], 1)
print("add.at:", counts.tolist())
M = lib.ones((3, 3))
np.fill_diagonal(M, 0)
print("fill_diagonal:", M.tolist())
np.putmask(X, X > 2, 0.0)
print("putmask:", X.tolist())

remote = np.arange(5.0)
returned = np.add(remote, 1, out=X)
print("out=:", X.tolist(), returned is X)
returned = np.clip(X, 2, 4, out=X)
print("clip into itself:", X.tolist(), returned is X)
q, r = lib.zeros(3), lib.zeros(3)
pair = np.divmod(np.array([7.0, 8.0, 9.0]), 4, out=(q, r))
print("two outs:", q.tolist(), r.tolist(), pair[0] is q and pair[1] is r)
Y = np.zeros(5)  # a remote array: written where it is, as before
np.copyto(Y, X)
print("remote target:", Y.tolist(), np.sum(Y))
