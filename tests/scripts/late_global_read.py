"""Globals first read by a pipelined call, rebound by the script before it next waits.

`forward` reads SCALE on every call, and one more global only on the branch `mode`
selects. The first calls take no branch, so the worker holds SCALE (paged in by the
first call, which waited) but none of the others. A call that first takes a branch is
pipelined: the worker asks for that global while the script runs ahead, and the client
answers at its next wait. Whatever the script did to the global in between (rebound it,
deleted it, bound it to something that cannot travel), the call must see the value the
global had when the call was made, as Python would; and a call made after the rebind
must see the new value.
"""

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

SCALE = 2.0


class Shift(torch.nn.Module):
    def forward(self, x, mode):
        if mode == 1:
            return x * SCALE + OFFSET  # each of these globals is first read here
        if mode == 2:
            return x * SCALE + TWICE
        if mode == 3:
            return x * SCALE + GONE  # noqa: F821 (deleted below, after the call)
        if mode == 4:
            return x * SCALE + ODD
        return x * SCALE


# One class per case: a site whose pipelined calls keep asking the client stops
# pipelining (client/_predict.py), and each case needs a fresh pipelined site.
class Twice(Shift):
    pass


class Gone(Shift):
    pass


class Odd(Shift):
    pass


x = torch.ones(3)


def warmed(cls):
    model = cls()
    for step in range(3):
        y = model(x, 0)
        print(f"{cls.__name__} step {step}: {y.tolist()}")
    return model


model = warmed(Shift)

OFFSET = 1.0
y = model(x, 1)  # pipelined: the worker reads OFFSET now, as the script sees it
OFFSET = 100.0  # rebound before the script next waits
print(f"shifted: {y.tolist()}")
print(f"shifted again: {model(x, 1).tolist()}")

model = warmed(Twice)
TWICE = 1.0
first = model(x, 2)  # made under TWICE = 1.0 ...
TWICE = 10.0
second = model(x, 2)  # ... and this one under 10.0, both before any wait
print(f"two calls: {first.tolist()} {second.tolist()}")

model = warmed(Gone)
GONE = 1.0
y = model(x, 3)
del GONE  # the call was made while GONE existed
print(f"deleted after: {y.tolist()}")

model = warmed(Odd)
ODD = 1.0
y = model(x, 4)
ODD = (n for n in range(3))  # a generator cannot travel: the worker must not need it
print(f"unsendable after: {y.tolist()}")
print(f"ODD is now a {type(ODD).__name__}")
