"""numpy remoted while a library of the client's own (matplotlib) imports numpy
and is handed the script's remote arrays, as when plotting results.

tether-test: remote=numpy
tether-test: creates=curve.png
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

x = np.linspace(0.0, 2.0, 9)
y = x**2 - 1
print(f"x sum {x.sum():.3f}, y max {y.max():.3f}")
fig, ax = plt.subplots()
(line,) = ax.plot(x, y)
print(
    f"plotted {len(line.get_xdata())} points, y range {min(line.get_ydata()):.3f}..{max(line.get_ydata()):.3f}"
)
ax.hist(np.sin(x), bins=3)
print(f"axes limits {tuple(round(v, 3) for v in ax.get_xlim())}")
fig.savefig("curve.png")
print(f"saved; a matplotlib result back in numpy: {np.asarray(line.get_ydata()).mean():.3f}")
print(f"remote array type: {type(x).__name__}")
# A library's own numpy copies a remote numpy scalar (matplotlib's colors do).
local_np = matplotlib.cbook.np
print(f"copied by the library: {local_np.array(y.max(), copy=True) * 2:.3f}")
