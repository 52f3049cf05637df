# tether-test: remote=numpy
# tether-test: creates=arr.npy,bundle.npz
"""A non-torch remoted module: this script runs with `--remote numpy`.

Covers: numpy arrays behind proxies (arithmetic, broadcasting, indexing and item
assignment, in-place ops, reductions, linalg, random Generator), conversions to
Python values, repr/str and f-string formatting of numpy scalars, isinstance,
np.linalg.LinAlgError caught by the script, np.save/np.load on the user's files,
and a function from the script applied with np.apply_along_axis / vectorize.
"""

import os

import numpy as np

np.set_printoptions(precision=5, suppress=True)
rng = np.random.default_rng(42)

a = rng.standard_normal((3, 4))
print("a =")
print(a)
print(f"shape {a.shape}, dtype {a.dtype}, ndim {a.ndim}, size {a.size}, len {len(a)}")
print(f"isinstance(a, np.ndarray): {isinstance(a, np.ndarray)}")
print(f"a.sum() = {a.sum():.6f}; a.mean(axis=0) = {a.mean(axis=0)}")
print(f"repr(a[0]) = {a[0]!r}")

b = np.arange(12).reshape(3, 4)
b[1, 2] = 100
b[:, 0] += 5
b[b > 50] = -1
b *= 2
print("b =", b.tolist())
print(f"b.max() = {b.max()}, argmax = {b.argmax()}, int(b[2, 3]) = {int(b[2, 3])}")
print(f"broadcast: {(b + np.array([1, 2, 3, 4])).tolist()}")
print(f"rows: {[int(r.sum()) for r in b]}")
print(f"sorted by row sum: {[r.tolist() for r in sorted(b, key=lambda r: r.sum())]}")

m = rng.standard_normal((4, 4))
spd = m @ m.T + 4 * np.eye(4)
inv = np.linalg.inv(spd)
print(f"inv ok: {np.allclose(spd @ inv, np.eye(4))}")
evals = np.linalg.eigvalsh(spd)
print(f"eigenvalues: {[f'{v:.5f}' for v in evals]}")
x = np.linalg.solve(spd, np.ones(4))
print(f"solve: {x}")
try:
    np.linalg.inv(np.zeros((2, 2)))
except np.linalg.LinAlgError as e:
    print(f"caught LinAlgError: {e}")
try:
    np.ones(3) @ np.ones(4)
except ValueError as e:
    print(f"caught ValueError: {str(e).splitlines()[0]}")
try:
    a[5]
except IndexError as e:
    print(f"caught IndexError: {e}")


def softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


probs = np.apply_along_axis(softmax, 1, a)
print(f"softmax rows sum to 1: {np.allclose(probs.sum(axis=1), 1.0)}")
print(f"probs[0] = {probs[0]}")
clip = np.vectorize(lambda v: max(min(v, 0.5), -0.5))
print(f"clipped: {clip(a[0])}")

total = np.float64(0.0)
for v in a.ravel():
    total += v
print(f"python loop total {float(total):.6f} vs a.sum() {float(a.sum()):.6f}")
print(f"float(a[0, 0]) = {float(a[0, 0]):.6f}; bool(a[0, 0] > 0) = {bool(a[0, 0] > 0)}")

np.save("arr.npy", a)
print(f"arr.npy exists: {os.path.exists('arr.npy')}, size {os.path.getsize('arr.npy')}")
loaded = np.load("arr.npy")
print(f"loaded equal: {np.array_equal(loaded, a)}")
np.savez("bundle.npz", a=a, b=b)
with np.load("bundle.npz") as z:
    print(f"npz files: {sorted(z.files)}, b sum {int(z['b'].sum())}")
print(f"dtype keys: {({np.dtype('float64'): 'f8', np.dtype('int64'): 'i8'})[b.dtype]}")
print("done")
