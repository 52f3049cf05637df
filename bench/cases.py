"""The workloads, written once against a :class:`Peer` so that the same code runs locally,
through Tether and through RPyC.

Every case function takes a peer and its size parameters and returns a :class:`Outcome`:
the measured figure (seconds, calls per second or bytes per second, see ``CASES``) and an
``output`` made of plain Python values that must agree across peers (same seeds, same
arithmetic); the smoke test compares them. Each case synchronises with a value read before
it starts the clock, so work pipelined by the setup is never billed to the measured loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Peer:
    """One way of reaching ``torch``: ``local``, ``tether`` or ``rpyc``.

    ``to_peer`` turns a client numpy array into something the peer's ``torch.from_numpy``
    accepts (Tether ships arguments itself; RPyC needs ``rpyc.classic.deliver``);
    ``to_local`` turns the peer's ``tensor.numpy()`` into a real local array.
    """

    name: str
    torch: Any
    to_peer: Callable[[Any], Any] = lambda a: a
    to_local: Callable[[Any], Any] = lambda a: a
    close: Callable[[], None] = lambda: None
    # Counts of calls by kind ({"sync": n, "async": m}) where the peer keeps them (Tether).
    stats: Callable[[], dict[str, int]] | None = None
    # Where the cases put their tensors: "cpu", or "cuda" for the GPU paths (--device).
    device: str = "cpu"


@dataclass(frozen=True)
class Outcome:
    value: float
    output: Any
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; ``FULL`` is issue 3's, ``QUICK`` is the CI smoke version."""

    null_calls: int
    pipelined_calls: int
    fine_iters: int
    small_steps: int
    small_read_every: int
    large_steps: int
    bulk_mib: tuple[int, ...]
    reps: int
    ping_pongs: int
    echo_frames: int


FULL = Sizes(
    null_calls=2000,
    pipelined_calls=10_000,
    fine_iters=2000,
    small_steps=300,
    small_read_every=50,
    large_steps=100,
    bulk_mib=(64, 256),
    reps=5,
    ping_pongs=5000,
    echo_frames=50_000,
)

QUICK = Sizes(
    null_calls=50,
    pipelined_calls=500,
    fine_iters=100,
    small_steps=10,
    small_read_every=5,
    large_steps=2,
    bulk_mib=(1,),
    reps=1,
    ping_pongs=200,
    echo_frames=2000,
)


def null_call(peer: Peer, n: int) -> Outcome:
    """Mean seconds per synchronous round trip of a trivial remote function."""
    torch = peer.torch
    answer = torch.is_grad_enabled()
    t0 = time.perf_counter()
    for _ in range(n):
        answer = torch.is_grad_enabled()
    elapsed = time.perf_counter() - t0
    return Outcome(elapsed / n, bool(answer))


def pipelined(peer: Peer, n: int) -> Outcome:
    """Calls per second for ``n`` calls whose results stay remote, then one value read."""
    torch = peer.torch
    acc = torch.zeros((), device=peer.device)
    acc.item()
    t0 = time.perf_counter()
    for _ in range(n):
        acc.add_(1.0)
    total = acc.item()
    elapsed = time.perf_counter() - t0
    return Outcome(n / elapsed, float(total))


def fine_grained(peer: Peer, n: int) -> Outcome:
    """Seconds for ``n`` iterations of ``a = a * 0.999 + b`` with a read every 100."""
    torch = peer.torch
    a = torch.ones(16, device=peer.device)
    b = torch.full((16,), 0.001, device=peer.device)
    reads = [a.sum().item()]
    t0 = time.perf_counter()
    for i in range(n):
        a = a * 0.999 + b
        if i % 100 == 99:
            reads.append(a.sum().item())
    reads.append(a.sum().item())
    elapsed = time.perf_counter() - t0
    return Outcome(elapsed, [round(float(r), 5) for r in reads])


def _mlp_steps(
    peer: Peer, widths: tuple[int, int, int], steps: int, read_every: int, seed: int
) -> Outcome:
    torch = peer.torch
    nn = torch.nn
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(widths[0], widths[1]), nn.ReLU(), nn.Linear(widths[1], widths[2])
    ).to(peer.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    # Drawn on the CPU (the same numbers whatever the device), then moved.
    x = torch.randn(256, widths[0]).to(peer.device)
    y = torch.randint(0, widths[2], (256,)).to(peer.device)
    loss_fn = nn.functional.cross_entropy
    losses = [loss_fn(model(x), y).item()]  # also the synchronisation point before timing
    t0 = time.perf_counter()
    for step in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step % read_every == read_every - 1:
            losses.append(loss.item())
    losses.append(loss_fn(model(x), y).item())
    elapsed = time.perf_counter() - t0
    return Outcome(elapsed, [float(v) for v in losses])


def small_training(peer: Peer, steps: int, read_every: int) -> Outcome:
    """Seconds for ``steps`` SGD steps of a ~10k-parameter MLP (64-128-10), batch 256."""
    return _mlp_steps(peer, (64, 128, 10), steps, read_every, seed=1)


def large_training(peer: Peer, steps: int) -> Outcome:
    """Seconds for ``steps`` SGD steps of a 512-1024-10 MLP, batch 256, ``.item()`` each step."""
    return _mlp_steps(peer, (512, 1024, 10), steps, 1, seed=2)


def make_bulk_array(mib: int) -> Any:
    """A deterministic ``mib`` MiB int64 array (cheap to build, every element distinct)."""
    import numpy as np

    return np.arange(mib * (1 << 20) // 8, dtype=np.int64)


def bulk(peer: Peer, array: Any) -> Outcome:
    """Bytes per second moving ``array`` to the peer (``torch.from_numpy`` and a size read)
    and back (``.numpy()``); ``value`` is the upload rate, ``extra['down']`` the download.
    On a GPU (``peer.device``) the way includes the copy to the device and back."""
    import numpy as np

    torch = peer.torch
    torch.zeros(1).numel()  # a warm connection, so the first byte does not pay a handshake
    on_cpu = peer.device == "cpu"
    t0 = time.perf_counter()
    remote = torch.from_numpy(peer.to_peer(array))
    if not on_cpu:
        remote = remote.to(peer.device)
    if not on_cpu:
        torch.cuda.synchronize()  # the copy to the device has ended
    count = remote.numel()
    t1 = time.perf_counter()
    back = peer.to_local(remote.numpy() if on_cpu else remote.cpu().numpy())
    t2 = time.perf_counter()
    same = bool(np.array_equal(back, array)) and int(count) == array.size
    del remote, back
    return Outcome(array.nbytes / (t1 - t0), same, {"down": array.nbytes / (t2 - t1)})


STARTUP_SCRIPT = """\
import time
import torch
value = torch.ones(4).sum().item()
print("TETHER-BENCH-FIRST-RESULT", repr(time.time()), value, flush=True)
"""


def parse_first_result(stdout: str) -> tuple[float, float]:
    """The (timestamp, value) the start-up script printed; raises ValueError when absent."""
    for line in stdout.splitlines():
        if line.startswith("TETHER-BENCH-FIRST-RESULT"):
            _, stamp, value = line.split()
            return float(stamp), float(value)
    raise ValueError(f"the start-up script printed no result; its output was:\n{stdout[-2000:]}")
