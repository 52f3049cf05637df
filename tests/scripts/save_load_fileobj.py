# tether-test: creates=tensor.bin,model.pt
"""torch.save / torch.load given file objects the script opened itself.

Covers: open(path, "wb") passed to torch.save and open(path, "rb") to
torch.load (the file object lives in the user's process), an io.BytesIO
round trip, and a state_dict saved through a file object and loaded by path.
"""

import io
import os

import torch

torch.manual_seed(10)
torch.set_num_threads(1)

with open("tensor.bin", "wb") as f:
    torch.save(torch.arange(6).reshape(2, 3), f)
with open("tensor.bin", "rb") as f:
    loaded = torch.load(f)
print(f"via file objects: {loaded.tolist()}")

buf = io.BytesIO()
torch.save({"w": torch.ones(2)}, buf)
print(f"BytesIO holds data: {buf.tell() > 0}")
buf.seek(0)
print(f"from BytesIO: {torch.load(buf)['w']}")

lin = torch.nn.Linear(2, 2)
with open("model.pt", "wb") as f:
    torch.save(lin.state_dict(), f)
print(f"model.pt size: {os.path.getsize('model.pt')} bytes")
sd = torch.load("model.pt")
print(f"loaded weight equal: {torch.equal(sd['weight'], lin.weight.detach())}")
print(f"files here: {sorted(n for n in os.listdir('.') if n.endswith(('.pt', '.bin')))}")
