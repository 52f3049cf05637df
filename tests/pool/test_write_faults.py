"""The pool's write path around failures, with real processes on SQLite and PostgreSQL.

- A pool killed -9 while it places and releases for many clients at once has
  written everything it acknowledged (group commit answers only after commit).
- A client that dies after sending its request, before its answer, leaves no
  lease behind it: the pool gives back what it placed for a caller who is gone,
  instead of holding it until the lease times out.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tether._errors import ConnectError, PoolError
from tether.pool._db import _ADVISORY_LOCK_KEY
from tether.pool._store import Store
from tether.poolapi._client import PoolClient

from ._pooltest import DEVICES, db_url, repo_env, run_pool_server, wait_until  # noqa: F401

pytestmark = pytest.mark.slow

THREADS = 12
ACKS_BEFORE_KILL = 60
PLACE = {"fraction": 0.05, "wait": False}


def _world(url: str, admin_token: str) -> str:
    """Team ml, user ann, node gpu1 with two devices; returns ann's token."""
    admin = PoolClient(url, admin_token)
    admin.create_team("ml")
    admin.create_user("ann", teams=["ml"])
    node = PoolClient(url, admin.create_token(kind="node", node="gpu1")["token"])
    node.register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
    return str(admin.create_token(user="ann")["token"])


def test_what_the_pool_acknowledged_survives_kill_9(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    placed: list[str] = []  # acknowledged placements
    released: list[str] = []  # acknowledged releases
    lock = threading.Lock()
    stop = threading.Event()
    with run_pool_server(
        tmp_path / "pool", db_url, "--lease-timeout", "600", "--node-timeout", "600"
    ) as server:
        ann = PoolClient(server.url, _world(server.url, server.admin_token), timeout=20)

        def client() -> None:
            while not stop.is_set():
                try:
                    session = ann.request_slice(**PLACE)
                    with lock:
                        placed.append(session["id"])
                    ann.release(session["id"])
                    with lock:
                        released.append(session["id"])
                except (ConnectError, PoolError):  # the pool is gone, or died mid-answer
                    return

        threads = [threading.Thread(target=client) for _ in range(THREADS)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(placed) >= ACKS_BEFORE_KILL, timeout=60, interval=0.01)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=30)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)

    store = Store.open(db_url)
    try:
        with store.db.transaction() as tx:
            rows = {s.id: s for s in store.sessions_tx(tx, states=("placed", "ended"))}
            alloc = store.allocation_tx(tx)
    finally:
        store.close()
    assert len(placed) >= ACKS_BEFORE_KILL
    missing = [sid for sid in placed if sid not in rows]
    assert missing == [], f"{len(missing)} acknowledged placements were lost"
    not_ended = [sid for sid in released if rows[sid].state != "ended"]
    assert not_ended == [], f"{len(not_ended)} acknowledged releases were lost"
    # Leases acknowledged but not yet released are the only ones that may be open.
    open_ids = {sid for sid, s in rows.items() if s.state == "placed"}
    assert open_ids <= set(placed) - set(released) | (set(rows) - set(placed))
    assert all(share <= 1.0 + 1e-9 for share, _mem in alloc.values())


# --------------------------------------------------------------------------- dead client

_DYING_CLIENT = r"""
import json, os, signal, socket, sys, time
host, port, token, linger = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
body = json.dumps({"fraction": 0.5, "wait": False}).encode()
head = (
    f"POST /v1/sessions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
).encode()
sock = socket.create_connection((host, port))
sock.sendall(head + body)
time.sleep(linger)  # the pool reads the request meanwhile, and waits for the database
os.kill(os.getpid(), signal.SIGKILL)
"""


@contextlib.contextmanager
def _writes_blocked(db: str) -> Iterator[None]:
    """Hold the lock every pool write takes (SQLite's write lock, or the advisory
    lock on PostgreSQL), as a long transaction of another replica would."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
        return
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_client_that_dies_before_its_answer_leaves_no_lease(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    with run_pool_server(
        tmp_path / "pool", db_url, "--lease-timeout", "600", "--node-timeout", "600"
    ) as server:
        token = _world(server.url, server.admin_token)
        admin = PoolClient(server.url, server.admin_token)
        ann = PoolClient(server.url, token, timeout=60)
        where = urlsplit(server.url)
        control: dict[str, Any] = {}
        with _writes_blocked(db_url):
            dying = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _DYING_CLIENT,
                    str(where.hostname),
                    str(where.port),
                    token,
                    "1.0",
                ],
                env=repo_env(),
            )
            # A client that stays: its request waits for the same lock, and is placed.
            waiter = threading.Thread(
                target=lambda: control.update(ann.request_slice(fraction=0.5, wait=False))
            )
            waiter.start()
            assert dying.wait(timeout=30) == -signal.SIGKILL
        waiter.join(timeout=60)
        assert control.get("state") == "placed", control

        def settled() -> list[dict[str, Any]] | None:
            ended = [s for s in admin.sessions(state="ended") if s["user"] == "ann"]
            return ended or None

        ended = wait_until(settled, timeout=30)
        assert [s["end_reason"] for s in ended] == ["released"]
        assert [s["id"] for s in admin.sessions(state="placed")] == [control["id"]]
        assert "client left before its answer" in server.log_text()
