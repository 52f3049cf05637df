"""Prints something that differs under `tether run`: the client must import tether."""

import sys

import numpy as np

print("first", int(np.ones(3).sum()))
print("tether loaded:", "tether" in sys.modules)
