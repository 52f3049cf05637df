"""Remote code that changes the script's own objects (beyond dicts and lists in globals).

Covers: a metrics object (an instance of a class defined in the script) updated
by a forward hook and by a model's forward, a numpy array filled in by a hook,
a counter kept in a closure (`nonlocal`), and the identity of a script object
stored on a module (`model.meter is meter`).
"""

import numpy as np
import torch
from torch import nn

torch.manual_seed(19)
torch.set_num_threads(1)


class Meter:
    """Running statistics, the way training scripts log them."""

    def __init__(self, name):
        self.name = name
        self.values = []
        self.total = 0.0

    def update(self, v):
        self.values.append(round(v, 5))
        self.total += v

    def __repr__(self):
        return f"Meter({self.name!r}, n={len(self.values)}, total={self.total:.5f})"


act_meter = Meter("activations")
lin = nn.Linear(3, 2)
lin.register_forward_hook(lambda mod, inp, out: act_meter.update(out.mean().item()))

sums = np.zeros(3)
step_box = {"i": 0}


def record_sum(mod, inp, out):
    sums[step_box["i"]] = round(out.sum().item(), 5)
    step_box["i"] += 1


lin.register_forward_hook(record_sum)


def make_counter():
    calls = 0

    def hook(mod, inp, out):
        nonlocal calls
        calls += 1

    return hook, lambda: calls


count_hook, n_calls = make_counter()
lin.register_forward_hook(count_hook)

for k in range(3):
    lin(torch.full((2, 3), float(k)))
print(f"meter after 3 forwards: {act_meter}")
print(f"values: {act_meter.values}")
print(f"sums filled by the hook: {sums.tolist()}")
print(f"calls counted in a closure: {n_calls()}")


class Tracked(nn.Module):
    def __init__(self, meter):
        super().__init__()
        self.body = nn.Linear(3, 1)
        self.meter = meter

    def forward(self, x):
        y = self.body(x)
        self.meter.update(y.detach().sum().item())
        return y


loss_meter = Meter("outputs")
model = Tracked(loss_meter)
for k in range(2):
    model(torch.ones(4, 3) * k)
print(f"model.meter is loss_meter: {model.meter is loss_meter}")
print(f"loss_meter seen by the script: {loss_meter}")
