"""DataLoader worker processes started with "spawn", as CUDA users must.

With spawn (unlike fork) each loader process unpickles the dataset and the
collate_fn, so classes and functions defined in this script have to reach
those processes too, wherever the loader runs.
"""

import torch
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i * i


def pairs(batch):
    xs, ys = zip(*batch)
    return torch.stack(xs), torch.tensor(ys)


if __name__ == "__main__":
    torch.manual_seed(22)
    torch.set_num_threads(1)
    ds = Squares(8)
    print(f"dataset of {len(ds)}; ds[3] = {ds[3]}")
    loader = DataLoader(
        ds,
        batch_size=3,
        num_workers=2,
        collate_fn=pairs,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    for xb, yb in loader:
        print(f"x {xb.squeeze(1).tolist()} y {yb.tolist()}")
    print(f"total of squares: {sum(int(yb.sum()) for _, yb in loader)}")
