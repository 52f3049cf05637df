"""Iterators of the script's handed to remote code.

Fine-tuning scripts give optimizers and gradient clipping a lazy view of the
parameters: `filter(lambda p: p.requires_grad, model.parameters())`, a generator
expression, `itertools.chain` of two modules' parameters. Remote code must advance
the script's own iterator: its lambda or generator body runs when the item is
taken, what is left stays for the script, and a generator's prints come out where
Python would print them.
"""

import itertools

import torch
from torch import nn, optim

torch.manual_seed(0)
torch.set_num_threads(1)

model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
for p in model[0].parameters():
    p.requires_grad = False

opt = optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.1)
print("trainable:", [tuple(p.shape) for p in opt.param_groups[0]["params"]])

x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
for step in range(3):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(filter(lambda p: p.grad is not None, model.parameters()), 0.5)
    opt.step()
    print(step, round(loss.item(), 5), round(norm.item(), 5))

adam = optim.Adam((p for p in model.parameters() if p.dim() > 1), lr=0.01)
print("matrices:", len(adam.param_groups[0]["params"]))
both = optim.SGD(itertools.chain(model[0].parameters(), model[2].parameters()), lr=0.1)
print("chained:", len(both.param_groups[0]["params"]))


def layers(n):
    for i in range(n):
        print("  making layer", i)
        yield nn.Linear(2, 2)


print("before")
stack = nn.ModuleList(layers(3))
print("after:", len(stack))

weights = iter([nn.Parameter(torch.ones(2)), nn.Parameter(torch.zeros(3))])
plist = nn.ParameterList(weights)
print("parameters:", [tuple(p.shape) for p in plist], "left:", next(weights, "none"))


class Countdown:
    """An iterator class of the script's."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return self

    def __next__(self):
        if self.n == 0:
            raise StopIteration
        self.n -= 1
        return torch.full((2,), float(self.n))


print("vector:", nn.utils.parameters_to_vector(Countdown(3)).tolist())
empty = filter(None, [])
print("empty:", nn.utils.parameters_to_vector(iter([torch.ones(1)])).tolist(), list(empty))
try:
    torch.stack(p * 2 for p in model[2].parameters())  # a sequence is needed
except TypeError as exc:
    print("stack:", exc)
