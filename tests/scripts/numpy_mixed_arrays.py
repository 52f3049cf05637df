"""numpy remoted while the data comes from a library of the client's own (as scikit-learn
datasets do): local arrays meet remote ones in every step of a small logistic regression,
as textbook code writes it. The client's numpy asks each remote array's class for
`__array_ufunc__`; the class of a result was never named by the script, and asking it
used to fail (a round trip each time, and `type(w).__array_priority__` raised).

tether-test: remote=numpy
"""

import matplotlib
import numpy as np

local_np = matplotlib.cbook.np  # the client's own numpy, as a library has it
X = local_np.arange(12.0).reshape(4, 3) / 10
y = local_np.array([0.0, 0.0, 1.0, 1.0])

w = np.zeros(3)
print("the class of a result:", type(w).__name__, type(w).__module__)
print("its numpy protocol:", type(w).__array_priority__, repr(type(w).__array_ufunc__))
print("built through it:", type(w)((2,)).shape, isinstance(w, type(w)))

for _ in range(300):
    pred = 1 / (1 + np.exp(-X.dot(w)))
    w -= 0.5 * -(y - pred).dot(X)
print("weights:", np.round(w, 4).tolist())
print("predictions:", np.round(1 / (1 + np.exp(-X.dot(w))), 3).tolist())
diff = y - np.round(pred)
print("mixed arithmetic:", diff.tolist(), (X @ w).shape, float((y * w[0]).sum()))
print("same class as named:", type(w) is np.ndarray)
