"""One numpy function, one kind of operands, two kinds of result: `np.dot` of a matrix
and a vector is a vector, of two vectors a number (power iteration, Rayleigh quotients).

The client guesses a call's result from the calls before it at the same site; a guess
that turns out wrong must not leave the script holding an object that acts as the
wrong kind once the worker has said so: here a number, used by the client's own numpy
(`local / lam` asks `lam` for `__array_ufunc__`), must act as a number.

tether-test: remote=numpy
"""

import numpy as np

a = np.array([[41.0, 4.0, 20.0], [4.0, 26.0, 30.0], [20.0, 30.0, 50.0]])
vector = np.array([41.0, 4.0, 20.0])
lam_previous = 0.0
for step in range(6):
    w = np.dot(a, vector)  # a vector
    vector = w / np.linalg.norm(w)
    lam = np.dot(vector.T, np.dot(a, vector))  # a number, from the same site
    error = np.abs(lam - lam_previous) / lam
    print(f"step {step}: lambda {lam:.6f}, error {error:.3e}, {type(lam).__name__}")
    lam_previous = lam
print("dominant eigenvalue:", round(float(lam), 6))
print("as numpy sees it:", np.float64(1.0) / lam > 0, np.isscalar(lam), np.ndim(lam))
total = np.sum(a, axis=0)  # a vector, then a number from the same site
grand = np.sum(total)
print("sums:", total.tolist(), float(grand), np.float64(2.0) * grand, type(grand).__name__)
