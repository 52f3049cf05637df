"""A custom torch.autograd.Function, checked with gradcheck.

Covers: subclassing torch.autograd.Function with static forward/backward,
ctx.save_for_backward / ctx.saved_tensors, ctx attributes, Function.apply,
torch.autograd.gradcheck on float64 inputs, torch.autograd.grad, and using the
function inside a user-defined module.
"""

import torch

torch.manual_seed(2)
torch.set_num_threads(1)


class SmoothClamp(torch.autograd.Function):
    """y = tanh(x / s) * s: a clamp with a smooth, non-zero gradient."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        y = torch.tanh(x / scale) * scale
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        t = torch.tanh(x / ctx.scale)
        return grad_out * (1 - t * t), None


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


x = torch.randn(5, dtype=torch.float64, requires_grad=True)
y = SmoothClamp.apply(x, 2.0)
print("x:", x)
print("y:", y)
print(f"y.grad_fn is set: {y.grad_fn is not None}")
y.sum().backward()
print("x.grad:", x.grad)

ok = torch.autograd.gradcheck(lambda t: SmoothClamp.apply(t, 1.5), (x,), eps=1e-6, atol=1e-4)
print(f"gradcheck SmoothClamp: {ok}")
ok = torch.autograd.gradcheck(
    Cube.apply, (torch.randn(3, 3, dtype=torch.float64, requires_grad=True),)
)
print(f"gradcheck Cube: {ok}")

z = torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)
(g,) = torch.autograd.grad(Cube.apply(z).sum(), z)
print("d/dz sum(z^3):", g)
print(f"matches 3z^2: {torch.allclose(g, 3 * z.detach() ** 2)}")


class ClampedLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, inp):
        return SmoothClamp.apply(self.lin(inp), 0.5)


m = ClampedLinear().double()
inp = torch.randn(4, 3, dtype=torch.float64)
out = m(inp)
out.pow(2).mean().backward()
print(f"out.max() <= 0.5: {bool(out.max() <= 0.5)}")
print(f"lin.weight.grad norm: {m.lin.weight.grad.norm().item():.8f}")
for name, p in m.named_parameters():
    print(f"{name}: grad shape {tuple(p.grad.shape)} sum {p.grad.sum().item():+.8f}")
