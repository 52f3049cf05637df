# tether-test: remote=numpy
"""Arrays drawn by ``np.random.choice(population, size=k)`` of plain data, as a genetic
algorithm draws its parents: the indices are drawn on the client from the worker's
generator and the worker builds the array from them, so the numbers, the arrays (their
dtype too) and the stream after them must be numpy's own."""

import numpy as np

np.random.seed(4)
population = ["ab", "cde", "fg", "hij", "k"]
parents = []
for i in np.arange(0, 20, 2):
    p1, p2 = np.random.choice(population, size=2, p=[0.1, 0.2, 0.3, 0.2, 0.2], replace=False)
    cut = np.random.randint(0, len(p1))
    parents.append((str(p1[:cut] + p2[cut:]), int(i), round(float(np.random.random()), 6)))
print(f"children {parents}")
drawn = np.random.choice(population, 3)
print(f"drawn {drawn!r} {drawn.dtype} {drawn.tolist()}")
print(f"ints {np.random.choice(7, size=4)!r}, none {np.random.choice(3, 0)!r}")
print(f"floats {np.random.choice([1.5, 2.5], size=3, replace=True)!r}")
print(f"mixed {np.random.choice(['a', 1], size=2)!r}")
try:
    np.random.choice(population, size=9, replace=False)
except ValueError as exc:
    print(f"ValueError: {exc}")
try:
    np.random.choice(population, size=2, p=[0.5, 0.5])
except ValueError as exc:
    print(f"ValueError: {exc}")
print(f"after the errors {np.random.random():.12f}")
pair = np.random.choice(population, size=2, p=[0.5, 0.5, 0, 0, 0], replace=False)
pair[0] = "zz"  # the drawn array is the script's to change
print(f"pair {pair!r}")
remote = np.array(population)  # a remote population: drawn by the worker, as before
print(f"from an array {np.random.choice(remote, size=2)!r} then {np.random.random():.12f}")
