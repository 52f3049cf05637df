"""Items of small tensors read as Python numbers in loops, as evaluation and sampling
code reads them (``int(i)``, ``i.item()``, ``float(p)``, a list indexed by a tensor
item): the values come with the iteration, and a write to the tensor in between is
seen by the reads after it."""

import torch

torch.manual_seed(11)
ix = torch.randint(0, 50, (16,))
print(f"ints {[int(i) for i in ix]}")
print(f"items {sum(i.item() for i in ix)}")
words = [f"w{k}" for k in range(50)]
print(f"indexed {[words[i] for i in ix][:5]}")  # operator.index of each item
scores = torch.rand(8)
print(f"floats {[round(float(p), 6) for p in scores]}")
print(f"bools {[bool(b) for b in scores > 0.5]}")
seen = []
for k, v in enumerate(ix):
    if k == 3:
        ix[5] = 99  # a write while the loop runs: the items after it see it
    seen.append(int(v))
print(f"seen {seen}")
halves = torch.tensor([0.5, float("nan"), 2.5])
for h in halves:
    try:
        print(f"int {int(h)}")
    except ValueError as exc:
        print(f"ValueError: {exc}")
for f in torch.tensor([1.5, 2.0]):
    try:
        print(f"index {[0, 1, 2][f]}")
    except TypeError as exc:
        print(f"TypeError: {exc}")
grads = torch.ones(3, requires_grad=True)
print(f"with grad {[g.item() for g in grads * 2]}")
print(f"empty {[int(e) for e in torch.tensor([], dtype=torch.long)]}")
