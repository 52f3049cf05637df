"""Decorators from the remote module on the script's methods, in `__main__` and
in the script's own package, and the script's plain classes across the halves.

Covers: `@torch.no_grad()` on a method (here and in helpers_gpt), a static
method of a remote-derived class returning an instance of a plain class of the
script (`isinstance` must hold), a dataclass config returned from remote code,
and a package function patched onto a remote class with `setattr`.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
from helpers_gpt import TinyGPT, install_helpers

torch.manual_seed(9)
torch.set_num_threads(1)


@dataclass
class Cfg:
    width: int = 8
    depth: int = 2


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(cfg.width, cfg.width) for _ in range(cfg.depth)])

    @staticmethod
    def defaults():
        return Cfg(width=4, depth=3)

    def forward(self, x):
        return self.layers(x)

    @torch.no_grad()
    def predict(self, x):
        out = self.forward(x)
        return out, out.requires_grad


cfg = Net.defaults()
print(f"defaults: {cfg}, isinstance Cfg: {isinstance(cfg, Cfg)}")
net = Net(cfg)
out, grad = net.predict(torch.ones(1, 4))
print(f"predict grad? {grad}; sum {out.sum().item():.4f}")

gpt = TinyGPT(vocab=11, width=8)
idx = torch.zeros(1, 1, dtype=torch.long)
gen = gpt.generate(idx, 5)
print(f"generated {gen.tolist()} requires_grad={gen.requires_grad}")

install_helpers(nn.Linear)
lin = nn.Linear(3, 2)
print(f"patched: {lin.n_params()} parameters")
print(f"Cfg is the script's class: {type(cfg) is Cfg}; fields {list(cfg.__dataclass_fields__)}")
