"""Pool placement at scale: 1,000 nodes x 8 devices, 20,000 mixed requests and releases.

Drives the real pure core (:class:`tether.pool.PoolState`, so placement,
quotas, the queue and the books are all in the loop) with a seeded, simulated
workload, and prints for each placement policy:

- latency of one ``SliceRequested`` through ``PoolState.handle`` (p50, p99);
- placements per second over the mixed stream;
- packing efficiency: the allocated share over the capacity at the first
  refusal for lack of room, filling from empty and filling after churn.

Phases per policy (same seed, same workload):

1. warm-up: requests until the pool is about 80% allocated;
2. churn: ``--events`` mixed events (requests with ``--no-wait`` semantics and
   releases of random open leases, half and half) -- timed;
3. fill: requests until the first refusal -- packing efficiency after churn.

Plus a fill from an empty pool per policy. The request mix: fractions (0.1,
0.25, 0.5, 0.75), memory sizes (8, 16, 24 GiB), whole devices (1, 2, 4, 8),
some with a vendor or model constraint. Inventory: 70% 8 x H100 80GB nodes,
20% 8 x A100 40GB, 10% 8 x MI300X 192GB.

``--store sqlite`` runs the same workload through the whole pool service
instead (``tether.pool._service.PoolService`` over a SQLite file: one
serialised transaction per request, decisions written, a signed ticket per
placement), timing ``PoolService.request_slice`` end to end.

Usage::

    python bench/pool_scale.py                    # best-fit vs first-fit (and spread)
    python bench/pool_scale.py --nodes 200 --events 5000   # quicker
    python bench/pool_scale.py --store sqlite --events 2000  # through the store
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tether.pool import (
    SHARE_SCALE,
    DeviceSpec,
    LeaseReleased,
    NodeRegistered,
    NodeSpec,
    Placed,
    PlacementPolicy,
    PoolConfig,
    PoolState,
    Refused,
    SliceRequest,
    SliceRequested,
)

GiB = 1 << 30
T0 = 1_800_000_000.0
TEAMS = ("ml", "cv", "nlp", "rl", "infra")


def inventory(n_nodes: int, per_node: int, seed: int) -> list[NodeSpec]:
    rng = random.Random(seed)
    kinds = [
        ("nvidia", "H100 80GB HBM3", 80 * GiB, "9.0", "2.4.1+cu121"),
        ("nvidia", "A100-SXM4-40GB", 40 * GiB, "8.0", "2.3.1+cu118"),
        ("amd", "MI300X", 192 * GiB, "gfx942", "2.5.0+rocm6.2"),
    ]
    nodes = []
    for i in range(n_nodes):
        vendor, model, mem, arch, torch = rng.choices(kinds, weights=(70, 20, 10))[0]
        devices = tuple(
            DeviceSpec(
                id=f"gpu{j}",
                vendor=vendor,
                model=model,
                memory_bytes=mem,
                arch=arch,
                frameworks={"torch": torch},
            )
            for j in range(per_node)
        )
        nodes.append(
            NodeSpec(id=f"node{i:04d}", address=f"tcp://node{i:04d}:7447", devices=devices)
        )
    return nodes


def make_request(rng: random.Random, rid: str, *, wait: bool = False) -> SliceRequest:
    r = rng.random()
    kw: dict[str, object] = {}
    if r < 0.55:
        kw["fraction"] = rng.choice((0.1, 0.25, 0.25, 0.5, 0.5, 0.75))
    elif r < 0.75:
        kw["memory_bytes"] = rng.choice((8, 16, 24)) * GiB
    elif r < 0.88:
        kw["count"] = 1
    else:
        kw["count"] = rng.choice((2, 2, 4, 8))
    c = rng.random()
    if c < 0.10:
        kw["vendor"] = "amd"
    elif c < 0.25:
        kw["model"] = "*H100*"
    elif c < 0.30:
        kw["frameworks"] = ("torch>=2.4",)
    team = rng.choice(TEAMS)
    return SliceRequest(
        id=rid,
        team=team,
        user=f"{team}-user{rng.randrange(20)}",
        wait=wait,
        queue_timeout_s=3600.0 if wait else None,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class Result:
    policy: str
    latencies_us: list[float]
    release_latencies_us: list[float]
    max_queue: int
    placements: int
    refusals: int
    releases: int
    churn_seconds: float
    fill_empty: float
    fill_churned: float
    util_after_churn: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def fill_until_refused(
    state: PoolState, rng: random.Random, t: float, prefix: str
) -> tuple[float, float]:
    """Feed requests until one is refused for capacity; return (efficiency, time)."""
    i = 0
    while True:
        t += 0.001
        req = make_request(rng, f"{prefix}{i}")
        i += 1
        out = state.handle(SliceRequested(now=t, request=req))
        refused = [d for d in out if isinstance(d, Refused)]
        if refused and refused[0].code == "capacity":
            stats = state.statistics()
            return stats.allocated_share / stats.capacity_share, t
        if i > 10**6:  # pragma: no cover - a pool that never fills is a bug
            raise RuntimeError("the pool never refused")


def run_policy(
    policy: PlacementPolicy, nodes: list[NodeSpec], events: int, seed: int, *, wait: bool = False
) -> Result:
    # Long timeouts: nothing expires during the benchmark (time is simulated).
    cfg = PoolConfig(node_timeout_s=10**7, lease_timeout_s=10**7, policy=policy)

    def fresh() -> PoolState:
        s = PoolState(cfg)
        for n in nodes:
            s.handle(NodeRegistered(now=T0, node=n))
        return s

    fill_empty, _ = fill_until_refused(fresh(), random.Random(seed + 1), T0, "e")

    state = fresh()
    rng = random.Random(seed)
    t = T0
    open_ids: list[str] = []
    n = 0
    capacity = state.statistics().capacity_share
    while state.statistics().allocated_share < 0.8 * capacity:  # warm-up
        t += 0.001
        n += 1
        for d in state.handle(SliceRequested(now=t, request=make_request(rng, f"w{n}"))):
            if isinstance(d, Placed):
                open_ids.append(d.lease.id)

    latencies: list[float] = []
    release_latencies: list[float] = []
    placements = refusals = releases = max_queue = 0
    busy = 0.0
    gc.collect()
    gc.disable()  # measure placement, not the collector's pauses
    try:
        for k in range(events):
            t += 0.001
            if rng.random() < 0.5 or not open_ids:
                ev = SliceRequested(now=t, request=make_request(rng, f"c{k}", wait=wait))
                t0 = time.perf_counter()
                out = state.handle(ev)
                dt = time.perf_counter() - t0
                latencies.append(dt * 1e6)
                busy += dt
                for d in out:
                    if isinstance(d, Placed):
                        placements += 1
                        open_ids.append(d.lease.id)
                    elif isinstance(d, Refused):
                        refusals += 1
                max_queue = max(max_queue, state.statistics().queued) if wait else 0
            else:
                j = rng.randrange(len(open_ids))
                open_ids[j], open_ids[-1] = open_ids[-1], open_ids[j]
                lease_id = open_ids.pop()
                t0 = time.perf_counter()
                out = state.handle(LeaseReleased(now=t, lease_id=lease_id))
                dt = time.perf_counter() - t0
                release_latencies.append(dt * 1e6)
                busy += dt
                releases += 1
                for d in out:  # queued requests placed in the room this release made
                    if isinstance(d, Placed):
                        placements += 1
                        open_ids.append(d.lease.id)
                    elif isinstance(d, Refused):
                        refusals += 1
    finally:
        gc.enable()
    stats = state.statistics()
    util = stats.allocated_share / stats.capacity_share
    fill_churned, _ = fill_until_refused(state, rng, t, "f")
    return Result(
        policy=policy,
        latencies_us=latencies,
        release_latencies_us=release_latencies,
        max_queue=max_queue,
        placements=placements,
        refusals=refusals,
        releases=releases,
        churn_seconds=busy,
        fill_empty=fill_empty,
        fill_churned=fill_churned,
        util_after_churn=util,
    )


class _StoreDriver:
    """The same workload through PoolService over a SQLite store (``--store sqlite``)."""

    def __init__(self, policy: PlacementPolicy, nodes: list[NodeSpec], path: Path) -> None:
        from tether.pool._service import PoolService, ServiceConfig
        from tether.pool._store import Store

        self.now = T0
        self.store = Store.open(str(path))
        self.users = {}
        for team in TEAMS:
            self.store.create_team(team, now=T0)
            self.store.create_user(f"{team}-user", is_admin=False, teams=[team], now=T0)
            _, text = self.store.create_token(kind="user", user=f"{team}-user", now=T0)
            self.users[team] = self.store.authenticate(text)
        _, text = self.store.create_token(kind="node", node_name=None, now=T0)
        node_principal = self.store.authenticate(text)
        cfg = PoolConfig(node_timeout_s=10**7, lease_timeout_s=10**7, policy=policy)
        self.service = PoolService(self.store, ServiceConfig(policy=cfg), clock=lambda: self.now)
        self.service.start()
        for n in nodes:
            self.service.register_node(
                node_principal,
                name=n.id,
                address=n.address,
                devices=[{**d.to_dict(), "memory": d.memory_bytes} for d in n.devices],
                replace=False,
                sent_at=None,
            )

    def request(self, req: SliceRequest) -> str | None:
        """The session id if placed, None if refused."""
        from tether.poolapi import Refused as RefusedError

        body = {
            k: v
            for k, v in {
                "fraction": req.fraction,
                "memory": req.memory_bytes,
                "count": req.count,
                "vendor": req.vendor,
                "model": req.model,
                "frameworks": [str(f) for f in req.frameworks] or None,
                "team": req.team,
                "wait": False,
            }.items()
            if v is not None
        }
        self.now += 0.001
        try:
            session = self.service.request_slice(self.users[req.team], body)
        except RefusedError:
            return None
        return str(session["id"])

    def release(self, session_id: str, team: str) -> None:
        self.now += 0.001
        self.service.release(self.users[team], session_id)


def run_store(policy: PlacementPolicy, nodes: list[NodeSpec], events: int, seed: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t_setup = time.perf_counter()
        drv = _StoreDriver(policy, nodes, Path(tmp) / "pool.db")
        setup_s = time.perf_counter() - t_setup
        capacity = sum(len(n.devices) for n in nodes)
        rng = random.Random(seed)
        held: list[tuple[str, str]] = []
        n = 0
        placed_share = 0.0
        while placed_share < 0.8 * capacity:  # warm-up, as for the pure core
            n += 1
            req = make_request(rng, f"w{n}")
            sid = drv.request(req)
            if sid is not None:
                held.append((sid, req.team))
                placed_share += (req.count or 0) or (req.fraction or 0.1)
        latencies: list[float] = []
        placements = refusals = releases = 0
        t_churn = time.perf_counter()
        for k in range(events):
            if rng.random() < 0.5 or not held:
                req = make_request(rng, f"c{k}")
                t0 = time.perf_counter()
                sid = drv.request(req)
                latencies.append((time.perf_counter() - t0) * 1e6)
                if sid is None:
                    refusals += 1
                else:
                    placements += 1
                    held.append((sid, req.team))
            else:
                j = rng.randrange(len(held))
                held[j], held[-1] = held[-1], held[j]
                drv.release(*held.pop())
                releases += 1
        churn_s = time.perf_counter() - t_churn
        drv.store.close()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"{policy:<10} {p50:>8.0f} {p99:>8.0f} {statistics.fmean(latencies):>8.0f} "
        f"{placements / churn_s:>9.0f} {placements:>7} {refusals:>8} {releases:>9}   "
        f"(setup {setup_s:.0f}s, warm-up {n} requests)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--devices-per-node", type=int, default=8)
    parser.add_argument("--events", type=int, default=20_000, help="mixed requests and releases")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--policies",
        default="best-fit,first-fit,spread",
        help="comma-separated, first is the subject",
    )
    parser.add_argument(
        "--store",
        choices=("none", "sqlite"),
        default="none",
        help="sqlite: run the workload through PoolService over a SQLite store",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="churn requests wait in the queue (1 h timeout) instead of being refused",
    )
    args = parser.parse_args(argv)
    if args.store == "sqlite":
        return main_store(args)

    nodes = inventory(args.nodes, args.devices_per_node, args.seed)
    n_dev = args.nodes * args.devices_per_node
    print(
        f"pool_scale: {args.nodes} nodes x {args.devices_per_node} devices = {n_dev} devices, "
        f"{args.events} mixed events{' (requests wait)' if args.wait else ''}, "
        f"seed {args.seed}, python {sys.version.split()[0]}"
    )
    print()
    header = (
        f"{'policy':<10} {'p50 us':>8} {'p99 us':>8} {'mean us':>8} {'place/s':>9} "
        f"{'placed':>7} {'refused':>8} {'released':>9} {'pack@empty':>11} {'pack@churn':>11}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for policy in args.policies.split(","):
        r = run_policy(policy.strip(), nodes, args.events, args.seed, wait=args.wait)  # type: ignore[arg-type]
        results.append(r)
        p50, p99 = percentile(r.latencies_us, 50), percentile(r.latencies_us, 99)
        print(
            f"{r.policy:<10} {p50:>8.1f} {p99:>8.1f} "
            f"{statistics.fmean(r.latencies_us):>8.1f} {r.placements / r.churn_seconds:>9.0f} "
            f"{r.placements:>7} {r.refusals:>8} {r.releases:>9} "
            f"{r.fill_empty:>10.1%} {r.fill_churned:>10.1%}"
        )
    print()
    for r in results:
        rp50, rp99 = percentile(r.release_latencies_us, 50), percentile(r.release_latencies_us, 99)
        queue = f", longest queue {r.max_queue}" if args.wait else ""
        print(
            f"{r.policy:<10} release (incl. serving the queue): "
            f"p50 {rp50:.1f} us, p99 {rp99:.1f} us{queue}"
        )
    print()
    print("p50/p99/mean: one SliceRequested through PoolState.handle (placement, quota, books);")
    print("place/s: placements over the time spent in handle() for the whole churn (releases too);")
    print("pack@empty / pack@churn: allocated share / capacity at the first refusal for lack of")
    print("room, filling an empty pool / filling after the churn (share units, 1.0 = a device).")
    if len(results) > 1:
        base, other = results[0], results[1]
        print(
            f"\n{base.policy} vs {other.policy}: packing after churn {base.fill_churned:.1%} vs "
            f"{other.fill_churned:.1%}; placements in churn {base.placements} vs {other.placements}"
        )
    _ = SHARE_SCALE
    return 0


def main_store(args: argparse.Namespace) -> int:
    try:
        import tether.pool._service  # noqa: F401
    except ImportError as exc:
        print(f"pool_scale: --store sqlite needs the pool service: {exc}", file=sys.stderr)
        return 2
    nodes = inventory(args.nodes, args.devices_per_node, args.seed)
    print(
        f"pool_scale --store sqlite: {args.nodes} nodes x {args.devices_per_node} devices, "
        f"{args.events} mixed events through PoolService.request_slice/release on SQLite"
    )
    print()
    header = (
        f"{'policy':<10} {'p50 us':>8} {'p99 us':>8} {'mean us':>8} {'place/s':>9} "
        f"{'placed':>7} {'refused':>8} {'released':>9}"
    )
    print(header)
    print("-" * len(header))
    for policy in args.policies.split(",")[:1]:
        run_store(policy.strip(), nodes, args.events, args.seed)  # type: ignore[arg-type]
    print()
    print("p50/p99/mean: PoolService.request_slice end to end (serialised SQLite transaction,")
    print("policy, decisions written, ticket signed, session read back); place/s over wall time")
    print("of the churn, releases included.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
