"""Library corners that scripts reach for: distributions, RNG state, torch.func, einsum,
complex numbers and FFT, and autograd errors.

Covers: torch.distributions objects (sample/log_prob/entropy, kl_divergence), saving
and restoring the RNG state to replay random numbers, torch.Generator objects,
torch.func.grad/vmap/jacrev applied to the script's own functions, torch.einsum,
complex tensors and their repr, torch.fft, torch.autograd.grad with create_graph,
and the RuntimeError for an in-place op on a leaf that requires grad.
"""

import torch
from torch import distributions as D
from torch.func import grad, jacrev, vmap

torch.manual_seed(16)
torch.set_num_threads(1)

normal = D.Normal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]))
s = normal.sample((3,))
print(f"normal samples {tuple(s.shape)}:\n{s}")
print(f"log_prob(0) = {normal.log_prob(torch.zeros(2)).tolist()}")
print(f"entropy = {[round(v, 6) for v in normal.entropy().tolist()]}")
cat = D.Categorical(probs=torch.tensor([0.1, 0.2, 0.7]))
draws = cat.sample((1000,))
print(f"categorical counts: {torch.bincount(draws, minlength=3).tolist()}")
kl = D.kl_divergence(D.Normal(0.0, 1.0), D.Normal(1.0, 2.0))
print(f"KL(N(0,1) || N(1,2)) = {kl.item():.6f}")
print(f"isinstance(normal, D.Distribution): {isinstance(normal, D.Distribution)}")

state = torch.get_rng_state()
first = torch.rand(3)
torch.set_rng_state(state)
again = torch.rand(3)
print(f"rng state {state.dtype} {tuple(state.shape)}; replay equal: {torch.equal(first, again)}")
g = torch.Generator().manual_seed(123)
a = torch.randn(2, generator=g)
g.manual_seed(123)
b = torch.randn(2, generator=g)
print(f"generator replay equal: {torch.equal(a, b)}; initial_seed {g.initial_seed()}")


def energy(x):
    return (x**3).sum() + (x[0] * x[1])


x = torch.tensor([1.0, 2.0, 3.0])
print(f"grad(energy)(x) = {grad(energy)(x).tolist()}")
print(f"jacrev(sin)(x) diag = {jacrev(torch.sin)(x).diagonal().tolist()}")
batch = torch.arange(6.0).reshape(3, 2)
print(f"vmap(dot with w) = {vmap(lambda row: row @ torch.tensor([1.0, -1.0]))(batch).tolist()}")
print(f"vmap(grad(energy)) rows = {vmap(grad(energy))(torch.ones(2, 3)).tolist()}")

m1 = torch.arange(6.0).reshape(2, 3)
m2 = torch.arange(12.0).reshape(3, 4)
print(f"einsum ij,jk->ik equals matmul: {torch.equal(torch.einsum('ij,jk->ik', m1, m2), m1 @ m2)}")
print(f"einsum trace: {torch.einsum('ii', torch.eye(3) * 2).item()}")

z = torch.tensor([1 + 2j, 3 - 1j])
print(f"complex: {z}, dtype {z.dtype}, abs {z.abs().tolist()}, conj {z.conj()}")
print(f"z[0].item() = {z[0].item()}")
spectrum = torch.fft.rfft(torch.cos(torch.arange(8.0) * 2 * torch.pi / 8))
print(f"rfft magnitudes: {[round(v, 4) for v in spectrum.abs().tolist()]}")

w = torch.tensor(2.0, requires_grad=True)
(dy,) = torch.autograd.grad(w**3, w, create_graph=True)
(d2y,) = torch.autograd.grad(dy, w)
print(f"dy/dw = {dy.item()}, d2y/dw2 = {d2y.item()}")
try:
    w.add_(1)
except RuntimeError as e:
    print(f"in-place on a leaf: {e}")
with torch.no_grad():
    w.add_(1)
print(f"w after no_grad add_: {w.item()}, is_leaf {w.is_leaf}")
