# tether-test: expect-status=1
"""An error in a call whose result nobody waits for must stop the script at once.

The failing call (an in-place op on a wrong view) sits in a function called at
module level, outside any try (only a try/finally), its result is never used,
and the same call sites succeeded just before; locally Python raises right there, so
the lines after it must not be printed remotely either, and a `finally` in an
enclosing function must run exactly once, before the traceback.
"""

import torch

torch.manual_seed(12)
torch.set_num_threads(1)

w = torch.ones(4, 4)
w.mul_(2)
w.add_(1)
print(f"w.sum() = {w.sum().item()}")
print(f"w[0] = {w[0]}")
print(f"w.shape = {tuple(w.shape)}, numel = {w.numel()}")


def update(t, rows):
    try:
        print(f"update(rows={rows}) starts")
        t.add_(1)
        t.view(rows, 5).zero_()  # fine for 20 elements as 4x5; 16 cannot be viewed as 3x5
        t.mul_(10)
    finally:
        print("finally in update() ran")


v = torch.ones(20)
update(v, 4)  # the same call sites succeed first, so nothing waits on them
update(w, 3)
print("this line must not be printed")
w.add_(100)
print(f"nor this one: {w.sum().item()}")
