"""A Dataset holding a config object of the script's own module, iterated by a
DataLoader whose worker processes are forked (the default on Linux), as
minGPT's adder project does: the forked processes must not need the client."""

import torch
from helpers_cfg import DataCfg
from torch.utils.data import DataLoader, Dataset

torch.manual_seed(1)


class Scaled(Dataset):
    def __init__(self, cfg):
        self.cfg = cfg

    def __len__(self):
        return self.cfg.n

    def __getitem__(self, i):
        return torch.tensor([float(i) * self.cfg.scale])


cfg = DataCfg(n=6, scale=0.5)
ds = Scaled(cfg)
print(f"dataset of {len(ds)}, item 2 = {ds[2].item()}")
loader = DataLoader(ds, batch_size=2, num_workers=2)
for step, batch in enumerate(loader):
    print(f"batch {step}: {batch.flatten().tolist()}")
print("done")
