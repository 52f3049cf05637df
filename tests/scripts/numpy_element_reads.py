# tether-test: remote=numpy
"""Element-by-element reads of remote arrays in Python loops (the "pure Python
version" of a vectorization tutorial, label lookups in an evaluation loop): the
reads are answered from one copy of the array while nothing else is sent, and a
write to the array in between is seen by the next read."""

import numpy as np

X = np.arange(300)
Y = np.linspace(0.0, 1.0, 50)


def compute(x, y):
    result = 0
    for i in range(len(x)):
        for j in range(len(y)):
            result += x[i] * y[j]
    return result


print(repr(compute(X, Y)), repr(compute(Y, Y)))

grid = np.arange(12).reshape(3, 4)
print([grid[i, j] for i in range(3) for j in range(4) if (i + j) % 3 == 0])
print([repr(X[-k]) for k in range(1, 4)], repr(X[np.int64(5)]))

labels = np.array([3, 1, 4, 1, 5, 9, 2, 6])
hits = 0
for k in range(40):
    if labels[k % 8] > 2:
        hits += 1
    if k == 20:
        labels[1] = 7  # a write between reads: the next reads see it
print(hits, labels.tolist())

counts = np.zeros(5, dtype=int)
for k in range(30):
    counts[k % 5] += 1  # read, then write, every time
    _ = counts[(k + 1) % 5] + counts[(k + 2) % 5]
print(counts.tolist())

try:
    for k in range(30):
        X[k]
    X[1000]
except IndexError as exc:
    print("IndexError:", exc)
row = grid[1]  # a row is a view: it stays remote and writable
row[0] = -1
print(grid[1, 0], grid.tolist()[1])
