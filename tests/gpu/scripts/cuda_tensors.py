# Tensor semantics across the host/device boundary: copies both ways, streams and events,
# pinned memory, a device-side error raised at the line that causes it, and numpy round
# trips through .cpu().
import numpy as np
import torch

a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
g = a.cuda()
print(g.device.type, g.shape, g.dtype)
print((g @ g.T).cpu().tolist())
print(float(g.sum()), g.max().item(), int(g.argmax()))
h = torch.from_numpy(np.ones((2, 2), dtype=np.float32)).pin_memory().to("cuda", non_blocking=True)
print("pinned:", torch.ones(1).pin_memory().is_pinned(), (h * 2).cpu().numpy().tolist())

s = torch.cuda.Stream()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
with torch.cuda.stream(s):
    start.record()
    big = torch.ones(1024, 1024, device="cuda")
    total = (big @ big).sum()
    end.record()
end.synchronize()
print("stream result:", total.item(), "elapsed >= 0:", start.elapsed_time(end) >= 0)

for i, v in enumerate(g[0]):
    print("item", i, v.item())

try:
    torch.ones(2, device="cuda") + torch.ones(3, device="cuda")
except RuntimeError as exc:
    print("caught:", type(exc).__name__, "size" in str(exc))
print("done")
