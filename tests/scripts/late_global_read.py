"""A global first read by a pipelined call, rebound by the script before it next waits.

`forward` reads SCALE on every call, and OFFSET only on the branch taken when `shift` is
set. The first calls never take that branch, so the worker holds SCALE (paged in by the
first call, which waited) but not OFFSET. The call that first takes the branch is
pipelined: the worker asks for OFFSET while the script runs ahead, and the client answers
at its next wait. If the script rebinds OFFSET in between, the worker must still see the
value OFFSET had when the call was made, as Python would.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

SCALE = 2.0


class Shift(torch.nn.Module):
    def forward(self, x, shift):
        if shift:
            return x * SCALE + OFFSET  # OFFSET: first read here
        return x * SCALE


model = Shift()
x = torch.ones(3)
for step in range(5):
    y = model(x, False)
    print(f"step {step}: {y.tolist()}")

OFFSET = 1.0
y = model(x, True)  # pipelined: the worker reads OFFSET now, as the script sees it
OFFSET = 100.0  # rebound before the script next waits
print(f"shifted: {y.tolist()}")
print(f"shifted again: {model(x, True).tolist()}")
