# tether-test: expect-status=1
"""An uncaught remote exception ends the script like Python would.

Prints a few lines, then a shape error raised deep inside torch (in the worker,
under the script's own forward) is not caught: the traceback must show the
remote frames (the script's forward and torch's linear.py), the last line of
stderr must be the same exception line as locally, and the exit status is 1.
"""

import torch
from torch import nn

torch.manual_seed(6)
torch.set_num_threads(1)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 5)

    def forward(self, x):
        print(f"encoding a batch of shape {tuple(x.shape)}")
        return self.proj(x)


def run(model, batch):
    out = model(batch)
    return out.sum()


model = Encoder()
print(model)
print(f"weight shape {tuple(model.proj.weight.shape)}")
print(f"ok: {run(model, torch.ones(2, 4)).item():.6f}")
print("now a batch with the wrong width")
run(model, torch.ones(2, 3))
print("never printed")
