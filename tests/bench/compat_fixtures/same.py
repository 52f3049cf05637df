"""Prints the same under `tether run --remote numpy` as plainly, but for a timing field."""

import time

import numpy as np

started = time.perf_counter()
a = np.arange(12).reshape(3, 4)
print("sum", int(a.sum()))
print("column means", a.mean(axis=0).tolist())
print(f"took {time.perf_counter() - started:.6f}s")
