"""A module's parameters and buffers walked as training scripts walk them: counted,
named, updated by hand (plain SGD), a generator consumed in part, and modules replaced
while ``named_modules()`` walks the tree (as adapters are put in): that walk goes item
by item, as locally, where the parameters' and buffers' come in one reply."""

import torch
from torch import nn

torch.manual_seed(3)
torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.BatchNorm1d(2))
print(f"parameters: {sum(p.numel() for p in model.parameters())}")
print(f"named: {[(n, tuple(p.shape)) for n, p in model.named_parameters()]}")
print(f"buffers: {[n for n, _ in model.named_buffers()]} {len(list(model.buffers()))}")

x, y = torch.randn(8, 3), torch.randn(8, 2)
for step in range(3):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= 0.1 * param.grad
    print(f"step {step}: loss {loss.item():.6f}")

walk = model.parameters()
first = next(walk)
print(f"first {tuple(first.shape)}, then {[tuple(p.shape) for p in walk]}")
print(f"again: {len(list(walk))}")  # an exhausted generator stays exhausted


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.inner(v) * self.scale


visited = []
for name, module in model.named_modules():
    visited.append(f"{name or '.'}:{type(module).__name__}")
    if isinstance(module, nn.Linear) and name.isdigit():
        model[int(name)] = Scaled(module)  # (the walk had reached it: it goes on past)
print(f"visited: {visited}")
print(f"now: {sum(p.numel() for p in model.parameters())} parameters")
print(f"out: {[round(v, 4) for v in model(x)[0].tolist()]}")
