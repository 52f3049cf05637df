"""A data loader in nanoGPT's style: the script writes its token file, and
`get_batch` maps it with `np.memmap` on every call, also from inside a
`@torch.no_grad()` function, which runs in the worker. The worker must map the
script's file, as it is now (the script rewrites it halfway)."""

import os

import numpy as np
import torch

torch.manual_seed(0)
block_size, batch_size = 8, 4


def write_tokens(path, seed):
    rng = np.random.default_rng(seed)
    rng.integers(0, 50, size=4000, dtype=np.uint16).tofile(path)


def get_batch(split):
    data = np.memmap(os.path.join("data", f"{split}.bin"), dtype=np.uint16, mode="r")
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack(
        [torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix]
    )
    return x, y


@torch.no_grad()
def estimate(model, split):
    losses = torch.zeros(3)
    for k in range(3):
        x, y = get_batch(split)
        losses[k] = torch.nn.functional.cross_entropy(model(x).view(-1, 50), y.view(-1))
    return losses.mean()


os.makedirs("data", exist_ok=True)
write_tokens("data/train.bin", 1)
write_tokens("data/val.bin", 2)
model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(6):
    x, y = get_batch("train")
    loss = torch.nn.functional.cross_entropy(model(x).view(-1, 50), y.view(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 2 == 1:
        print(f"step {step}: train {estimate(model, 'train'):.4f} val {estimate(model, 'val'):.4f}")
    if step == 3:
        write_tokens("data/val.bin", 3)  # the file changes: the next map sees it
        print("val rewritten", os.path.getsize("data/val.bin"))
print(f"first tokens {get_batch('val')[0][0].tolist()}")
try:
    np.memmap("data/missing.bin", dtype=np.uint16, mode="r")
except FileNotFoundError as exc:
    print("missing:", type(exc).__name__)


@torch.no_grad()
def map_missing():
    try:
        np.memmap("data/missing.bin", dtype=np.uint16, mode="r")
    except FileNotFoundError as exc:
        return f"missing in no_grad: {type(exc).__name__}"


print(map_missing())
