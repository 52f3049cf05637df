"""Exception classes defined by the script, raised in code that runs in the worker.

Covers: a script-defined exception raised in a forward and caught by
`except ThatClass`, one carrying extra attributes, a subclass of ValueError
caught by `except ValueError` and by its own class, raised from a Dataset's
__getitem__ through a DataLoader, and an early-stopping signal raised by a hook.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

torch.manual_seed(20)
torch.set_num_threads(1)


class StopTraining(Exception):
    """Raised by the model when training should end."""


class BadSample(ValueError):
    def __init__(self, index, reason):
        super().__init__(f"sample {index}: {reason}")
        self.index = index
        self.reason = reason


class Guarded(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        if not torch.isfinite(x).all():
            raise BadSample(-1, "non-finite input")
        y = self.lin(x)
        if y.abs().max() > 100:
            raise StopTraining(f"output exploded: {y.abs().max().item():.1f}")
        return y


model = Guarded()
print(f"finite input: {model(torch.ones(1, 2)).shape}")
try:
    model(torch.tensor([[float("nan"), 1.0]]))
except BadSample as e:
    print(f"BadSample caught by its class: {e} (index {e.index}, reason {e.reason!r})")
try:
    model(torch.tensor([[float("inf"), 1.0]]))
except ValueError as e:
    print(f"BadSample caught as ValueError: {type(e).__name__}: {e}")
try:
    model(torch.full((1, 2), 1e6))
except StopTraining as e:
    print(f"StopTraining: {e}")
except Exception as e:
    print(f"wrong handler: {type(e).__name__}")


class Flaky(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 4:
            raise BadSample(i, "corrupt record")
        return torch.tensor([float(i)])


seen = []
try:
    for batch in DataLoader(Flaky(), batch_size=2):
        seen.append(batch.squeeze(1).tolist())
except BadSample as e:
    print(f"DataLoader stopped at sample {e.index}: {e.reason}; batches before: {seen}")

patience = {"bad": 0}


def early_stop_hook(mod, inp, out):
    if out.mean() > 0:
        patience["bad"] += 1
        if patience["bad"] >= 2:
            raise StopTraining(f"no improvement for {patience['bad']} steps")


model.lin.register_forward_hook(early_stop_hook)
with torch.no_grad():
    model.lin.bias.fill_(5.0)
steps = 0
try:
    for steps in range(1, 10):
        model(torch.ones(3, 2))
except StopTraining as e:
    print(f"early stop at step {steps}: {e}")
print(f"isinstance(StopTraining('x'), Exception): {isinstance(StopTraining('x'), Exception)}")
