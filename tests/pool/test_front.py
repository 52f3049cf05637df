"""The hot routes' front answers exactly as FastAPI does.

Two real uvicorn servers on loopback share one service (SQLite and PostgreSQL):
one serves the pool as ``tether pool serve`` does (:class:`Front` before the
FastAPI app), the other the FastAPI app alone. Every case sends the same
request to both and compares status, error body and headers; placements and
releases compare their bodies with the fields that differ between any two
sessions (ids, times, tickets) set aside.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("uvicorn", reason="the pool service needs pip install 'tether[pool]'")

import uvicorn

from tether.pool._api import create_app
from tether.pool._front import Front, Workers
from tether.pool._service import PoolService, ServiceConfig
from tether.pool._store import Store

from ._pooltest import DEVICE_SPECS, db_url  # noqa: F401  (fixture)

# Fields that differ between two sessions placed alike.
VOLATILE = {"id", "submitted_at", "started_at", "last_heartbeat", "ended_at", "ticket",
            "ticket_expires_at", "queue_deadline"}  # fmt: skip


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Served:
    """An ASGI app on a real uvicorn server in a thread, on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        # The stdlib loop: uvloop keeps a pipe open for the rest of the process once
        # used, which the leak check would blame on the first test (the real
        # servers of tests/pool run the pool's own choice in their processes).
        config = uvicorn.Config(
            app, loop="asyncio", log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, payload, got = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, payload, got = exc.code, exc.read(), exc.headers
            exc.close()
        kept = {  # a redirect names this server: compared without its address
            k.lower(): v.replace(self.url, "")
            for k, v in got.items()
            if k.lower() not in ("date", "server")
        }
        return Reply(status, json.loads(payload) if payload else None, kept)


@dataclass
class Pair:
    front: Served
    plain: Served
    service: PoolService
    ann: str  # a user token, team ml
    bob: str  # a user token, team ml too
    node: str  # a node token
    admin: str

    def both(self, method: str, path: str, token: str | None = None, **kw: Any) -> Reply:
        """The same request to both servers; the answers must be the same."""
        a = self.front.call(method, path, token, **kw)
        b = self.plain.call(method, path, token, **kw)
        assert (a.status, a.body, a.headers) == (b.status, b.body, b.headers)
        return a


@pytest.fixture
def pair(db_url: str) -> Iterator[Pair]:  # noqa: F811
    store = Store.open(db_url)
    service = PoolService(store, ServiceConfig())
    service.start()
    now = time.time()
    store.create_team("ml", now=now)
    store.create_user("root", is_admin=True, teams=(), now=now)
    store.create_user("ann", is_admin=False, teams=["ml"], now=now)
    store.create_user("bob", is_admin=False, teams=["ml"], now=now)
    tokens = {
        name: store.create_token(kind="user", user=name, now=now)[1]
        for name in ("root", "ann", "bob")
    }
    node = store.create_token(kind="node", node_name="gpu1", now=now)[1]
    service.register_node(
        service.authenticate(node),
        name="gpu1",
        address="tcp://127.0.0.1:7447",
        devices=DEVICE_SPECS[:1],
        replace=False,
        sent_at=time.time(),
    )
    front = Front(create_app(service))
    servers = [Served(front), Served(create_app(service))]
    try:
        yield Pair(servers[0], servers[1], service, tokens["ann"], tokens["bob"], node,
                   tokens["root"])  # fmt: skip
    finally:
        for server in servers:
            server.close()
        front.close()
        store.close()


def _same_session(a: Reply, b: Reply) -> None:
    assert a.status == b.status and a.headers.keys() == b.headers.keys()
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    assert a.body.keys() == b.body.keys()
    assert {k: v for k, v in a.body.items() if k not in VOLATILE} == {
        k: v for k, v in b.body.items() if k not in VOLATILE
    }
    for k in VOLATILE & a.body.keys():
        assert type(a.body[k]) is type(b.body[k]), k


def test_placements_queues_refusals_and_releases_answer_alike(pair: Pair) -> None:
    half = {"fraction": 0.5, "wait": False, "name": "job"}
    a = pair.front.call("POST", "/v1/sessions", pair.ann, half)
    b = pair.plain.call("POST", "/v1/sessions", pair.ann, half)
    _same_session(a, b)
    assert a.status == 201 and a.body["state"] == "placed" and a.body["ticket"]
    # The device is full: refused (409) without waiting, queued (202) with.
    refused = pair.both("POST", "/v1/sessions", pair.ann, body={"fraction": 0.5, "wait": False})
    assert refused.status == 409 and refused.body["error"]["code"] == "refused"
    # Queued one at a time (each first in the queue), then withdrawn.
    queued = []
    for server in (pair.front, pair.plain):
        q = server.call("POST", "/v1/sessions", pair.ann, {"fraction": 0.5})
        assert q.status == 202 and q.body["state"] == "queued" and q.body["position"] == 1
        w = server.call("DELETE", f"/v1/sessions/{q.body['id']}", pair.ann)
        assert w.status == 200 and w.body["end_reason"] == "cancelled"
        queued.append((q, w))
    _same_session(queued[0][0], queued[1][0])
    _same_session(queued[0][1], queued[1][1])

    # Releasing a placed one, then again (harmless).
    for session in (a.body, b.body):
        ra = pair.front.call("DELETE", f"/v1/sessions/{session['id']}", pair.ann)
        assert ra.status == 200 and ra.body["state"] == "ended"
        rb = pair.plain.call("DELETE", f"/v1/sessions/{session['id']}", pair.ann)
        assert (ra.status, ra.headers) == (rb.status, rb.headers) and ra.body == rb.body


def test_errors_before_the_service_are_fastapis_own(pair: Pair) -> None:
    good = {"fraction": 0.25}
    for token, kw in [
        (None, {"body": good}),  # no Authorization header
        (None, {"body": good, "headers": {"Authorization": "Basic abc"}}),
        (None, {"body": good, "headers": {"Authorization": "Bearer "}}),
        (pair.ann, {"raw": b'{"fraction": 0.25'}),  # malformed JSON
        (pair.ann, {"raw": b""}),  # no body
        (pair.ann, {"body": {"fraction": 0.25, "colour": "red"}}),  # unknown field
        (pair.ann, {"body": {"fraction": 2}}),  # out of range
        (pair.ann, {"body": [1, 2]}),
        (pair.ann, {"body": good, "headers": {"Content-Type": "text/plain"}}),
        (pair.ann, {"body": {"fraction": 0.25, "name": "x" * 100_000}}),  # past the front's cap
    ]:
        reply = pair.both("POST", "/v1/sessions", token, **kw)
        assert reply.status in (400, 401), (kw, reply)
    for path in ("/v1/sessions/", "/v1/sessions/a/b"):
        pair.both("DELETE", path, pair.ann)
    assert pair.both("DELETE", "/v1/sessions/abc").status == 401


def test_errors_of_the_service_are_mapped_alike(pair: Pair) -> None:
    bogus = pair.ann[:-4] + ("AAAA" if not pair.ann.endswith("AAAA") else "BBBB")
    assert pair.both("POST", "/v1/sessions", bogus, body={"fraction": 0.25}).status == 401
    assert pair.both("DELETE", "/v1/sessions/nope", bogus).status == 401
    assert pair.both("POST", "/v1/sessions", "tu_short", body={"fraction": 0.25}).status == 401
    # A node token may not ask for slices; nobody may release an unknown session.
    assert pair.both("POST", "/v1/sessions", pair.node, body={"fraction": 0.25}).status == 403
    assert pair.both("DELETE", "/v1/sessions/0123456789abcdef", pair.ann).status == 404
    assert pair.both("POST", "/v1/sessions", pair.ann, body={"team": "nope"}).status == 404
    assert pair.both("POST", "/v1/sessions", pair.ann, body={"memory": "lots"}).status == 400
    # Another user's session: 403, from the front as from FastAPI.
    placed = pair.front.call("POST", "/v1/sessions", pair.ann, {"fraction": 0.25})
    assert pair.both("DELETE", f"/v1/sessions/{placed.body['id']}", pair.bob).status == 403
    pair.front.call("DELETE", f"/v1/sessions/{placed.body['id']}", pair.ann)


def test_a_revoked_token_is_refused_by_the_front_on_its_next_request(pair: Pair) -> None:
    store = pair.service.store
    record, text = store.create_token(kind="user", user="ann", now=time.time())
    placed = pair.front.call("POST", "/v1/sessions", text, {"fraction": 0.25})
    assert placed.status == 201
    store.revoke_token(record.id, now=time.time())
    for method, path, body in [
        ("POST", "/v1/sessions", {"fraction": 0.25}),
        ("DELETE", f"/v1/sessions/{placed.body['id']}", None),
    ]:
        reply = pair.both(method, path, text, body=body)
        assert reply.status == 401 and reply.body["error"]["message"] == "token has been revoked"
        assert reply.headers["www-authenticate"] == "Bearer"
    # A membership taken away counts from the next request on, too.
    store.set_membership("ml", "bob", member=False)
    assert pair.both("POST", "/v1/sessions", pair.bob, body={"fraction": 0.25}).status == 403
    pair.front.call("DELETE", f"/v1/sessions/{placed.body['id']}", pair.ann)


def test_placements_through_the_front_are_in_the_latency_histogram(pair: Pair) -> None:
    def count() -> float:
        request = urllib.request.Request(
            pair.front.url + "/metrics", headers={"Authorization": f"Bearer {pair.admin}"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            lines = resp.read().decode().splitlines()
        found = [
            ln for ln in lines if ln.startswith("tether_pool_placement_duration_seconds_count")
        ]
        return float(found[0].split()[-1])

    before = count()
    placed = pair.front.call("POST", "/v1/sessions", pair.ann, {"fraction": 0.25})
    assert count() == before + 1
    pair.front.call("DELETE", f"/v1/sessions/{placed.body['id']}", pair.ann)


def test_workers_hand_back_results_and_errors_and_stop() -> None:
    workers = Workers(2, name="test-workers")

    async def main() -> None:
        assert await workers.run(lambda: 6 * 7) == 42
        with pytest.raises(ZeroDivisionError):
            await workers.run(lambda: 1 // 0)
        results = await asyncio.gather(*(workers.run(lambda i=i: i) for i in range(50)))
        assert results == list(range(50))

    asyncio.run(main())
    workers.close()
    assert not any(t.name.startswith("test-workers") for t in threading.enumerate())
