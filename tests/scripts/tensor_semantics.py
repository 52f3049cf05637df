"""Everyday tensor semantics, the way scripts poke at tensors.

Covers: indexing, slicing, item assignment, in-place ops, += on slices (and on
whole tensors), iteration over a tensor, bool()/int()/float(), len, .shape,
.tolist(), repr/str/format, dtypes and devices as dict keys, sorted() with a
key lambda, max()/min()/sum() over lists of remote values, comparisons and
arithmetic with Python numbers on either side, `in`, and isinstance.
"""

import torch

torch.manual_seed(4)
torch.set_num_threads(1)

a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
print("a =", a)
print(f"repr: {a!r}")
print(f"str:  {a!s}")
print(f"shape {a.shape}, size(1) {a.size(1)}, ndim {a.ndim}, numel {a.numel()}, len {len(a)}")
print(
    f"shape as tuple {tuple(a.shape)}, shape[0] {a.shape[0]}, shape == (3, 4): {a.shape == (3, 4)}"
)
print(f"dtype {a.dtype}, device {a.device}, is_floating_point {a.is_floating_point()}")

# Indexing and slicing.
print("a[1] =", a[1])
print("a[:, 2] =", a[:, 2])
print("a[1:, ::2] =", a[1:, ::2])
print("a[-1, -1] =", a[-1, -1])
print("a[a > 6] =", a[a > 6])
print("a[[0, 2]] =", a[[0, 2]])
print("a[..., None].shape =", a[..., None].shape)
print(f"a[2, 3].item() = {a[2, 3].item()}")

# Item assignment and in-place ops.
b = a.clone()
b[0, 0] = 100.0
b[1] = torch.tensor([-1.0, -2.0, -3.0, -4.0])
b[2, 1:3] = 7
b[:, 3] += 0.5
b[b < 0] = 0.0
b.mul_(2).add_(1)
b += 1
b[0] -= b[0].mean()
print("b after assignments and in-place ops:")
print(b)
c = torch.zeros(5)
for i in range(5):
    c[i] += i * i
c[1:4] += torch.ones(3)
print("c =", c)

# Iteration over a tensor.
for i, row in enumerate(a):
    print(f"row {i}: {row.tolist()} sum={row.sum():.1f}")
print("elements of a[0]:", [float(v) for v in a[0]])
print("zip of rows:", [(int(p), int(q)) for p, q in zip(a[0], a[1])])

# Conversions.
z = torch.tensor(0.0)
one = torch.tensor([3])
print(
    f"bool(z) {bool(z)}, bool(one) {bool(one)}, int(one) {int(one)}, float(a[1, 1]) {float(a[1, 1])}"
)
if (a > 10).any():
    print("some element exceeds 10")
if not (a < 0).any():
    print("no negative element")
print(f"all finite: {bool(torch.isfinite(a).all())}")
try:
    bool(a)
except RuntimeError as e:
    print(f"bool(a) raised RuntimeError: {e}")
print(f"index via tensor: {['x', 'y', 'z'][one - 1]}")
print(f"range from tensor: {list(range(int(one)))}")

# tolist and Python number interop.
print("a.tolist() =", a.tolist())
print(f"2 * a[0] + 1 = {(2 * a[0] + 1).tolist()}")
print(f"10 - a[0, 1] = {10 - a[0, 1]}")
print(f"a[0, 1] == 1.0: {bool(a[0, 1] == 1.0)}; a[0, 1] < 5: {bool(a[0, 1] < 5)}")
print(f"1.0 in a[0]: {1.0 in a[0]}, 99.0 in a[0]: {99.0 in a[0]}")
print(f"a.sum() = {a.sum()}, formatted {a.sum():.2f}, mean {a.mean().item():.4f}")
print(f"matmul: {(a @ a.T).diag().tolist()}")
print(f"-a[0] = {-a[0]}, abs {abs(-a[0])}, pow {a[0] ** 2}")

# Dtypes and devices as dict keys.
names = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64", torch.bool: "bool"}
tensors = [a, a.double(), a.long(), a > 3, torch.tensor([1, 2]), torch.randn(2)]
print("dtype names:", [names[t.dtype] for t in tensors])
counts = {}
for t in tensors:
    counts[t.dtype] = counts.get(t.dtype, 0) + 1
print("dtype counts:", {str(k): v for k, v in counts.items()})
print(f"a.dtype == torch.float32: {a.dtype == torch.float32}, is: {a.dtype is torch.float32}")
by_device = {a.device: "cpu tensors"}
print(f"device lookup: {by_device[torch.device('cpu')]}")

# sorted with a key lambda, max/min/sum over lists of remote values.
vals = [torch.tensor(v) for v in [3.5, -1.0, 2.25, 8.0, 0.5]]
ordered = sorted(vals, key=lambda t: t.item())
print("sorted:", [t.item() for t in ordered])
print("sorted desc:", [f"{t:.2f}" for t in sorted(vals, key=lambda t: t.item(), reverse=True)])
print(f"max(vals) = {max(vals)}; min(vals) = {min(vals)}")
print(f"max(vals, key=abs) = {max(vals, key=abs)}")
print(f"max over a.tolist() rows: {max(max(r) for r in a.tolist())}")
print(f"sum(vals) = {sum(vals)}")
losses = [torch.randn(()).abs() for _ in range(4)]
best = min(range(len(losses)), key=lambda i: losses[i].item())
print(f"losses: {[round(v.item(), 4) for v in losses]} best index {best}")
print(f"isinstance(vals[0], torch.Tensor): {isinstance(vals[0], torch.Tensor)}")
print(f"isinstance(3.0, torch.Tensor): {isinstance(3.0, torch.Tensor)}")
print(
    f"isinstance(torch.nn.Parameter(a), torch.Tensor): {isinstance(torch.nn.Parameter(a), torch.Tensor)}"
)

# Views share storage.
v = a.view(-1)
v[0] = -5.0
print(f"after writing through a view: a[0, 0] = {a[0, 0].item()}")
t = a.t()
print(f"t.is_contiguous() {t.is_contiguous()}, stride {t.stride()}")
s = torch.stack([a[0], a[1]]).sum(0)
print(f"stack-sum {s.tolist()}")
print(f"torch.where: {torch.where(a > 5, a, torch.zeros_like(a)).sum().item()}")
print(f"topk: {a.flatten().topk(3)}")
shape = a.shape  # a torch.Size: the client's mirror of a tuple of the worker's class
print(f"zeros(a.shape) {torch.zeros(shape).shape} {type(shape).__name__} {shape == (3, 4)}")
print(f"chunk: {[c.shape for c in a.chunk(2, dim=1)]}")
u, idx = torch.unique(torch.tensor([3, 1, 3, 2, 1]), return_inverse=True)
print(f"unique {u.tolist()} inverse {idx.tolist()}")
