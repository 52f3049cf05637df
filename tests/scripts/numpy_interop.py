"""numpy on the user's side, torch remote: arrays cross in both directions.

Covers: torch.from_numpy / torch.as_tensor / torch.tensor of local arrays,
t.numpy() giving a real local numpy.ndarray (type's module, dtype, flags,
checksums), np.asarray(tensor), arithmetic mixing numpy scalars, and a 32 MiB
array each way with a checksum on both sides.
"""

import hashlib

import numpy as np
import torch

torch.manual_seed(7)
torch.set_num_threads(1)


def digest(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


rng = np.random.default_rng(7)
local = rng.standard_normal((4, 3)).astype(np.float32)
t = torch.from_numpy(local)
print(f"from_numpy: shape {tuple(t.shape)} dtype {t.dtype}")
print("t =", t)
print(f"t.sum() = {t.sum().item():.6f}, local.sum() = {local.sum():.6f}")

back = (t * 2).numpy()
print(f"type(back): {type(back).__module__}.{type(back).__name__}")
print(f"isinstance ndarray: {isinstance(back, np.ndarray)}, dtype {back.dtype}, shape {back.shape}")
print(f"back writeable: {back.flags.writeable}, C-contiguous: {back.flags.c_contiguous}")
print(f"equal to 2*local: {np.array_equal(back, 2 * local)}")
back[0, 0] = 123.0  # a local array the script owns: it can write to it
print(f"back[0, 0] = {back[0, 0]}")

ints = torch.arange(10, dtype=torch.int64).numpy()
print(f"ints: {ints.tolist()} dtype {ints.dtype} sum {ints.sum()}")
print(f"np.asarray(tensor): {np.asarray(torch.tensor([1.5, 2.5]))}")
print(f"as_tensor of a list of np.float64: {torch.as_tensor([np.float64(1.25), np.float64(2.0)])}")
print(
    f"torch.tensor(np array, dtype=float64): {torch.tensor(np.array([1, 2, 3]), dtype=torch.float64)}"
)
bools = (torch.tensor([1, -1, 2]) > 0).numpy()
print(f"bool array: {bools} {bools.dtype}")
scalar = torch.tensor(3.0) * float(np.float32(2.0))
print(f"tensor * float(np.float32): {scalar}")

# 32 MiB each way.
big = rng.standard_normal(4 * 1024 * 1024)  # float64: 32 MiB
print(f"big: {big.nbytes // (1024 * 1024)} MiB, digest {digest(big)}, sum {big.sum():.6f}")
big_t = torch.from_numpy(big)
print(f"remote sum {big_t.sum().item():.6f}, remote numel {big_t.numel()}")
doubled = (big_t * 2).numpy()
print(
    f"doubled back: {type(doubled).__module__}.{type(doubled).__name__} {doubled.dtype} {doubled.nbytes // (1024 * 1024)} MiB"
)
print(f"doubled digest {digest(doubled)}, equals 2*big: {np.array_equal(doubled, 2 * big)}")

made = torch.randn(2048, 2048, dtype=torch.float64)  # 32 MiB made remotely
arr = made.numpy()
print(
    f"made remotely: {arr.shape} {arr.dtype} {arr.nbytes // (1024 * 1024)} MiB digest {digest(arr)}"
)
print(f"mean {arr.mean():.8f} std {arr.std():.8f}")
again = torch.from_numpy(arr)
print(f"round trip equal: {torch.equal(again, made)}")

f16 = torch.linspace(0, 1, 5, dtype=torch.float16).numpy()
print(f"float16: {f16} {f16.dtype}")
