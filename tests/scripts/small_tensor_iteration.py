"""Iterating small tensors and indexing with 0-d tensors, as batch samplers
and evaluation loops do (a character-model trainer's get_batch)."""

import torch

torch.manual_seed(7)
data = torch.arange(100)
block = 4
ix = torch.randint(len(data) - block, (8,))
x = torch.stack([data[i : i + block] for i in ix])
y = torch.stack([data[i + 1 : i + block + 1] for i in ix])
print(f"x {x.tolist()}")
print(f"y {y[:, -1].tolist()}")
correct = torch.rand(10) > 0.5
hits = 0
for i in range(len(correct)):
    hits += int(correct[i])
print(f"hits {hits} of {len(correct)}")
print(f"items {[int(v) for v in ix]}")
w = torch.ones(3, requires_grad=True)
(w * 2).sum().backward()
print(f"grad {w.grad.tolist()}")
w.grad = None
print(f"grad after reset {w.grad}")
