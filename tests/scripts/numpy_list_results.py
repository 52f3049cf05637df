"""Calls that return lists of arrays whose length depends on the data.

`np.array_split(x, n)` makes n arrays and `tolist()` of an array of times makes one
object per element: the same call site returns lists of other lengths from one call
to the next. The script must get every list whole, as Python would give it, whatever
the site returned before.

tether-test: remote=numpy
"""

import numpy as np

x = np.arange(10.0)
for n in (2, 3, 1, 4, 4):
    parts = np.array_split(x, n)
    print(n, len(parts), [p.tolist() for p in parts])

for days in (1, 3, 2):
    stamps = np.arange("2026-12-01", f"2026-12-0{1 + days}", dtype="datetime64[D]")
    listed = stamps.tolist()
    print(days, len(listed), [str(d) for d in listed])

pairs = [np.divmod(np.arange(float(k)), 2.0) for k in (3, 4)]  # a tuple of two arrays
print([(q.tolist(), r.tolist()) for q, r in pairs])
