"""A script that runs until it is stopped: the runner's child while the runner is stopped."""

import time

import numpy as np

print("started", np.zeros(1).tolist(), flush=True)
time.sleep(600)
