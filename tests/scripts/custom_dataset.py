"""A user-defined Dataset, a collate_fn and a generator over a DataLoader.

Covers: subclassing torch.utils.data.Dataset in the script (__len__/__getitem__
run in the worker), a collate_fn and a sampler-free shuffle defined here, a
generator function in the script that iterates a remote DataLoader and yields
transformed batches, dict batches, and a plain Python list built from them.
"""

import torch
from torch.utils.data import DataLoader, Dataset

torch.manual_seed(1)
torch.set_num_threads(1)


class Polynomials(Dataset):
    """Samples (x, x**2 - 3x + 1) with a per-item noise term seeded by the index."""

    def __init__(self, n, noise=0.05):
        super().__init__()
        self.n = n
        self.noise = noise
        self.xs = torch.linspace(-2.0, 2.0, n)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i < 0 or i >= self.n:
            raise IndexError(f"sample {i} out of range")
        x = self.xs[i]
        g = torch.Generator().manual_seed(i)
        y = x * x - 3 * x + 1 + self.noise * torch.randn((), generator=g)
        return {"x": x.unsqueeze(0), "y": y.unsqueeze(0), "index": i}


def collate(samples):
    """Stack features and targets; keep the indices as a plain list."""
    return {
        "x": torch.stack([s["x"] for s in samples]),
        "y": torch.stack([s["y"] for s in samples]),
        "index": [s["index"] for s in samples],
    }


def standardized(loader, mean, std):
    """A generator in the script: iterates the remote loader, yields scaled batches."""
    for batch in loader:
        yield (batch["x"] - mean) / std, batch["y"], batch["index"]


ds = Polynomials(40)
print(f"len(ds) = {len(ds)}")
first = ds[0]
print(f"ds[0]: x={first['x'].item():.4f} y={first['y'].item():.4f} index={first['index']}")
print(f"ds[39]['y'] = {ds[39]['y']}")
try:
    ds[40]
except IndexError as e:
    print(f"IndexError from __getitem__: {e}")

loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate)
print(f"len(loader) = {len(loader)}")

mean = ds.xs.mean()
std = ds.xs.std()
print(f"mean={mean.item():+.4f} std={std.item():.4f}")

model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.05)

all_indices = []
for epoch in range(4):
    total = 0.0
    count = 0
    for xb, yb, idx in standardized(loader, mean, std):
        pred = model(xb)
        loss = torch.nn.functional.mse_loss(pred, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        count += len(idx)
        if epoch == 0:
            all_indices.extend(idx)
    print(f"epoch {epoch}: mse={total / count:.6f} samples={count}")

print(f"first epoch order: {all_indices[:12]} ...")
print(f"sorted indices == range: {sorted(all_indices) == list(range(40))}")

batches = list(standardized(DataLoader(ds, batch_size=16, collate_fn=collate), mean, std))
print(f"batches: {len(batches)}; shapes: {[tuple(b[0].shape) for b in batches]}")
print(f"last batch indices: {batches[-1][2]}")
with torch.no_grad():
    grid = torch.tensor([[-1.0], [0.0], [1.0]])
    out = model((grid - mean) / std)
print("predictions at -1, 0, 1:", [f"{v:.3f}" for v in out.squeeze(1).tolist()])

# The same dataset through worker processes (they fork wherever the loader runs).
parallel = DataLoader(ds, batch_size=10, num_workers=2, collate_fn=collate)
print("with num_workers=2:", [(len(b["index"]), round(b["y"].sum().item(), 4)) for b in parallel])
