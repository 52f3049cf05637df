# tether-test: remote=numpy
"""Python-level loops over a remote numpy's numbers, as numpy-from-scratch code
writes them (Gaussian naive Bayes in `math`, a prefix sum written in a loop):
numbers come back as values, the script computes with them locally, and an
array iterated while the loop writes to it yields what it holds now."""

import math

import numpy as np

rng = np.random.RandomState(0)
X = rng.normal(size=(40, 6))
y = (X[:, 0] > 0).astype(int)

params = []
for c in np.unique(y):
    Xc = X[np.where(y == c)]
    params.append([{"mean": col.mean(), "var": col.var()} for col in Xc.T])


def likelihood(mean, var, x):
    eps = 1e-4
    coeff = 1.0 / math.sqrt(2.0 * math.pi * var + eps)
    return coeff * math.exp(-(math.pow(x - mean, 2) / (2 * var + eps)))


def classify(sample):
    posteriors = []
    for i, c in enumerate(np.unique(y)):
        posterior = np.mean(y == c)
        for value, p in zip(sample, params[i]):
            posterior *= likelihood(p["mean"], p["var"], value)
        posteriors.append(posterior)
    return np.unique(y)[np.argmax(posteriors)]


pred = [classify(s) for s in X]
print("accuracy", np.mean(np.array(pred) == y))
print("first posteriors", [f"{likelihood(p['mean'], p['var'], 0.1):.6f}" for p in params[0][:3]])

m = X.mean()
print(type(m).__name__, repr(m.round(6)), f"{m:.6f}", float(m) == m)
print(
    isinstance(m, np.floating),
    isinstance(m, np.float64),
    isinstance(m, float),
    isinstance(m, np.integer),
    isinstance(np.int64(3), np.integer),
)
print(repr(np.float32(1.25) * 2), repr(np.int8(100) + np.int8(100)), repr(np.bool_(True)))
print(repr(np.sqrt(m * m)), repr(max(X[0])), sorted(X[1])[:2] == sorted(X[1].tolist())[:2])

b = np.arange(8)
for i, v in enumerate(b):  # the loop writes ahead of itself
    if i + 1 < len(b):
        b[i + 1] += v
print(b.tolist())
total = 0
for v in np.arange(1000):
    total += v * v
print(repr(total))
rows = 0
for row in X[:3]:  # rows are arrays (views): they stay remote
    rows += row.sum()
print(f"{rows:.6f}")

# numpy's functions are objects of one class: each one predicts its own results.
a = np.arange(12) % 4
for k in range(3):
    hits = np.where(a == k)
idx = np.append(np.where(a == 1)[0], np.where(a == 3)[0])
print(type(idx).__name__, idx[:4].tolist())
# One function called with and without size=: an array, then letters.
np.random.seed(3)
letters = list("abcdefgh")
word = list("".join(np.random.choice(letters, size=6)))
for j in range(len(word)):
    if np.random.random() < 0.5:
        word[j] = np.random.choice(letters)
print("".join(word))
