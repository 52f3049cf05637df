"""A package of the script's whose import calls remote torch: when the worker
asks the client for one of its submodules, the client imports this package to
find it, and that import's torch calls must run while the worker waits."""

import torch

BASE = torch.arange(4.0).sum().item()
print(f"helpers_nested imported, BASE={BASE}")
