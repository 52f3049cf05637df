# tether-test: remote=numpy
"""One draw at a time from a seeded, remoted numpy.random, as genetic algorithms
and tabular RL do (`if np.random.random() < rate:` per gene, per step): the
numbers and the stream after them are the local ones, however the draws
interleave with other kinds of draws, arrays of draws, other remote calls and
reseeding."""

import numpy as np

np.random.seed(11)
letters = list("abcdefghijklmnopqrstuvwxyz ")
genes = list("genetic algorithm")
mutated = 0
for generation in range(60):
    for j in range(len(genes)):
        if np.random.random() < 0.05:
            genes[j] = np.random.choice(letters)
            mutated += 1
print("".join(genes), mutated)

# A run broken off halfway by another kind of draw, then by an array of draws.
walk = [np.random.binomial(1, 0.5) for _ in range(30)]
print(sum(walk), np.random.normal(-0.1, 1.0))
print(np.random.uniform(size=3).round(6).tolist(), np.random.random())
steps = 0
while np.random.binomial(1, 0.9) == 1:  # a run of unknown length
    steps += 1
print("steps", steps, np.random.randint(0, 100))

# Reseeding in the middle of a run.
first = [np.random.random() for _ in range(12)]
np.random.seed(11)
again = [np.random.random() for _ in range(12)]
print(first[:2] == again[:2], round(sum(again), 9))

# Draws between other remote calls, and in the worker's own code.
q = np.zeros(4)
for step in range(20):
    a = np.random.randint(0, 4)
    q[a] += np.random.normal()
    if np.random.binomial(1, 0.3):
        q = q * 0.9
print(q.round(6).tolist(), np.random.permutation(5).tolist(), np.random.random())

# Generator objects and arrays are untouched.
rng = np.random.default_rng(5)
print([round(float(rng.random()), 9) for _ in range(8)], rng.integers(0, 9, size=4).tolist())
print(round(float(np.random.standard_normal()), 9), np.random.random_sample())
