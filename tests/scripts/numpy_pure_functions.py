"""numpy's functions that change nothing, between reads of small arrays, and the
ones that write, under --remote numpy.

A perceptron's step (`np.dot(x_i, w)`, `np.where(z >= 0, 1, 0)`, `y[i] - p`,
`w += u * x_i`) reads labels element by element between numpy calls that make new
arrays; those calls must not cost the labels' local copy, and every call that does
write (`out=`, `np.copyto`, `np.put`, `ufunc.at`, a shuffle, a ufunc made of Python
code) must be seen by the next read.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib = matplotlib.cbook.np  # the client's numpy, as a library of the client's uses it

X = lib.array([[1.0, 2.0], [-1.5, 0.5], [2.0, -1.0], [-0.5, -2.0], [0.3, 0.1]])
y = np.array([1, 1, 0, 0, 1])
w = np.zeros(2)
b = 0.0
for epoch in range(4):
    for i, x_i in enumerate(X):
        z = np.dot(x_i, w) + b
        p = np.where(z >= 0, 1, 0)
        u = 0.1 * (y[i] - p)
        w += u * x_i
        b += u
    print(epoch, w.round(4).tolist(), round(float(b), 4), [int(y[i]) for i in range(5)])

m = np.exp(-np.abs(w)) + np.maximum(w, 0.5)
print("pure:", m.round(4).tolist(), np.sum(y), int(y[2]), np.mean(np.sqrt(np.arange(5.0))))

np.add(y, 10, out=y)
print("out=:", [int(y[i]) for i in range(5)])
np.copyto(y, np.arange(5))
print("copyto:", [int(y[i]) for i in range(5)])
np.put(y, [0, 4], [7, 9])
print("put:", [int(y[i]) for i in range(5)])
np.add.at(y, [1, 1], 5)
print("at:", [int(y[i]) for i in range(5)])
np.negative(y, out=y)
print("negative out=:", [int(y[i]) for i in range(5)])
np.random.seed(3)
np.random.shuffle(y)
print("shuffle:", [int(y[i]) for i in range(5)])
seen = []
double = np.frompyfunc(lambda v: seen.append(int(v)) or v * 2, 1, 1)
print("frompyfunc:", double(y).tolist(), sorted(seen), int(y[0]))
print("client ufunc:", lib.subtract(y, 1).tolist(), (1 - y).tolist(), int(y[3]))
