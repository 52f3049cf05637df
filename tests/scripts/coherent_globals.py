"""The worker sees the script's module namespace as it is now, not a snapshot.

Covers: `super(Net, self)` (the class's own name read from the module), a
global read by remote code that the script defines later or rebinds between
calls (the worker must see the new value, never a stale one), helpers that use
module-level `args`/`model` defined after the helper, a callback that rebinds a
global with `global`, and a name deleted by the script.
"""

import argparse

import torch
import torch.nn as nn

torch.manual_seed(5)
torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        # SCALE and args are module globals, defined below and rebound later.
        return self.fc(x) * SCALE + args.bias


def score(batch):
    # Reads `model`, defined after this function.
    return model(batch).sum()


calls = 0


def counting_collate(items):
    global calls
    calls += 1
    return torch.stack(items)


parser = argparse.ArgumentParser()
parser.add_argument("--bias", type=float, default=0.5)
args = parser.parse_args([])
SCALE = 1.0
model = Net()
x = torch.ones(2, 4)
print(f"scale 1: {score(x).item():.4f}")
SCALE = 3.0
print(f"scale 3: {score(x).item():.4f}")
args.bias = -1.0
print(f"bias -1: {score(x).item():.4f}")
args = argparse.Namespace(bias=2.0)
print(f"new args: {score(x).item():.4f}")

loader = torch.utils.data.DataLoader(
    [torch.ones(2) * i for i in range(6)], batch_size=2, collate_fn=counting_collate
)
total = sum(float(b.sum()) for b in loader)
print(f"loader total {total}, collate called {calls} times")
calls = 100
total = sum(float(b.sum()) for b in loader)
print(f"after reset to 100: collate called {calls} times")

del SCALE
try:
    score(x)
except NameError as exc:
    print(f"NameError: {exc}")
SCALE = 0.5
print(f"scale back: {score(x).item():.4f}")
