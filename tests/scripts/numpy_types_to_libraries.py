"""numpy remoted while the client's libraries (scipy, pandas, matplotlib) use numpy's
types and dtypes that the script hands them.

scipy's FFT does `np.array(x, dtype=x.dtype.newbyteorder("="))` with its own numpy;
pandas' `df.select_dtypes(np.number)` asks `issubclass(np.number, np.generic)` of its
own. Both must see numpy's objects, not the script's view of the worker's. The script's
own comparisons of dtypes and types must still hold.

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

lib_np = matplotlib.cbook.np  # the numpy a library of the client's uses

x = np.linspace(0.0, 1.0, 6)
view = np.transpose(np.stack([x, x * 2]))[:, 1]

# What scipy.fftpack does with an array it is handed.
dtype = view.dtype.newbyteorder("=")
copy = lib_np.array(view, dtype=dtype, copy=True)
print(f"library copy: {copy.dtype} {copy.sum():.3f} {copy.flags['C_CONTIGUOUS']}")

# What pandas' select_dtypes does with np.number.
print("np.number for a library:", issubclass(np.number, lib_np.generic))
print(
    "issubdtype:", lib_np.issubdtype(x.dtype, np.floating), lib_np.issubdtype(np.int32, np.number)
)
print(
    "library dtype from the script's type:",
    lib_np.dtype(np.float32),
    lib_np.zeros(2, dtype=np.int16).dtype,
)

# The script's own view of dtypes and types.
print("dtype == np.float64:", x.dtype == np.float64, x.dtype == "float64", x.dtype != np.float32)
print("dtype is a dtype:", isinstance(x.dtype, np.dtype), type(x.dtype).__name__)
print("dtype.type is np.float64:", x.dtype.type is np.float64, x.dtype.kind, x.dtype.itemsize)
s = x.sum()
print("scalar:", isinstance(s, np.floating), isinstance(s, np.generic), type(s).__name__)
y = x.astype(np.float32)
print("astype:", y.dtype, y.dtype == np.float32, np.float32(2.5) * y)
z = np.zeros(3, dtype=np.int64)
print("zeros int64:", z.dtype, np.issubdtype(z.dtype, np.integer), np.iinfo(z.dtype).max)
print("finfo:", np.finfo(np.float32).eps, np.dtype("int8").itemsize)
d = np.datetime64("2026-12-07") + np.timedelta64(3, "D")
print("datetime:", d, isinstance(d, np.datetime64), isinstance(d, np.generic))
rec = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
rec[0]["a"] = 7
print(
    "record:",
    rec[0],
    rec["a"].tolist(),
    rec.dtype.names,
    rec.dtype == np.dtype([("a", "i4"), ("b", "f8")]),
)
