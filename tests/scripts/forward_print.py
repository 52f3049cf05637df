"""print() in code that runs in the worker shows up in order with the script's.

Covers: print() inside a remote forward (plain, f-string with tensor values,
a tensor repr, end=""), a forward hook defined as a lambda that prints, a
partial line started by the script and finished by the worker, flush=True,
print(file=sys.stdout) and sys.stdout.write inside remote code, and many
alternating lines.
"""

import sys

import torch
from torch import nn

torch.manual_seed(9)
torch.set_num_threads(1)


class Talkative(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        print(f"  [forward #{self.calls}] input {tuple(x.shape)} mean {x.mean().item():+.4f}")
        y = self.lin(x)
        print("  [forward] output:", y)
        sys.stdout.write(f"  [forward] via sys.stdout.write, calls={self.calls}\n")
        return y


m = Talkative()
print("script: before the first call")
out = m(torch.ones(1, 2))
print(f"script: after the first call, out.sum()={out.sum().item():.6f}")

handle = m.register_forward_hook(
    lambda mod, inp, outp: print(f"  [hook] {type(mod).__name__} -> {tuple(outp.shape)}")
)
for i in range(3):
    print(f"script: iteration {i}")
    m(torch.full((2, 2), float(i)))
    print(f"script: iteration {i} done")
handle.remove()

print("script: a partial line ... ", end="")
m(torch.zeros(1, 2))
print("script: ... finished by the script")

print("progress: ", end="", flush=True)
for i in range(5):
    print(".", end="", flush=True)
    _ = m.lin(torch.ones(1, 2))  # no print in Linear
print(" done")


def noisy_collate(batch):
    print(f"  [collate] {len(batch)} samples")
    return torch.stack(batch)


loader = torch.utils.data.DataLoader(
    [torch.ones(2) * k for k in range(5)], batch_size=2, collate_fn=noisy_collate
)
for b in loader:
    print(f"script: batch sum {b.sum().item()}")

print(f"script: forward was called {m.calls} times")
print("script: end", file=sys.stdout)
