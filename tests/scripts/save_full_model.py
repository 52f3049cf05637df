# tether-test: creates=full.pt,scripted.pt
"""Saving the whole model object, not just its state_dict.

Covers: torch.save(model) of a Module class defined in this script (pickled by
reference as __main__.Net), torch.load(..., weights_only=False) giving back a
working Net that isinstance recognises, and a TorchScript model saved with
torch.jit.save / loaded with torch.jit.load.
"""

import os

import torch
from torch import nn

torch.manual_seed(23)
torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

    def forward(self, x):
        return self.body(x)


model = Net()
x = torch.randn(2, 3)
torch.save(model, "full.pt")
print(f"full.pt written: {os.path.exists('full.pt')}")
again = torch.load("full.pt", weights_only=False)
print(f"loaded: {type(again).__name__}, isinstance Net: {isinstance(again, Net)}")
print(f"same outputs: {torch.equal(again(x), model(x))}")

scripted = torch.jit.script(model)
torch.jit.save(scripted, "scripted.pt")
print(f"scripted.pt written here: {os.path.exists('scripted.pt')}")
restored = torch.jit.load("scripted.pt")
print(f"torchscript round trip equal: {torch.allclose(restored(x), model(x))}")
print(restored.code.strip().splitlines()[0])
