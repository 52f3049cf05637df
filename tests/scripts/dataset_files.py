# tether-test: creates=samples/sample_0.pt,samples/labels.csv
"""A Dataset that reads the user's files: the most common custom dataset there is.

The script writes a folder of samples (torch.save per sample plus a CSV of
labels) and defines a Dataset whose __init__ lists the folder and reads the CSV
with open(), and whose __getitem__ torch.load()s a sample. That code runs in
the worker, yet the files are the user's, in the script's working directory.
"""

import csv
import os

import torch
from torch.utils.data import DataLoader, Dataset

torch.manual_seed(18)
torch.set_num_threads(1)

os.makedirs("samples", exist_ok=True)
with open(os.path.join("samples", "labels.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["name", "label"])
    for i in range(6):
        torch.save(torch.randn(3) + i, os.path.join("samples", f"sample_{i}.pt"))
        writer.writerow([f"sample_{i}.pt", i % 2])
print(f"wrote {len(os.listdir('samples'))} files")


class FolderDataset(Dataset):
    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "labels.csv"), newline="") as f:
            self.items = [(row["name"], int(row["label"])) for row in csv.DictReader(f)]
        self.n_files = len([n for n in os.listdir(root) if n.endswith(".pt")])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        name, label = self.items[i]
        return torch.load(os.path.join(self.root, name)), label


ds = FolderDataset("samples")
print(f"dataset: {len(ds)} items, {ds.n_files} sample files, first {ds.items[0]}")
x0, y0 = ds[0]
print(f"ds[0] = {x0}, label {y0}")
for xb, yb in DataLoader(ds, batch_size=4):
    print(f"batch {tuple(xb.shape)} labels {yb.tolist()} mean {xb.mean().item():+.5f}")
