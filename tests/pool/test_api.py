"""The pool's HTTP API end to end: a real `tether pool serve`, real tokens, real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tether._errors import AuthenticationError, ConnectError
from tether._ticket import SessionTicket, issue
from tether.poolapi import Forbidden, Gone, NotFound, PoolClient, Refused

from ._pooltest import DEVICES, PoolServer, http, run_pool_server, wait_until

pytestmark = pytest.mark.slow


@dataclass
class World:
    server: PoolServer
    admin: PoolClient
    ann: PoolClient  # team ml
    bob: PoolClient  # team vision
    node: PoolClient
    node_token: str
    ann_token: str
    ticket_key: bytes
    registration: str

    def node_beat(self, sessions: list[dict[str, object]]) -> dict[str, object]:
        """A node heartbeat as the acceptor sends it: with its registration id."""
        body = {"sent_at": time.time(), "registration": self.registration, "sessions": sessions}
        return self.node.request("POST", "/v1/nodes/gpu1/heartbeat", body)  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("pool")
    with run_pool_server(root, None, "--node-timeout", "3", "--lease-timeout", "600") as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_team("vision")
        admin.create_user("ann", teams=["ml"])
        admin.create_user("bob", teams=["vision"])
        ann_token = admin.create_token(user="ann")["token"]
        bob_token = admin.create_token(user="bob")["token"]
        node_token = admin.create_token(kind="node", node="gpu1")["token"]
        node = PoolClient(server.url, node_token)
        reg = node.register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
        yield World(
            server=server,
            admin=admin,
            ann=PoolClient(server.url, ann_token),
            bob=PoolClient(server.url, bob_token),
            node=node,
            node_token=node_token,
            ann_token=ann_token,
            ticket_key=bytes.fromhex(reg["ticket_key"]),
            registration=reg["registration"],
        )


@pytest.fixture(autouse=True)
def _node_alive(world: World) -> Iterator[None]:
    world.node.node_heartbeat("gpu1")
    yield
    for s in world.admin.sessions():
        world.admin.release(s["id"])


def _error(status: int, body: object, code: str) -> str:
    assert isinstance(body, dict), body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


# --------------------------------------------------------------------------- 401


def test_every_call_needs_a_valid_token(world: World) -> None:
    good = world.ann_token
    cases = {
        "no header": None,
        "garbage": "hunter2",
        "unknown id": "tu_000000000000_" + "x" * 43,
        "wrong secret": good[:-4] + "AAAA",
    }
    for what, token in cases.items():
        status, body = http("GET", world.url + "/v1/me", token)
        assert status == 401, what
        _error(status, body, "unauthorized")
    status, body = http("GET", world.url + "/v1/me", headers={"Authorization": "Basic abc"})
    assert status == 401 and "Bearer" in _error(status, body, "unauthorized")
    status, body = http("GET", world.url + "/metrics")
    assert status == 401


def test_a_revoked_token_stops_working_at_once(world: World) -> None:
    issued = world.admin.create_token(user="ann", label="short-lived")
    temp = PoolClient(world.url, issued["token"])
    assert temp.me()["user"] == "ann"
    world.admin.revoke_token(issued["id"])
    with pytest.raises(AuthenticationError, match="revoked"):
        temp.me()
    listed = {t["id"]: t for t in world.admin.tokens("ann")}
    assert listed[issued["id"]]["revoked_at"] is not None
    assert all("token" not in t for t in listed.values())  # secrets are never listed


# --------------------------------------------------------------------------- 403


def test_forbidden_actions_are_403_and_change_nothing(world: World) -> None:
    before = world.admin.teams()
    for call in (
        lambda: world.ann.create_team("hackers"),
        lambda: world.ann.create_user("mallory", admin=True),
        lambda: world.ann.set_quota("ml", max_share=100),
        lambda: world.ann.node_action("gpu1", "drain"),
        lambda: world.ann.create_token(user="bob"),
        lambda: world.ann.register_node("evil", "tcp://1.2.3.4:1", DEVICES),
        lambda: world.node.request_slice(fraction=0.5),
        lambda: world.node.register_node("gpu2", "tcp://127.0.0.1:1", DEVICES),  # bound to gpu1
    ):
        with pytest.raises(Forbidden):
            call()
    assert world.admin.teams() == before
    status, body = http("POST", world.url + "/v1/teams", world.ann_token, {"name": "x"})
    assert status == 403
    _error(status, body, "forbidden")


# --------------------------------------------------------------------------- bad input


def test_a_bad_device_is_400_only_for_a_token_that_may_register_the_node(world: World) -> None:
    bad = [DEVICES[0], {**DEVICES[1], "memory": "eighty gigs"}]
    with pytest.raises(Forbidden, match="needs a node token"):
        world.ann.register_node("gpu1", "tcp://127.0.0.1:7447", bad)
    with pytest.raises(Forbidden, match="for node 'gpu1', not 'gpu2'"):
        world.node.register_node("gpu2", "tcp://127.0.0.1:1", bad)
    for devices, message in [
        (bad, "device cuda:1 memory 'eighty gigs' is not a size"),
        ([DEVICES[0], DEVICES[0]], "node gpu1: device id 'cuda:0' appears twice"),
    ]:
        body = {"name": "gpu1", "address": "tcp://10.9.9.9:1", "devices": devices}
        status, resp = http("POST", world.url + "/v1/nodes", world.node_token, body)
        assert status == 400, resp
        assert message in _error(status, resp, "bad-request")
    assert world.admin.nodes()[0]["address"] == "tcp://127.0.0.1:7447"  # unchanged


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"fraction": -0.5}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": 0}, "fraction"),
        ({"memory": "5000TiB"}, "absurd"),
        ({"memory": "eight gigs"}, "not a size"),
        ({"fraction": 0.5, "gpus": 1}, "unknown field 'gpus'"),
        ({"count": 2, "fraction": 0.5}, "either"),
        ({"fraction": 0.5, "frameworks": ["torch>=>2"]}, "not valid"),
        ({"fraction": 0.5, "priority": 10**6}, "priority"),
    ],
)
def test_bad_requests_are_400_with_a_reason(world: World, body: dict, needle: str) -> None:
    status, resp = http("POST", world.url + "/v1/sessions", world.ann_token, body)
    assert status == 400, resp
    assert needle in _error(status, resp, "bad-request")
    assert world.admin.sessions() == []


def test_malformed_json_is_400(world: World) -> None:
    status, body = http("POST", world.url + "/v1/sessions", world.ann_token, raw_body=b'{"fr')
    assert status == 400
    assert "malformed JSON" in _error(status, body, "bad-request")
    status, body = http("POST", world.url + "/v1/sessions", world.ann_token, raw_body=b"[1,2]")
    assert status == 400


def test_unknown_team_and_foreign_team(world: World) -> None:
    with pytest.raises(NotFound, match="no team named 'nope'"):
        world.ann.request_slice(fraction=0.5, team="nope")
    with pytest.raises(Forbidden, match="not a member of team 'vision'"):
        world.ann.request_slice(fraction=0.5, team="vision")


def test_duplicate_node_registration_is_409_unless_replacing(world: World) -> None:
    status, body = http(
        "POST",
        world.url + "/v1/nodes",
        world.node_token,
        {"name": "gpu1", "address": "tcp://10.9.9.9:1", "devices": DEVICES},
    )
    assert status == 409
    assert "already registered" in _error(status, body, "conflict")
    assert world.admin.nodes()[0]["address"] == "tcp://127.0.0.1:7447"  # unchanged
    again = world.node.register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES, replace=True)
    assert again["status"] == "ready"
    # A new registration signs with a new key: the one the first registration got is void.
    assert bytes.fromhex(again["ticket_key"]) != world.ticket_key
    world.ticket_key = bytes.fromhex(again["ticket_key"])
    world.registration = again["registration"]


def test_heartbeat_clock_skew_is_400_and_changes_nothing(world: World) -> None:
    before = world.admin.nodes()[0]["last_heartbeat"]
    status, body = http(
        "POST",
        world.url + "/v1/nodes/gpu1/heartbeat",
        world.node_token,
        {"sent_at": time.time() + 3600, "sessions": []},
    )
    assert status == 400
    message = _error(status, body, "bad-request")
    assert "clock skew" in message and body["error"]["detail"]["skew_s"] > 3000
    assert world.admin.nodes()[0]["last_heartbeat"] == before


def test_expired_and_forged_tickets_are_400(world: World) -> None:
    now = time.time()
    expired = issue(
        world.ticket_key,
        SessionTicket(
            session_id="s1", node="gpu1", device_ids=("cuda:0",), fraction=0.5,
            memory_bytes=1 << 30, team="ml", user="ann",
            issued_at=now - 7200, expires_at=now - 3600,
        ),
    )  # fmt: skip
    status, body = http(
        "POST", world.url + "/v1/tickets/verify", world.node_token, {"ticket": expired}
    )
    assert status == 400
    assert "expired" in _error(status, body, "bad-request").lower()
    assert body["error"]["detail"]["ticket_error"] == "TicketExpired"
    forged = expired[:-3] + ("AAA" if not expired.endswith("AAA") else "BBB")
    status, body = http(
        "POST", world.url + "/v1/tickets/verify", world.node_token, {"ticket": forged}
    )
    assert status == 400


# --------------------------------------------------------------------------- sessions


def test_placement_gives_address_and_a_ticket_the_acceptor_accepts(world: World) -> None:
    from tether._ticket import verify

    s = world.ann.request_slice(fraction=0.25, memory="8GiB", frameworks=["torch>=2.4"])
    assert s["state"] == "placed" and s["address"] == "tcp://127.0.0.1:7447"
    claims = verify(world.ticket_key, s["ticket"], now=time.time(), node="gpu1")
    assert (claims.session_id, claims.team, claims.user) == (s["id"], "ml", "ann")
    assert (claims.fraction, claims.memory_bytes) == (0.25, 8 << 30)
    checked = world.node.verify_ticket(s["ticket"])
    assert checked["claims"]["session"] == s["id"]
    beat = world.ann.heartbeat(s["id"])
    assert beat["last_heartbeat"] >= s["last_heartbeat"]
    ended = world.ann.release(s["id"])
    assert (ended["state"], ended["end_reason"]) == ("ended", "released")
    with pytest.raises(Gone):
        world.ann.heartbeat(s["id"])


def test_teams_are_isolated(world: World) -> None:
    s = world.ann.request_slice(fraction=0.5)
    with pytest.raises(NotFound):
        world.bob.session(s["id"])
    with pytest.raises(NotFound):
        world.bob.release(s["id"])
    assert world.bob.sessions() == []
    assert [x["id"] for x in world.ann.sessions()] == [s["id"]]
    assert [x["id"] for x in world.admin.sessions()] == [s["id"]]
    with pytest.raises(NotFound):
        world.bob.usage(team="ml")
    assert {r["team"] for r in world.bob.usage()} <= {"vision"}
    status, _ = http("GET", f"{world.url}/v1/sessions/{s['id']}", world.ann_token)
    assert status == 200


def test_queue_position_then_placement_when_room_appears(world: World) -> None:
    a = world.ann.request_slice(count=2)
    assert a["state"] == "placed"
    with pytest.raises(Refused) as refused:
        world.ann.request_slice(fraction=0.5, wait=False)
    assert refused.value.detail["reason"] == "capacity"
    status, q = http("POST", world.url + "/v1/sessions", world.ann_token, {"fraction": 0.5})
    assert status == 202 and q["state"] == "queued" and q["position"] == 1
    # Fair between teams: vision holds nothing, ml holds two devices, so bob goes first.
    q2 = world.bob.request_slice(fraction=0.5)
    assert q2["position"] == 1
    assert world.ann.session(q["id"])["position"] == 2
    world.ann.release(a["id"])
    assert world.ann.session(q["id"])["state"] == "placed"
    assert world.bob.session(q2["id"])["state"] == "placed"


def test_wait_for_slice_reports_positions(world: World) -> None:
    import threading

    a = world.ann.request_slice(count=2)
    seen: list[int] = []
    got: dict = {}

    def waiter() -> None:
        got.update(
            world.bob.wait_for_slice(
                fraction=1.0, poll_interval=0.05, on_position=lambda p, r: seen.append(p)
            )
        )

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: seen)
    world.ann.release(a["id"])
    t.join(timeout=30)
    assert seen[0] == 1 and got["state"] == "placed" and got["ticket"]


def test_quota_refusal_names_the_limit(world: World) -> None:
    world.admin.set_quota("vision", max_share=0.5)
    try:
        world.bob.request_slice(fraction=0.5)
        with pytest.raises(Refused) as info:
            world.bob.request_slice(fraction=0.25, wait=False)
        assert info.value.detail["limit"] == "max_share"
        assert info.value.detail["left"] == 0
        assert "0.50" in str(info.value)
    finally:
        world.admin.set_quota("vision")


# --------------------------------------------------------------------------- usage, metrics


def test_usage_json_and_csv(world: World) -> None:
    s = world.ann.request_slice(fraction=0.5)
    world.ann.release(s["id"])
    rows = world.ann.usage(team="ml")
    mine = [r for r in rows if r["user"] == "ann"]
    assert mine and mine[0]["sessions"] >= 1 and mine[0]["peak_share"] >= 0.5
    assert any(r["user"] == "*" for r in rows)
    csv_text = world.ann.usage_csv(team="ml")
    assert csv_text.splitlines()[0] == (
        "month,team,user,device_seconds,memory_gib_seconds,sessions,peak_share"
    )
    # One parse and one message for a month, whatever is wrong with it.
    for bad in ("2026-13", "december", "2026-1"):
        for path in ("/v1/usage", "/v1/usage/groups"):
            status, body = http("GET", f"{world.url}{path}?month={bad}", world.ann_token)
            assert status == 400, (path, bad)
            assert "give a UTC month as YYYY-MM" in str(body), (path, bad, body)


def test_metrics_in_prometheus_format(world: World) -> None:
    s = world.ann.request_slice(fraction=0.5)
    status, text = http("GET", world.url + "/metrics", world.ann_token)
    assert status == 200
    assert 'tether_pool_device_allocated_share{node="gpu1",device="cuda:0"} 0.5' in text
    assert 'tether_pool_team_allocated_share{team="ml"} 0.5' in text
    assert "# TYPE tether_pool_placements_total counter" in text
    assert "tether_pool_queue_length 0.0" in text
    world.ann.release(s["id"])


def test_openapi_schema_is_served(world: World) -> None:
    status, schema = http("GET", world.url + "/v1/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    assert "/v1/sessions" in schema["paths"] and "/v1/usage" in schema["paths"]


# --------------------------------------------------------------------------- nodes


def test_cordon_drain_and_a_lost_node(world: World) -> None:
    s = world.ann.request_slice(fraction=0.5)
    assert world.admin.node_action("gpu1", "cordon")["status"] == "cordoned"
    with pytest.raises(Refused):
        world.ann.request_slice(fraction=0.25, wait=False)
    assert world.ann.session(s["id"])["state"] == "placed"  # cordon keeps leases
    assert world.admin.node_action("gpu1", "drain")["status"] == "drained"
    assert world.ann.session(s["id"])["end_reason"] == "drained"
    world.admin.node_action("gpu1", "uncordon")

    s = world.ann.request_slice(fraction=0.5)
    # Stop heartbeating: past the node timeout (3 s) the node is lost.
    ended = wait_until(
        lambda: (x := world.ann.session(s["id"]))["state"] == "ended" and x, timeout=60
    )
    assert ended["end_reason"] == "node-lost"
    assert world.admin.nodes()[0]["status"] == "lost"
    with pytest.raises(Refused):
        world.ann.request_slice(fraction=0.25, wait=False)
    back = world.node_beat([{"session_id": s["id"]}])
    assert back["status"] == "ready" and back["ended_sessions"] == [s["id"]]


def test_unreachable_pool_is_a_connect_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="cannot reach the pool"):
        PoolClient("http://127.0.0.1:9", "tu_x").me()


def test_a_pool_that_dies_mid_answer_is_a_connect_error() -> None:
    """Headers sent, body cut short (a pool killed between the two writes)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def answer_half() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 571\r\n\r\n{")

        server = threading.Thread(target=answer_half)
        server.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        try:
            with pytest.raises(ConnectError, match="in the middle of its answer"):
                PoolClient(url, "tu_x").release("abc")
        finally:
            server.join(timeout=30)


@pytest.mark.postgres
def test_the_server_runs_on_postgresql(tmp_path: Path) -> None:
    from ._pooltest import fresh_pg_schema

    with fresh_pg_schema() as url, run_pool_server(tmp_path, url) as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.add_member("ml", "admin")
        node = PoolClient(server.url, admin.create_token(kind="node")["token"])
        node.register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
        s = admin.request_slice(fraction=0.5, memory="8GiB")
        assert s["state"] == "placed" and s["ticket"]
        admin.release(s["id"])
        assert admin.usage(team="ml")[0]["sessions"] == 1
    # A second start on the same database: no new admin, same data.
    with fresh_pg_schema() as url:
        with run_pool_server(tmp_path / "a", url) as first:
            PoolClient(first.url, first.admin_token).create_team("kept")
        with run_pool_server(tmp_path / "b", url) as second:
            assert second.admin_token == ""  # the database had users: no new admin
            teams = PoolClient(second.url, first.admin_token).teams()
            assert [t["name"] for t in teams] == ["kept"]


def test_the_client_and_cli_import_none_of_the_servers_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tether.poolapi, tether.cli, tether._config\n"
        "import tether.cli._pool, tether.cli._admin, tether.cli._usage, tether.cli._node\n"
        "heavy = ('fastapi', 'pydantic', 'uvicorn', 'psycopg', 'starlette', 'sqlite3')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_node_heartbeat_carries_the_acceptors_metering(world: World) -> None:
    s = world.ann.request_slice(fraction=0.5)
    usage = {
        "wall_seconds": 12.5, "memory_hwm": 1 << 30, "memory_byte_seconds": 1e10,
        "device_memory_hwm": 2 << 30, "device_memory_byte_seconds": 2e10,
        "device_util_mean": 40.0, "device_util_max": 99.0, "samples": 25,
    }  # fmt: skip
    beat = world.node_beat([{"session_id": s["id"], **usage}])
    assert beat["ended_sessions"] == []
    got = world.ann.session(s["id"])
    # Figures are held to the lease's real time: it was placed just now, so a report
    # of 12.5 s (or of memory held that long) cannot be true and is cut down.
    span = got["last_heartbeat"] - got["started_at"]
    assert got["metering"] == {
        **usage,
        "wall_seconds": span,
        "memory_byte_seconds": min(1e10, (1 << 30) * span),
        "device_memory_byte_seconds": min(2e10, (2 << 30) * span),
    }
    status, body = http(
        "POST",
        world.url + "/v1/nodes/gpu1/heartbeat",
        world.node_token,
        {"sent_at": time.time(), "sessions": [{"session_id": s["id"], "device_util_mean": 250}]},
    )
    assert status == 400
    _error(status, body, "bad-request")
