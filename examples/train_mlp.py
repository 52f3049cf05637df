"""Train a small MLP on synthetic data: Tether's README demo.

Run it locally:                 python examples/train_mlp.py
Run it with torch remoted:      tether run --remote torch -- python examples/train_mlp.py

Both print the same lines; with Tether every torch call runs in a worker on the
acceptor host (here: an embedded one on loopback), while the script, its loop
and its prints stay on your machine.
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
torch.set_num_threads(1)


class MLP(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, n_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_classes)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


def make_spirals(n_per_class: int, n_classes: int):
    """Interleaved spirals: not linearly separable, so the hidden layer matters."""
    xs, ys = [], []
    for c in range(n_classes):
        r = torch.linspace(0.1, 1.0, n_per_class)
        theta = torch.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + 0.2 * torch.randn(n_per_class)
        xs.append(torch.stack([r * torch.sin(theta), r * torch.cos(theta)], dim=1))
        ys.append(torch.full((n_per_class,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


x, y = make_spirals(100, 3)
model = MLP(2, 64, 3)
opt = torch.optim.Adam(model.parameters(), lr=0.01)
steps = 300

print(f"training on {len(x)} points, {sum(p.numel() for p in model.parameters())} parameters")
for step in range(1, steps + 1):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step:4d}  loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
print(f"final accuracy {accuracy:.3f}")
