# tether-test: creates=m.pt,ckpt/last.pt
"""torch.save / torch.load mean the user's files, in the user's directory.

Covers: torch.save(model.state_dict(), "m.pt") writing m.pt in the script's
working directory (the script checks it exists and its size itself), torch.load
reading it back into a fresh model, saving a dict checkpoint with an optimizer
state to a sub-directory made with os.makedirs, loading with map_location, a
missing file raising FileNotFoundError, and os.path checks.
"""

import os

import torch
from torch import nn

torch.manual_seed(8)
torch.set_num_threads(1)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 1)

    def forward(self, x):
        return self.b(torch.sigmoid(self.a(x)))


model = Small()
x = torch.randn(5, 3)
before = model(x).detach()

if os.path.exists("m.pt"):
    os.remove("m.pt")
torch.save(model.state_dict(), "m.pt")
print(f"m.pt exists: {os.path.exists('m.pt')}")
size = os.path.getsize("m.pt")
print(f"m.pt size: {size} bytes")
with open("m.pt", "rb") as f:
    magic = f.read(2)
print(f"m.pt is a zip archive: {magic == b'PK'}")

sd = torch.load("m.pt")
print(f"keys: {list(sd.keys())}")
print(f"a.weight shape {tuple(sd['a.weight'].shape)}, b.bias {sd['b.bias']}")

fresh = Small()
print(f"fresh differs: {not torch.equal(fresh(x).detach(), before)}")
result = fresh.load_state_dict(torch.load("m.pt", map_location="cpu"))
print(
    f"load_state_dict: missing={list(result.missing_keys)} unexpected={list(result.unexpected_keys)}"
)
print(f"fresh now equal: {torch.equal(fresh(x).detach(), before)}")

opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model(x).sum().backward()
opt.step()
os.makedirs("ckpt", exist_ok=True)
torch.save(
    {"epoch": 3, "model": model.state_dict(), "opt": opt.state_dict(), "note": "after one step"},
    os.path.join("ckpt", "last.pt"),
)
print(
    f"ckpt/last.pt exists: {os.path.isfile('ckpt/last.pt')}; listdir: {sorted(os.listdir('ckpt'))}"
)
ck = torch.load("ckpt/last.pt", weights_only=False)
print(
    f"checkpoint: epoch={ck['epoch']} note={ck['note']!r} opt lr={ck['opt']['param_groups'][0]['lr']}"
)
print(f"opt state steps: {[float(s['step']) for s in ck['opt']['state'].values()]}")

try:
    torch.load("does-not-exist.pt")
except FileNotFoundError as e:
    print(f"FileNotFoundError: {e.filename if e.filename else e}")

print(f"files here: {sorted(n for n in os.listdir('.') if n.endswith('.pt'))}")

# Saving under a directory that does not exist: torch's own error, caught by type.
try:
    torch.save(model.state_dict(), os.path.join("no-such-dir", "m.pt"))
except RuntimeError as e:
    print(f"RuntimeError: {e}")
print(f"no-such-dir created: {os.path.exists('no-such-dir')}")
