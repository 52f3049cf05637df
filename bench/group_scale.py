"""A group of 1,000 slices in one request vs 1,000 single requests, at pool scale.

The inventory is ``bench/pool_scale.py``'s simulated 1,000 nodes x 8 devices
(70% H100 80GB, 20% A100 40GB, 10% MI300X 192GB). Each trial builds the pool,
optionally warms it up with pool_scale's mixed workload to about ``--warm``
of its capacity (so there are holes to pack into), then asks for ``--members``
slices of one shape (default a quarter of a device) either

- **group**: one ``GroupRequested`` (a gang: all or nothing) through the real
  pure core (:class:`tether.pool.PoolState`), or
- **singles**: ``--members`` ``SliceRequested`` events of the same shape, one
  after the other (what a script of ``tether run`` calls does),

and prints, for each, the time to place them all and how well they are packed:

- *devices touched*: distinct devices holding a member, against the fewest that
  could (``ceil(members x fraction)``): the ratio is the packing efficiency;
- *whole devices left*: devices still fully free afterwards (what big requests
  can still have).

``--store sqlite`` does the same through the whole pool service
(``PoolService.request_group`` vs ``request_slice``: one serialised transaction
for the group, one per single request, decisions written, tickets signed).

Usage::

    python bench/group_scale.py                       # pure core, empty and warm pool
    python bench/group_scale.py --store sqlite --nodes 200
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pool_scale import T0, inventory, make_request

from tether.pool import (
    NodeRegistered,
    NodeSpec,
    Placed,
    PoolConfig,
    PoolState,
    SliceRequest,
    SliceRequested,
)
from tether.pool._events import GroupPlaced, GroupRequested
from tether.pool._group_request import GroupRequest


def _pool(nodes: list[NodeSpec], warm: float, seed: int) -> tuple[PoolState, float]:
    state = PoolState(PoolConfig(node_timeout_s=10**7, lease_timeout_s=10**7))
    t = T0
    for n in nodes:
        state.handle(NodeRegistered(now=t, node=n))
    rng = random.Random(seed)
    i = 0
    while state.statistics().allocated_share < warm * state.statistics().capacity_share:
        t += 0.001
        state.handle(SliceRequested(now=t, request=make_request(rng, f"w{i}")))
        i += 1
    return state, t


def _whole_free(state: PoolState, nodes: list[NodeSpec]) -> int:
    return sum(1 for n in nodes for share, _m in state.device_usage(n.id).values() if share == 0.0)


def trial(
    nodes: list[NodeSpec], members: int, fraction: float, warm: float, seed: int, *, group: bool
) -> tuple[float, int, int, int]:
    """(seconds, members placed, devices touched, whole devices left)."""
    state, t = _pool(nodes, warm, seed)
    shape = SliceRequest(id="g", fraction=fraction, team="ml", user="ann", wait=False)
    t += 1.0
    start = time.perf_counter()
    if group:
        g = GroupRequest(shape=shape, name="sweep", min_count=members, max_count=members,
                         member_ids=tuple(f"g-{i}" for i in range(members)))  # fmt: skip
        out = state.handle(GroupRequested(now=t, group=g))
        placed = [p for d in out if isinstance(d, GroupPlaced) for p in d.members]
    else:
        placed = []
        for i in range(members):
            req = SliceRequest(id=f"s-{i}", fraction=fraction, team="ml", user="ann", wait=False)
            placed += [d for d in state.handle(SliceRequested(now=t, request=req))
                       if isinstance(d, Placed)]  # fmt: skip
    seconds = time.perf_counter() - start
    touched = len({(p.lease.node, p.lease.device_ids[0]) for p in placed})
    return seconds, len(placed), touched, _whole_free(state, nodes)


def store_trial(nodes: list[NodeSpec], members: int, fraction: float, *, group: bool) -> float:
    """Seconds to place ``members`` slices through PoolService over SQLite (empty pool)."""
    from pool_scale import _StoreDriver

    with tempfile.TemporaryDirectory() as tmp:
        drv = _StoreDriver("best-fit", nodes, Path(tmp) / "pool.db")
        who = drv.users["ml"]
        start = time.perf_counter()
        if group:
            got = drv.service.request_group(
                who, {"name": "sweep", "max_count": members, "fraction": fraction, "wait": False}
            )
            assert got["placed_count"] == members, got["state"]
        else:
            for _ in range(members):
                drv.now += 0.001
                drv.service.request_slice(who, {"fraction": fraction, "wait": False})
        seconds = time.perf_counter() - start
        drv.store.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--per-node", type=int, default=8)
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--warm", type=float, default=0.8, help="warm-up fill (0 to skip)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--store", choices=["none", "sqlite"], default="none")
    args = p.parse_args(argv)
    nodes = inventory(args.nodes, args.per_node, args.seed)
    ideal = math.ceil(args.members * args.fraction)
    print(f"{args.nodes} nodes x {args.per_node} devices, {args.members} members of "
          f"{args.fraction:g} of a device (fewest devices to hold them: {ideal})")  # fmt: skip
    if args.store == "sqlite":
        g = store_trial(nodes, args.members, args.fraction, group=True)
        s = store_trial(nodes, args.members, args.fraction, group=False)
        print(f"through PoolService on SQLite, empty pool: group {g:.3f}s, singles {s:.3f}s, "
              f"singles/group = {s / g:.1f}x")  # fmt: skip
        return 0
    print(f"{'pool':<12} {'how':<8} {'seconds':>9} {'placed':>7} {'devices':>8} "
          f"{'packing':>8} {'whole free':>10}")  # fmt: skip
    for label, warm in (("empty", 0.0), (f"warm {args.warm:.0%}", args.warm)):
        if warm == 0.0 and label != "empty":
            continue
        rows = {}
        for how in ("group", "singles"):
            rows[how] = trial(nodes, args.members, args.fraction, warm, args.seed,
                              group=how == "group")  # fmt: skip
            seconds, placed, touched, whole = rows[how]
            packing = ideal / touched if touched else float("nan")
            print(f"{label:<12} {how:<8} {seconds:>9.4f} {placed:>7} {touched:>8} "
                  f"{packing:>8.2f} {whole:>10}")  # fmt: skip
        g, s = rows["group"][0], rows["singles"][0]
        print(f"{label:<12} singles/group time = {s / g:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
