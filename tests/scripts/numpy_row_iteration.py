# tether-test: remote=numpy
"""Rows of small arrays walked in Python loops, as from-scratch ML code walks them
(k nearest neighbours' distances, a perceptron's samples): each row comes with a copy
of its values, so reading its elements waits for nothing. Writes through a row reach
the array and the other rows, and the array's writes reach the rows."""

import math

import numpy as np


def distance(a, b):
    total = 0.0
    for i in range(len(a)):
        total += pow(a[i] - b[i], 2)
    return math.sqrt(total)


rng = np.random.RandomState(0)
train, test = rng.rand(30, 4), rng.rand(5, 4)
for t in test:
    nearest = np.argsort([distance(t, x) for x in train])[:3]
    print(f"nearest {nearest.tolist()} at {distance(t, train[nearest[0]]):.6f}")

w = np.zeros((3, 2))
for row in w:
    row[0] = 5.0  # through the row: the array sees it
    row[1] += 1.0
    print(f"row {row[0]} {row[1]}, array {w[0, 0]}, sum {float(row.sum())}")
w[2, 1] = -3.0  # through the array: the next walk's rows see it
print(f"rows again {[(float(r[0]), float(r[1])) for r in w]}")

cube = np.arange(12).reshape(3, 2, 2)
for plane in cube:
    print(" ".join(f"{int(r[0])},{int(r[1])}" for r in plane), end=" | ")
    plane[0, 0] = -1
print()
print(f"cube {cube.tolist()}")

flags = np.array([[True, False], [False, True]])
for f in flags:
    f[1] = True
    print(f"flags {bool(f[0])} {bool(f[1])}")
print(f"flags {flags.tolist()}")

words = np.array([["ab", "cd"], ["ef", "gh"]])
print(f"words {[w[1] + w[0] for w in words]}")
big = np.ones((300, 10))  # over the size that comes with its rows
print(f"big {sum(float(r[3]) for r in big)}")
