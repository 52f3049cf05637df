"""The acceptor's ticket check, alone and behind a real listening Acceptor."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from acceptor_thread import running_acceptor

from tether._errors import AuthenticationError
from tether._ticket import SessionTicket, issue, node_key
from tether.acceptor._authorizer import TicketAuthorizer
from tether.acceptor._devices import Device
from tether.acceptor._limits import SLICE_ENV
from tether.acceptor._poolagent import registration_devices
from tether.acceptor._server import POOL_SESSION_ENV
from tether.client._connect import open_session
from tether.wire import PROTOCOL_VERSION, Hello

KEY = node_key(b"s" * 32, "gpu7")
CPU = Device(
    id="cpu:0", vendor="cpu", model="Test CPU", index=0, pin="", memory_total=8 << 30,
    memory_free=4 << 30, cores=2,
)  # fmt: skip


def ticket(*, node: str = "gpu7", device: str = "cpu:0", age: float = 0.0, ttl: float = 300.0,
           key: bytes = KEY) -> str:  # fmt: skip
    now = time.time() - age
    return issue(
        key,
        SessionTicket(
            session_id="s-123", node=node, device_ids=(device,), fraction=0.5,
            memory_bytes=256 << 20, team="ml", user="ann", issued_at=now, expires_at=now + ttl,
        ),
    )  # fmt: skip


def hello(token: str) -> Hello:
    return Hello(protocol=PROTOCOL_VERSION, token=token, info={})


def registered() -> TicketAuthorizer:
    auth = TicketAuthorizer("gpu7", [CPU])
    auth.key = KEY
    return auth


def test_a_valid_ticket_becomes_the_workers_slice() -> None:
    ok, reason, env = registered()(hello(ticket()))
    assert ok and reason == ""
    assert env[POOL_SESSION_ENV] == "s-123"
    limits = json.loads(env[SLICE_ENV])
    assert limits["device_ids"] == ["cpu:0"]
    assert limits["memory_limit"] == 256 << 20
    assert limits["compute_share"] == 0.5


# Tickets are made when the test runs, not when it is collected: a suite that runs
# longer than a ticket's lifetime (300 s) would see every one of them expired.
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ticket(age=400), "expired"),
        (lambda: ticket(key=node_key(b"x" * 32, "gpu7")), "signature does not match"),
        (lambda: ticket(node="gpu8"), "for node 'gpu8'"),
        (lambda: ticket(device="nvidia:GPU-0"), "no longer offers"),
        (lambda: "hunter2", "not a Tether session ticket"),
    ],
    ids=["expired", "forged", "wrong-node", "unknown-device", "not-a-ticket"],
)
def test_bad_tickets_are_refused_with_the_reason(make: Callable[[], str], message: str) -> None:
    ok, reason, env = registered()(hello(make()))
    assert not ok and message in reason and env == {}


def test_nothing_is_admitted_before_the_node_registered() -> None:
    ok, reason, _env = TicketAuthorizer("gpu7", [CPU])(hello(ticket()))
    assert not ok and "has not registered" in reason


def test_registration_records_carry_the_devices_and_frameworks() -> None:
    from tether.acceptor._devices import Framework

    (record,) = registration_devices([CPU], [Framework(name="torch", version="2.13.0")])
    assert record == {
        "id": "cpu:0", "vendor": "cpu", "model": "Test CPU", "memory": 8 << 30, "arch": "",
        "frameworks": {"torch": "2.13.0"},
    }  # fmt: skip


@pytest.fixture
def acceptor_url() -> Iterator[str]:
    """A real Acceptor on loopback with a registered TicketAuthorizer, in a thread."""
    with running_acceptor(registered()) as url:
        yield url


def test_the_client_sees_an_expired_ticket_as_authentication_error(acceptor_url: str) -> None:
    with pytest.raises(AuthenticationError, match=r"expired .* ask the pool for a new one"):
        open_session(acceptor_url, ticket(age=400))


# ----------------------------------------------------------------- one ticket, one session


def _settle(verdict: object) -> tuple[bool, str, dict[str, str]]:
    """The authorizer's verdict, awaited when it had to ask the pool."""
    import asyncio
    import inspect

    if inspect.isawaitable(verdict):

        async def wait() -> object:
            return await verdict  # type: ignore[misc]

        verdict = asyncio.run(wait())
    ok, reason, env = verdict  # type: ignore[misc]
    return ok, reason, dict(env)


def test_a_ticket_opens_one_session_even_after_the_first_ended() -> None:
    auth = registered()
    token = ticket()
    assert auth(hello(token))[0]
    ok, reason, _env = auth(hello(token))  # type: ignore[misc]
    assert not ok and "used already" in reason


def test_the_pools_refusal_at_connect_refuses_the_session() -> None:
    from tether.poolapi import Gone

    def pool_says(_ticket: str) -> list[bytes]:
        raise Gone("session s-123's lease has ended (released): its ticket opens nothing")

    auth = registered()
    auth.checker = pool_says
    ok, reason, env = _settle(auth(hello(ticket())))
    assert not ok and "has ended (released)" in reason and env == {}


def test_an_unreachable_pool_leaves_the_decision_to_the_ticket() -> None:
    from tether._errors import ConnectError

    def pool_down(_ticket: str) -> list[bytes]:
        raise ConnectError("cannot reach the pool")

    auth = registered()
    auth.checker = pool_down
    ok, _reason, env = _settle(auth(hello(ticket())))
    assert ok and env[POOL_SESSION_ENV] == "s-123"


def test_a_key_from_a_rotated_secret_is_fetched_at_connect() -> None:
    new = node_key(b"n" * 32, "gpu7", "reg")
    asked: list[str] = []

    def pool_keys(token: str) -> list[bytes]:
        asked.append(token)
        return [new, KEY]

    auth = registered()  # holds only the old key
    auth.checker = pool_keys
    token = ticket(key=new)
    ok, _reason, _env = _settle(auth(hello(token)))
    assert ok and asked == [token] and auth.keys == (new, KEY)


def test_a_forged_ticket_stays_forged_when_the_pool_knows_no_better() -> None:
    auth = registered()
    auth.checker = lambda _t: [KEY]
    ok, reason, _env = _settle(auth(hello(ticket(key=node_key(b"x" * 32, "gpu7")))))
    assert not ok and "signature does not match" in reason
