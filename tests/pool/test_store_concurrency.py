"""Many processes and threads placing at once on one PostgreSQL never double-allocate.

Each worker process is a separate pool service (as separate pool replicas would
be) with several threads requesting and releasing slices as fast as they can.
Afterwards the lease history in the database is swept: at no instant may the
shares on any device add up to more than one device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

from tether.pool._service import PoolService
from tether.pool._store import Store

from ._pooltest import DEVICE_SPECS, pg_url, repo_env  # noqa: F401  (fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
THREADS = 3
OPS = 25

_WORKER = r"""
import json, random, sys, threading
from tether._errors import PoolError
from tether.poolapi import Refused
from tether.pool._orders import SliceOrder
from tether.pool._service import PoolService
from tether.pool._store import Store

url, token, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
threads, ops = int(sys.argv[4]), int(sys.argv[5])
store = Store.open(url)
service = PoolService(store)
who = store.authenticate(token)
counts = {"placed": 0, "refused": 0, "released": 0, "errors": []}
lock = threading.Lock()

def run(k):
    rng = random.Random(seed * 100 + k)
    held = []
    for _ in range(ops):
        try:
            if held and rng.random() < 0.4:
                service.release(who, held.pop(rng.randrange(len(held))))
                with lock:
                    counts["released"] += 1
                continue
            order = SliceOrder(fraction=rng.choice([0.25, 0.5, 0.75, 1.0]), wait=False)
            s = service.request_slice(who, order)
            held.append(s.id)
            with lock:
                counts["placed"] += 1
        except Refused:
            with lock:
                counts["refused"] += 1
        except PoolError as exc:
            with lock:
                counts["errors"].append(repr(exc))

ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
store.close()
print(json.dumps(counts))
"""


def test_concurrent_placement_never_double_allocates(pg_url: str) -> None:  # noqa: F811
    store = Store.open(pg_url)
    service = PoolService(store)
    service.start()
    store.create_team("ml", now=1.0)
    store.create_user("ann", is_admin=False, teams=["ml"], now=1.0)
    _rec, token = store.create_token(kind="user", user="ann", now=1.0)
    node = store.authenticate(store.create_token(kind="node", now=1.0)[1])
    service.register_node(
        node, name="gpu1", address="tcp://h:7447", devices=DEVICE_SPECS, replace=False, sent_at=None
    )

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, pg_url, token, str(i), str(THREADS), str(OPS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=repo_env(),
        )
        for i in range(PROCESSES)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert [r["errors"] for r in results] == [[]] * PROCESSES
    placed = sum(r["placed"] for r in results)
    refused = sum(r["refused"] for r in results)
    assert placed > 0 and refused > 0  # there was contention, and both outcomes happened

    with store.db.transaction() as tx:
        rows = tx.all(
            "SELECT s.started_at, s.ended_at, d.node_name, d.device_id, d.share "
            "FROM lease_devices d JOIN sessions s ON s.id = d.session_id"
        )
        live = store.allocation_tx(tx)
    store.close()
    assert len({(r["started_at"]) for r in rows}) >= placed  # every placement is on record

    edges: dict[tuple[str, str], list[tuple[float, int, float]]] = defaultdict(list)
    for r in rows:
        key = (r["node_name"], r["device_id"])
        edges[key].append((r["started_at"], 1, r["share"]))
        if r["ended_at"] is not None:
            # At the same instant an end sorts before a start (kind 0 < 1).
            edges[key].append((r["ended_at"], 0, -r["share"]))
    for key, events in edges.items():
        level = peak = 0.0
        for _t, _kind, delta in sorted(events):
            level += delta
            peak = max(peak, level)
        assert peak <= 1.0 + 1e-9, f"{key} held {peak} devices at once"
    assert all(share <= 1.0 + 1e-9 for share, _mem in live.values())
