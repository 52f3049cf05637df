"""The client's own numpy arrays (a library's results: sklearn's datasets, pandas'
columns) handed to remote numpy calls, in every layout and dtype the script may have.

Each travels by value; the worker must rebuild exactly the array the script holds:
its dtype (byte order, units, string widths), shape (0-d, empty, Fortran order,
a strided view, a transpose), contents, and an array of records or objects too.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib = matplotlib.cbook.np  # the client's numpy, as a library of the client's uses it

base = lib.arange(24, dtype=lib.float64).reshape(4, 6)
cases = {
    "float64": base,
    "view": base[::2, 1:5],  # strided: not contiguous
    "transpose": base.T,
    "fortran": lib.asfortranarray(base),
    "float32": base.astype(lib.float32) / 3,
    "big-endian": base.astype(">i4"),
    "int8": lib.arange(-5, 5, dtype=lib.int8),
    "uint64": lib.array([0, 2**64 - 1], dtype=lib.uint64),
    "bool": base > 10,
    "complex": base[0] + 1j * base[1],
    "0-d": lib.array(3.5),
    "empty": lib.zeros((0, 3)),
    "datetime": lib.array(["2026-12-07", "2027-01-01"], dtype="datetime64[D]"),
    "timedelta": lib.array([1, 90], dtype="timedelta64[s]"),
    "strings": lib.array(["a", "tether", "xyz"]),
    "bytes": lib.array([b"ab", b"c"]),
    "records": lib.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
    "objects": lib.array([1, "two", None], dtype=object),
}

for name, local in cases.items():
    remote = np.asarray(local)  # the worker's copy of the client's array
    same = np.array_equal(remote, local) if local.dtype.kind not in "OV" else None
    print(
        f"{name:10s} {remote.dtype!s:24s} {remote.shape!s:8s} {str(same):5s}",
        remote.flags["WRITEABLE"],
        np.asarray(local).tolist() == local.tolist(),
    )

# Arithmetic with the client's arrays on either side, as a script does with sklearn's data.
x = cases["view"]
w = np.ones(4)
print("dot:", np.dot(x, w).tolist(), np.dot(x.T, np.arange(2.0)).tolist())
print("mixed:", (x - np.full(x.shape, 0.5)).sum(), float((-x * np.log1p(w[:2, None])).mean()))
print("sizes:", np.zeros(5)[cases["int8"][:2] + 5].tolist(), np.sum(cases["bool"]))
