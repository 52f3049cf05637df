# tether-test: expect-status=1
"""Script-level tensor math: binary operators in loops, where the client pipelines
each operator through a fast lane once its site is learned (client/_lanes.py).

Each guard of the lane that keeps results right shows in the output if it is
missing: an operator inside a ``try`` that catches its error (it must raise
there, not at the next read outside the ``try``), and a global that the
worker's code reads rebound right before an operator. The rest must simply
come out as they do locally: operands of every kind on either side (int,
float, bool, a 65-bit int, a tensor), an operator whose result class changes
half-way (but for the one result made on the old guess), and a failed operator
outside any ``try``, which surfaces at the
next value read with the same message.
"""

import torch

torch.manual_seed(3)
torch.set_num_threads(1)

# The bench's loop, with a read every 50 steps.
a = torch.ones(16)
b = torch.full((16,), 0.002)
for i in range(300):
    a = a * 0.999 + b
    if i % 50 == 49:
        print(f"step {i + 1}: sum {a.sum().item():.6f}")

# Every operand kind on either side, each site used often enough to take a lane.
x = torch.arange(6, dtype=torch.float64)
acc = torch.zeros(6, dtype=torch.float64)
for k in range(40):
    acc = acc + x * 0.5  # tensor, float
    acc = acc - 2 * x  # int, tensor (reflected)
    acc = acc / 3  # tensor, int
    acc = 1.5 + acc  # float, tensor (reflected)
    acc = acc * (k % 3 + 1)  # an int that changes value: the same lane
    acc = acc + (k % 2 == 0)  # bool: no lane (its own encoding), same answer
    acc = acc % 7.25
print(f"mixed operands: {acc.tolist()}")

# Ints near and past 64 bits: a lane packs an i64; a bigger int takes the general path.
big = torch.tensor([1, 2, 3], dtype=torch.int64)
for shift in (10, 62, 62):
    print(f"big << {shift}: {(big * (1 << shift)).tolist()}")
try:
    print((big * (1 << 64)).tolist())
except (RuntimeError, OverflowError) as exc:
    print(f"a 65-bit int: {type(exc).__name__}: {str(exc).splitlines()[0]}")


class Tagged(torch.Tensor):
    """Operators keep the subclass for a while, then return plain tensors."""

    calls = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if getattr(func, "__name__", "") == "mul":
            Tagged.calls += 1
            if Tagged.calls > 5 and isinstance(out, Tagged):
                return out.as_subclass(torch.Tensor)
        return out


g = torch.ones(3).as_subclass(Tagged)
results = []
for _ in range(9):
    r = g * 2.0  # the site learns Tagged, pipelines it, then the class changes
    results.append((r, r.sum().item()))
print(f"result sums: {[f'{v:.0f}' for _, v in results]}")
# The one result made on the old guess (the sixth) keeps its class, as
# docs/remoting.md says; the worker's notice makes the site wait from then on.
print(f"result classes: {[type(r).__name__ for r, _ in results[:5] + results[6:]]}")

# An operator inside a try that catches its error raises right there, not at the
# next read, which is outside the try.
u = torch.ones(3)
v = torch.ones(4)
for attempt in range(5):
    try:
        s = u + (u if attempt < 3 else v)
    except RuntimeError as exc:
        s = None
        print(f"attempt {attempt}: caught {type(exc).__name__}: {str(exc).splitlines()[0]}")
    print(f"attempt {attempt}: {None if s is None else s.tolist()}")

# A global that the worker's code reads (a tensor subclass's hook), rebound right
# before an operator: the rebind must reach the worker ahead of the operator.
factor = 1.0


class Scaled(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        k = factor  # read by every operation: the worker holds the name once paged in
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out * k if getattr(func, "__name__", "") == "add" else out


sc = torch.ones(2).as_subclass(Scaled)
print(f"paged in by another call: {sc.sum().item()}")
for n in range(6):
    factor = float(n)
    s2 = sc + 1.0
    print(f"factor {factor}: {s2.tolist()}")

# A failed operator outside any try surfaces at the next read, with its message.
p = torch.ones(5)
q = torch.ones(5)
for n in range(6):
    p = p + q
    q = q * 1.5
print(f"before the bad shape: {p.sum().item():.4f}")
bad = torch.ones(7)
total = p + bad  # pipelined through the lane: fails in the worker
print("never printed: the failed sum raises first (remotely: before this print)")
print(f"read it: {total.sum().item()}")
