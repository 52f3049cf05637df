"""What one scrape of the pool's ``/metrics`` costs as the lease history grows.

The usage counters and the queue-wait histogram are computed from every lease
on record at each scrape (tether.pool._metrics_figures), so a scrape's cost
grows with the history. This builds a SQLite pool with N ended leases (rows
written directly, spread over teams and months), then times
``PoolService.statistics()`` plus rendering, and prints the time per scrape and
its ratio to the time with no history.

Usage::

    python bench/metrics_scrape.py                     # 0, 1k, 10k, 100k leases
    python bench/metrics_scrape.py --sizes 0 50000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tether.pool._metrics import render
from tether.pool._service import PoolService
from tether.pool._store import Store

TEAMS = 8


def build(path: Path, leases: int) -> Store:
    store = Store.open(str(path))
    now = time.time()
    ids = [store.create_team(f"team{t}", now=now).id for t in range(TEAMS)]
    store.create_user("u", is_admin=False, teams=[f"team{t}" for t in range(TEAMS)], now=now)
    user_id = store.user("u").id
    with store.db.transaction(serialize=True) as tx:
        for i in range(leases):
            start = now - 200 * 86400 + i * 60.0
            tx.execute(
                "INSERT INTO sessions (id, team_id, user_id, state, request, priority, seq, "
                "submitted_at, started_at, last_heartbeat, ended_at, share, memory_bytes) "
                "VALUES (?, ?, ?, 'ended', ?, 0, ?, ?, ?, ?, ?, ?, ?)",
                (f"s{i}", ids[i % TEAMS], user_id, json.dumps({"fraction": 0.5}), i,
                 start - (i % 7) * 30.0, start, start + 3000.0, start + 3600.0, 0.5, 8 << 30),
            )  # fmt: skip
    return store


def scrape_seconds(store: Store, repeat: int) -> float:
    service = PoolService(store)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        render(service.statistics())
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = None
    print(f"{'leases':>8}  {'scrape':>10}  ratio to an empty history")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = build(Path(tmp) / "pool.db", n)
            try:
                seconds = scrape_seconds(store, args.repeat)
            finally:
                store.close()
        base = base or seconds
        print(f"{n:>8}  {seconds * 1000:>8.1f}ms  {seconds / base:.1f}x")


if __name__ == "__main__":
    main()
