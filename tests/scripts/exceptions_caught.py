"""Remote errors caught by the script's own `except` clauses, exactly as locally.

Covers: RuntimeError from a bad matmul, IndexError from indexing, KeyError,
TypeError, ValueError, a tuple of exception types, `except Exception`, else and
finally, `with` blocks whose __exit__ handles the error (contextlib.suppress,
a @contextmanager with try/except, a class), also at a call site that succeeded
before, exceptions raised by pipelined calls (several calls whose results are
not needed before the failing one), a failing call inside a function called
from a try block in the caller (two frames up), inside `with torch.no_grad()`,
inside a loop, and a session that keeps working after every error.
"""

import contextlib

import torch

torch.manual_seed(5)
torch.set_num_threads(1)


def first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


def bad_matmul():
    a = torch.randn(2, 3)
    b = torch.randn(4, 5)
    return a @ b


try:
    bad_matmul()
except RuntimeError as e:
    print(f"1 caught {type(e).__name__}: {first_line(e)}")

t = torch.arange(5)
try:
    t[10]
except IndexError as e:
    print(f"2 caught {type(e).__name__}: {e}")

try:
    t[2] = t[7]
    print("not reached")
except IndexError as e:
    print(f"3 caught IndexError on the right-hand side: {e}")
print(f"  t unchanged: {t.tolist()}")

# Pipelined: none of these results is needed as a value before the failure.
try:
    x = torch.ones(3, 3)
    x = x * 2
    x.add_(1)
    y = x.sum(dim=0)
    w = torch.randn(4, 4)
    bad = x @ w
    print("not reached", bad)
except RuntimeError as e:
    print(f"4 caught after pipelined calls: {first_line(e)}")
print(f"  state before the failure survived: y = {y.tolist()}")


def step(a, b):
    c = a + 1
    d = c * 2
    e = d.exp()
    return e @ b


def train_once(a, b):
    out = step(a, b)
    return out.sum()


try:
    train_once(torch.ones(2, 3), torch.ones(2, 3))
except RuntimeError as e:
    print(f"5 caught two frames below the try: {first_line(e)}")


# The failing call's result is never used, and nothing after it needs a value.
def fire_and_forget(v):
    v.view(7, 7)
    v.mul_(3)


try:
    fire_and_forget(torch.ones(10))
except RuntimeError as e:
    print(f"6 caught from a call whose result was discarded: {first_line(e)}")

try:
    with torch.no_grad():
        torch.zeros(2).reshape(3)
except RuntimeError as e:
    print(f"7 caught inside no_grad: {first_line(e)}")
print(f"  grad mode restored: {torch.is_grad_enabled()}")

try:
    torch.ones(2, 2).to(dtype="float32")
except (TypeError, ValueError) as e:
    print(f"8 caught {type(e).__name__} via a tuple: {first_line(e)}")

try:
    torch.nn.Linear(3, 3).state_dict()["missing.weight"]
except KeyError as e:
    print(f"9 caught KeyError: {e}")

try:
    torch.tensor([1, 2, 3]).float().mean(dim=5)
except Exception as e:
    print(f"10 caught via Exception: {type(e).__name__}: {first_line(e)}")
    print(
        f"   isinstance(e, RuntimeError): {isinstance(e, RuntimeError)}, IndexError: {isinstance(e, IndexError)}"
    )

events = []
try:
    events.append("try")
    torch.eye(2) @ torch.eye(3)
except RuntimeError:
    events.append("except")
else:
    events.append("else")
finally:
    events.append("finally")
print(f"11 order: {events}")

failures = 0
for n in range(1, 5):
    try:
        m = torch.ones(n, 2) @ torch.ones(2 if n % 2 else 3, 3)
        print(f"12 n={n} ok: {tuple(m.shape)} sum {m.sum().item()}")
    except RuntimeError as e:
        failures += 1
        print(f"12 n={n} failed: {first_line(e)}")
print(f"   failures: {failures}")


# Raising from the script's own module code running in the worker.
class Checked(torch.nn.Module):
    def forward(self, x):
        if x.dim() != 2:
            raise ValueError(f"expected a 2-d input, got {x.dim()}-d")
        return x.sum()


try:
    Checked()(torch.ones(3))
except ValueError as e:
    print(f"13 caught the script's own ValueError from forward: {e}")

try:
    try:
        torch.randn(2, 2).cholesky_inverse(upper="yes")
    except TypeError as e:
        print(f"14 inner caught {type(e).__name__}")
        raise RuntimeError("re-raised by the script") from e
except RuntimeError as e:
    print(f"14 outer caught: {e}; cause is TypeError: {isinstance(e.__cause__, TypeError)}")

print(f"still working: {torch.arange(4).sum().item()}")


# The same call sites succeed several times (so nothing waits on them), then fail two
# frames below the caller's try; a try/finally in between must not swallow the error.
def pipelined_step(a, b):
    c = a + 1
    out = c @ b
    out.mul_(2)


def with_cleanup(a, b):
    try:
        pipelined_step(a, b)
    finally:
        cleanups.append("done")


cleanups = []
ok_steps = 0
for k in [3, 3, 4, 3]:
    try:
        with_cleanup(torch.ones(2, 3), torch.ones(k, 2))
        ok_steps += 1
    except RuntimeError as e:
        print(f"19 k={k} caught: {first_line(e)}")
print(f"19 ok steps {ok_steps}, cleanups {len(cleanups)}")

# Context managers that handle errors: the failing call sits in a `with`, not a `try`.


class Swallow:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        print(f"15 __exit__ saw {exc_type.__name__ if exc_type else None}")
        return True


with Swallow():
    torch.ones(2).view(3)
with contextlib.suppress(RuntimeError):
    v = torch.ones(4)
    v.view(3).zero_()
    print("not reached")
print(f"16 after contextlib.suppress: {v.sum().item()}")


@contextlib.contextmanager
def guard(name):
    try:
        yield
    except RuntimeError as e:
        print(f"17 {name} caught: {first_line(e)}")


with guard("guard"):
    torch.ones(2) @ torch.ones(3)


def inner():
    torch.zeros(5).reshape(2, 2)


def outer():
    with guard("nested guard"):
        inner()


outer()

# The same site succeeds first and fails later, inside a `with` that swallows the error.
acc = torch.zeros(())
for k in [2, 3, 2]:
    with contextlib.suppress(RuntimeError):
        acc.add_(torch.ones(2) @ torch.ones(k))
print(f"18 accumulated over the good steps: {acc.item()}")
for i in range(3):
    with Swallow():
        torch.ones(2) @ torch.ones(3 if i == 1 else 2)
print("end")
