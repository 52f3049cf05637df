"""One numpy buffer refilled by the script and handed to torch after each fill.

A loader that reads each batch into the same preallocated array, and a running
buffer written in place, are common. `torch.tensor(buf)` copies what `buf` holds when
it is called; under Tether the call is pipelined and the array travels out of band,
so the worker must get the contents of that moment, not of when the call is written
to the socket. Small buffers, and one of 128 KiB.
"""

import numpy as np
import torch

torch.set_num_threads(1)

small = np.zeros(3)
batches = []
for i in range(4):
    small[:] = i  # refilled in place
    batches.append(torch.tensor(small))
for i, b in enumerate(batches):
    print("small", i, b.tolist())

large = np.zeros(1 << 14)  # 128 KiB: over what is copied, under a full batch
total = torch.zeros(1 << 14, dtype=torch.float64)
copies = []
for i in range(3):
    large[:] = i + 1
    copies.append(torch.from_numpy(large).clone())  # a copy of this fill
    total += torch.tensor(large)
    large[:] = -100.0  # overwritten before the script next waits
for i, c in enumerate(copies):
    print("large", i, float(c.sum()))
print("large total:", float(total.sum()))

window = np.arange(4.0)
acc = torch.zeros(4, dtype=torch.float64)
for step in range(5):
    acc.add_(torch.from_numpy(window) * 2)  # made of what window holds now
    window += 1
print("window:", acc.tolist())
