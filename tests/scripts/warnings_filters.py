"""Warnings raised by remote code obey the script's own warning filters.

Covers: torch UserWarnings issued in the worker (copy-constructing a tensor,
softmax without `dim`) and a warning of the script's own category issued in a
Module's forward (which runs in the worker). `filterwarnings("ignore")` hides
them, `catch_warnings(record=True)` records them with their category, message
and line, `simplefilter("error")` turns them into exceptions that
`except UserWarning` / `except ShapeWarning` catch, "default" shows a warning
repeated on one line once, and shown warnings keep their place among prints.
"""

import os
import warnings

import torch

torch.manual_seed(0)
torch.set_num_threads(1)


class ShapeWarning(UserWarning):
    """The script's own warning category."""


class Checked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] < 2:
            warnings.warn(f"tiny batch of {x.shape[0]}", ShapeWarning)
        return self.lin(x)


shown = []


def show(message, category, filename, lineno, file=None, line=None):
    """Print shown warnings to stdout, so that the comparison sees them."""
    shown.append(category)
    print(f"  shown: {category.__name__} at line {lineno}: {str(message)[:48]}")


warnings.showwarning = show
t = torch.arange(3.0)
model = Checked()

print("1. ignored with filterwarnings:")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=UserWarning)
    copy = torch.tensor(t)
    out = model(torch.ones(1, 4))
print(f"  copy {copy.tolist()} out {tuple(out.shape)}; shown so far: {len(shown)}")

print("2. recorded with catch_warnings(record=True):")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.tensor(t)
    torch.nn.functional.softmax(torch.ones(3))
    model(torch.ones(1, 4))
print(f"  recorded {len(caught)}")
for w in caught:
    print(
        f"  {w.category.__name__} (UserWarning: {issubclass(w.category, UserWarning)}) "
        f"{os.path.basename(w.filename)}:{w.lineno} {str(w.message)[:40]!r}"
    )
print(f"  own class is the script's: {caught[-1].category is ShapeWarning}")

print("3. errors with simplefilter('error'):")
with warnings.catch_warnings():
    warnings.simplefilter("error")
    try:
        torch.tensor(t)
        print("  not raised")
    except UserWarning as exc:
        print(f"  caught {type(exc).__name__}: {str(exc)[:40]}")
    try:
        model(torch.ones(1, 4))
        print("  not raised")
    except ShapeWarning as exc:
        print(f"  caught {type(exc).__name__}: {exc}")
    print(f"  a later call still works: {model(torch.ones(3, 4)).shape[0]} rows")

print("4. 'default' shows a warning repeated on one line once:")
before = len(shown)
with warnings.catch_warnings():
    warnings.simplefilter("default")
    for _ in range(5):
        torch.tensor(t)
    for _ in range(3):
        model(torch.ones(1, 4))
print(f"  shown {len(shown) - before} of 8")

print("5. global 'default' filter, calls outside any with block:")
warnings.simplefilter("default")
before = len(shown)
quiet = Checked()
for n in (4, 4, 4, 4, 1, 1, 4, 1):
    y = torch.nn.functional.log_softmax(quiet(torch.ones(n, 4)))
    y = y * 2
print(f"  last {tuple(y.shape)}; shown {len(shown) - before}")
warnings.resetwarnings()

print("6. ordering with prints:")
with warnings.catch_warnings():
    warnings.simplefilter("always")
    print("  before")
    model(torch.ones(1, 4))
    print("  after")
print("done")
