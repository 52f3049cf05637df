"""Attacks on the pool's credentials, with real processes: each asserts the attack fails.

A real pool (``tether pool serve`` on SQLite, and on PostgreSQL where it can be
had) and, per test, a real acceptor (``tether serve --pool``, offering this
machine's CPU) registered with its own node token. Tickets are the pool's real
ones, or forged the ways an attacker with an ordinary account, a leaked node
token or a copy of the database would forge them; sessions are opened by the
real client (:func:`tether.client._connect.open_session`).

Found before these defences (issue 10): a leaked node token re-registered its
node and got the ticket key in the answer; an unnamed node token replaced any
live node; a copy of the database held the ticket secret; a released lease's
ticket kept opening sessions; a session that ended during a pool outage was
billed up to the end of the outage.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _serving import sandbox_flags
from tether._errors import AuthenticationError
from tether._ticket import SessionTicket, issue
from tether.client._connect import open_session
from tether.poolapi import PoolClient

from ._pooltest import PoolServer, http, repo_env, run_pool_server, wait_until

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60.0
HEARTBEAT_S = 0.5
CPU = [{"id": "cpu:0", "vendor": "cpu", "model": "Test CPU", "memory": "8GiB"}]


@dataclass
class Pool:
    server: PoolServer
    admin: PoolClient
    ann: PoolClient
    root: Path
    db: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pool]:
    from ._pooltest import fresh_pg_schema

    root = tmp_path_factory.mktemp(f"creds-{request.param}")
    with contextlib.ExitStack() as stack:
        db = str(root / "pool.db")
        if request.param == "postgres":
            db = stack.enter_context(fresh_pg_schema())
        server = stack.enter_context(
            run_pool_server(root, db, "--node-timeout", "30", "--lease-timeout", "30")
        )
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        ann = PoolClient(server.url, admin.create_token(user="ann")["token"])
        yield Pool(server=server, admin=admin, ann=ann, root=root, db=db)


@dataclass
class Node:
    name: str
    token: str
    address: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start_acceptor(
    pool: Pool, name: str, token: str, heartbeat_s: float, *extra: str, tag: str = ""
) -> Node:
    root = pool.root / (name + tag)
    root.mkdir()
    token_file, ready, log = root / "node-token", root / "ready", root / "acceptor.log"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    env = repo_env()
    env.pop("TETHER_NODE_TOKEN", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
                "--pool", pool.url, "--node-token-file", str(token_file), "--name", name,
                "--devices", "cpu", "--ready-file", str(ready),
                "--heartbeat-interval", str(heartbeat_s), *sandbox_flags(), *extra,
            ],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"the acceptor did not register:\n{log.read_text()}", pytrace=False)
        time.sleep(0.05)
    return Node(name, token, ready.read_text().strip(), proc, log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


@contextlib.contextmanager
def acceptor(pool: Pool, *, heartbeat_s: float = HEARTBEAT_S) -> Iterator[Node]:
    """A real ``tether serve --pool`` for a fresh node, with a token named for it."""
    name = f"n{secrets.token_hex(3)}"
    token = pool.admin.create_token(kind="node", node=name)["token"]
    node = _start_acceptor(pool, name, token, heartbeat_s)
    try:
        yield node
    finally:
        _stop(node.proc)
        for s in pool.admin.sessions():
            if s["node"] == name:
                pool.admin.release(s["id"])


def slice_on(pool: Pool, node: Node, fraction: float = 0.05) -> dict[str, Any]:
    session = pool.ann.request_slice(fraction=fraction, node=node.name, wait=False)
    assert session["state"] == "placed" and session["node"] == node.name, session
    return session


def connects(node: Node, ticket: str) -> bool:
    """Whether the acceptor opens a session for ``ticket`` (closed again, and
    waited for until its worker has gone)."""
    try:
        session = open_session(node.address, ticket)
    except AuthenticationError:
        return False
    sid = session.session_id
    session.close()
    wait_until(lambda: f"session {sid} ended" in node.log_text(), timeout=30)
    return True


def refusal(node: Node, ticket: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        open_session(node.address, ticket).close()
    return str(info.value)


def forge(key: bytes, node: str, *, session_id: str = "forged", fraction: float = 1.0,
          memory: int = 1 << 40) -> str:  # fmt: skip
    now = time.time()
    return issue(
        key,
        SessionTicket(
            session_id=session_id, node=node, device_ids=("cpu:0",), fraction=fraction,
            memory_bytes=memory, team="ml", user="ann", issued_at=now, expires_at=now + 300,
        ),
    )  # fmt: skip


# ------------------------------------------------------------------ registration


def test_another_nodes_token_cannot_replace_a_node(pool: Pool) -> None:
    with acceptor(pool) as node:
        other = pool.admin.create_token(kind="node", node="someone-else")["token"]
        status, body = http(
            "POST",
            pool.url + "/v1/nodes",
            other,
            {"name": node.name, "address": "tcp://10.6.6.6:1", "devices": CPU, "replace": True},
        )
        assert status == 403, body
        (listed,) = [n for n in pool.admin.nodes() if n["name"] == node.name]
        assert listed["address"] == node.address


def test_an_unnamed_node_token_cannot_replace_a_live_node(pool: Pool) -> None:
    with acceptor(pool) as node:
        unnamed = pool.admin.create_token(kind="node")["token"]
        status, body = http(
            "POST",
            pool.url + "/v1/nodes",
            unnamed,
            {"name": node.name, "address": "tcp://10.6.6.6:1", "devices": CPU, "replace": True},
        )
        assert status == 409, body
        assert "unnamed node token cannot take over a live node" in body["error"]["message"]
        (listed,) = [n for n in pool.admin.nodes() if n["name"] == node.name]
        assert listed["address"] == node.address  # its clients still go to it
        # ... nor heartbeat it without the registration id, which it never got.
        status, body = http(
            "POST", f"{pool.url}/v1/nodes/{node.name}/heartbeat", unnamed,
            {"sent_at": time.time(), "sessions": []},
        )  # fmt: skip
        assert status == 403, body
        # It may still register a node of its own (the Kubernetes recipe).
        fresh = f"n{secrets.token_hex(3)}"
        status, body = http(
            "POST", pool.url + "/v1/nodes", unnamed,
            {"name": fresh, "address": "tcp://127.0.0.1:1", "devices": CPU},
        )  # fmt: skip
        assert status == 201, body


def test_a_leaked_node_token_yields_no_key_its_acceptor_accepts(pool: Pool) -> None:
    """The issue's attack: a session reads its acceptor's node token, re-registers
    the node with it (same address), signs itself a whole device with 1 TiB."""
    with acceptor(pool, heartbeat_s=30.0) as node:
        mine = slice_on(pool, node)  # the attacker's honest 0.05 slice
        # Reporting for the node (to end, renew or bill its leases) needs the
        # registration id, which only the acceptor that registered holds.
        status, body = http(
            "POST", f"{pool.url}/v1/nodes/{node.name}/heartbeat", node.token,
            {"sent_at": time.time(), "sessions": [{"session_id": mine["id"], "wall_seconds": 0}]},
        )  # fmt: skip
        assert status == 403, body
        status, body = http(
            "POST",
            pool.url + "/v1/nodes",
            node.token,
            {"name": node.name, "address": node.address, "devices": CPU, "replace": True},
        )
        assert status == 201, body
        stolen = bytes.fromhex(body["ticket_key"])
        for sid in (mine["id"], "other"):
            reason = refusal(node, forge(stolen, node.name, session_id=sid))
            # The acceptor's own key does not match; the pool, asked, says the
            # registration that key belongs to is not the acceptor's.
            assert "registered again" in reason, reason


def test_an_acceptor_with_an_unnamed_token_comes_back_once_its_old_self_is_lost(
    tmp_path: Path,
) -> None:
    """The Kubernetes recipe: one unnamed token for every node, pods restarted with
    --replace. The new pod cannot take over the live registration; it waits until
    the pool has marked the old one lost, then registers."""
    with run_pool_server(tmp_path, None, "--node-timeout", "8") as server:
        admin = PoolClient(server.url, server.admin_token)
        pool = Pool(server=server, admin=admin, ann=admin, root=tmp_path, db="")
        unnamed = admin.create_token(kind="node")["token"]
        first = _start_acceptor(pool, "k8s-node", unnamed, HEARTBEAT_S)
        try:
            os.killpg(first.proc.pid, signal.SIGKILL)  # the pod dies; the pool has not noticed
            first.proc.wait(15)
            second = _start_acceptor(pool, "k8s-node", unnamed, HEARTBEAT_S, "--replace", tag="2")
            try:
                assert "cannot take over a live node" in second.log_text()
                (listed,) = admin.nodes()
                assert listed["status"] == "ready" and listed["address"] == second.address
            finally:
                _stop(second.proc)
        finally:
            _stop(first.proc)


# ------------------------------------------------------------------ forged tickets


def _tampered(ticket: str, **changes: Any) -> str:
    prefix, payload, mac = ticket.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return f"{prefix}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{mac}"


def test_forged_tickets_are_refused(pool: Pool) -> None:
    with acceptor(pool) as node:
        genuine = slice_on(pool, node)["ticket"]
        attempts = {
            "wrong key": forge(secrets.token_bytes(32), node.name),
            "widened slice": _tampered(genuine, frac=1.0, mem=1 << 40),
            "another user": _tampered(genuine, user="bob", team="vision"),
            "another session": _tampered(genuine, sid="someone-elses"),
            "longer life": _tampered(genuine, exp=time.time() + 86400),
        }
        for what, ticket in attempts.items():
            reason = refusal(node, ticket)
            assert "signature does not match" in reason, (what, reason)
        assert connects(node, genuine)  # the genuine one still works, once


# ------------------------------------------------------------------ replay and release


def test_a_ticket_opens_one_session(pool: Pool) -> None:
    with acceptor(pool) as node:
        session = slice_on(pool, node)
        # A fresh ticket for the same lease (GET /v1/sessions/{id}) is the same session.
        fresh = pool.ann.session(session["id"])["ticket"]
        assert fresh and fresh != session["ticket"]
        assert connects(node, session["ticket"])  # ... and waits until it has ended
        for replay in (session["ticket"], fresh):
            reason = refusal(node, replay)
            assert "used already" in reason, reason


def test_a_released_leases_ticket_opens_nothing(pool: Pool) -> None:
    with acceptor(pool, heartbeat_s=30.0) as node:  # no heartbeat to learn it from
        session = slice_on(pool, node)
        pool.ann.release(session["id"])
        reason = refusal(node, session["ticket"])
        assert "has ended (released)" in reason, reason


def test_a_lease_ended_by_the_pool_ends_its_session(pool: Pool) -> None:
    from tether._errors import TetherError

    with acceptor(pool) as node:
        lease = slice_on(pool, node)
        session = open_session(node.address, lease["ticket"])
        try:
            session.sync()  # the session works
            pool.ann.release(lease["id"])

            def ended() -> bool:
                try:
                    session.sync()
                except TetherError:
                    return True
                return False

            wait_until(ended, timeout=30)
            assert f"ending session {lease['id']}: the pool ended its lease" in node.log_text()
        finally:
            with contextlib.suppress(Exception):
                session.close()


# ------------------------------------------------------------------ a copy of the database


def _database_strings(pool: Pool) -> list[str]:
    """Every text value in every table of the pool's database, as an attacker
    holding a copy would have them."""
    out: list[str] = []
    if pool.db.startswith("postgresql"):
        import psycopg

        with psycopg.connect(pool.db, autocommit=True) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            ]
            for table in tables:
                for row in conn.execute(f"SELECT * FROM {table}"):
                    out += [v for v in row if isinstance(v, str)]
        return out
    copy = pool.root / "stolen.db"
    with sqlite3.connect(pool.db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                out += [v for v in row if isinstance(v, str)]
    return out


def test_a_copy_of_the_database_cannot_mint_a_ticket(pool: Pool) -> None:
    with acceptor(pool) as node:
        slice_on(pool, node)
        values = _database_strings(pool)
        secret_file = pool.root / "pool-secret"
        secret_text = secret_file.read_text() if secret_file.exists() else ""
        candidates = set()
        for value in values:
            with contextlib.suppress(ValueError):
                raw = bytes.fromhex(value)
                if len(raw) >= 16:
                    candidates.add(raw)
        assert candidates, "the copy should at least hold the registration hashes"
        regs = [""] + [v for v in values if len(v) == 64]
        for secret in candidates:
            assert secret.hex() not in secret_text
            keys = [secret]  # the value used as a key as it stands, and every derivation
            for context in (b"tether-ticket-key-v1\0", b"tether-ticket-key-v2\0"):
                keys.append(hmac.new(secret, context + node.name.encode(), "sha256").digest())
                keys += [
                    hmac.new(secret, context + f"{node.name}\0{reg}".encode(), "sha256").digest()
                    for reg in regs
                ]
            for key in keys:
                reason = refusal(node, forge(key, node.name, session_id=secrets.token_hex(4)))
                assert "signature does not match" in reason, reason


# ------------------------------------------------------------------ exact bills


def test_a_session_ending_during_a_pool_outage_is_billed_its_measured_time(pool: Pool) -> None:
    """The acceptor's report of the session's end reaches the pool only after the
    outage, after the client's late release: the lease still ends when the session
    did, and the user's usage is the measured time, within one heartbeat."""
    heartbeat = 1.0
    user = f"u{secrets.token_hex(3)}"
    pool.admin.create_user(user, teams=["ml"])
    client = PoolClient(pool.url, pool.admin.create_token(user=user)["token"])
    with acceptor(pool, heartbeat_s=heartbeat) as node:
        lease = client.request_slice(fraction=0.5, node=node.name, wait=False)
        session = open_session(node.address, lease["ticket"])
        session.import_module("math")
        pool.server.proc.send_signal(signal.SIGSTOP)  # the outage begins
        try:
            time.sleep(1.0)
            session.close()
            closed_at = time.time()  # the session's real end, as its client saw it
            time.sleep(5.0)  # the outage goes on
        finally:
            pool.server.proc.send_signal(signal.SIGCONT)
        client.release(lease["id"])  # what `tether run` does once it reaches the pool

        deadline = time.monotonic() + 30  # until the acceptor's report of the end is in
        while (ended := client.session(lease["id"]))["end_reason"] != "finished":
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        measured = closed_at - ended["started_at"]
        billed = ended["ended_at"] - ended["started_at"]
        print(f"billed {billed:.2f}s for a session measured at {measured:.2f}s")
        assert abs(billed - measured) <= heartbeat, (billed, measured, ended)
        (row,) = [r for r in client.usage(team="ml", user=user) if r["user"] == user]
        assert abs(row["device_seconds"] - 0.5 * measured) <= 0.5 * heartbeat, (row, measured)
        assert ended["metering"]["wall_seconds"] <= billed


# ------------------------------------------------------------------ rotation


def _rotate(pool: Pool, grace_s: float) -> None:
    env = repo_env()
    env.pop("TETHER_POOL_SECRET", None)
    subprocess.run(
        [sys.executable, "-m", "tether", "pool", "rotate-secret",
         "--secret-file", str(pool.root / "pool-secret"), "--grace", str(grace_s)],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def test_rotating_the_secret_refuses_no_ticket_in_its_grace_period(pool: Pool) -> None:
    with acceptor(pool, heartbeat_s=30.0) as node:  # it learns new keys at connect
        before = slice_on(pool, node)
        _rotate(pool, grace_s=600)
        after = slice_on(pool, node)
        assert connects(node, after["ticket"])  # signed with the new secret
        assert connects(node, before["ticket"])  # the old one, within its grace
        old = slice_on(pool, node)  # signed with the secret about to be dropped
        _rotate(pool, grace_s=0)
        reason = refusal(node, old["ticket"])
        assert "signature does not match" in reason, reason
        assert connects(node, slice_on(pool, node)["ticket"])
