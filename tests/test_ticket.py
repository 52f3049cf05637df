"""Session tickets: signed by the pool, verified offline by the acceptor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import AuthenticationError
from tether._ticket import (
    DEFAULT_CLOCK_SKEW_S,
    MAX_TICKET_CHARS,
    SessionTicket,
    TicketError,
    TicketExpired,
    TicketForged,
    TicketMalformed,
    TicketNotYetValid,
    TicketWrongNode,
    issue,
    node_key,
    verify,
)

SECRET = b"0123456789abcdef-pool-secret"
T0 = 1_800_000_000.0


def make(**kw: object) -> SessionTicket:
    fields: dict[str, object] = dict(
        session_id="lease-1",
        node="gpu7",
        device_ids=("cuda:0",),
        fraction=0.25,
        memory_bytes=8 << 30,
        team="ml",
        user="ada",
        issued_at=T0,
        expires_at=T0 + 300,
    )
    fields.update(kw)
    return SessionTicket(**fields)  # type: ignore[arg-type]


def test_round_trip_names_session_slice_team_and_expiry() -> None:
    key = node_key(SECRET, "gpu7")
    token = issue(key, make())
    assert token.startswith("tt1.") and token.count(".") == 2
    got = verify(key, token, now=T0 + 10, node="gpu7")
    assert got == make()


def test_every_failure_is_an_authentication_error() -> None:
    for cls in (TicketMalformed, TicketForged, TicketExpired, TicketNotYetValid, TicketWrongNode):
        assert issubclass(cls, TicketError)
        assert issubclass(cls, AuthenticationError)


def test_expired_beyond_skew_but_tolerated_within() -> None:
    key = node_key(SECRET, "gpu7")
    token = issue(key, make())
    # Inside the skew allowance: still fine.
    verify(key, token, now=T0 + 300 + DEFAULT_CLOCK_SKEW_S, node="gpu7")
    with pytest.raises(TicketExpired, match=r"expired 31s ago.*ask the pool for a new one"):
        verify(key, token, now=T0 + 300 + DEFAULT_CLOCK_SKEW_S + 1, node="gpu7")
    with pytest.raises(TicketExpired):
        verify(key, token, now=T0 + 301, node="gpu7", skew_s=0)


def test_issued_in_the_future_names_the_clock() -> None:
    key = node_key(SECRET, "gpu7")
    token = issue(key, make())
    verify(key, token, now=T0 - DEFAULT_CLOCK_SKEW_S, node="gpu7")
    with pytest.raises(TicketNotYetValid, match="clock"):
        verify(key, token, now=T0 - DEFAULT_CLOCK_SKEW_S - 5, node="gpu7")


def test_forged_signature_and_tampered_payload() -> None:
    key = node_key(SECRET, "gpu7")
    token = issue(key, make())
    with pytest.raises(TicketForged):
        verify(node_key(b"another-pool-secret-0000", "gpu7"), token, now=T0, node="gpu7")
    # Raise the fraction in the payload, keep the signature: forged.
    other = issue(key, make(fraction=1.0))
    spliced = ".".join([*other.split(".")[:2], token.split(".")[2]])
    with pytest.raises(TicketForged):
        verify(key, spliced, now=T0, node="gpu7")


def test_wrong_node_is_said_plainly() -> None:
    token = issue(node_key(SECRET, "gpu7"), make())
    with pytest.raises(TicketWrongNode, match="for node 'gpu7', not this node 'gpu8'"):
        verify(node_key(SECRET, "gpu8"), token, now=T0, node="gpu8")


def test_node_keys_differ_per_node_and_need_a_real_secret() -> None:
    assert node_key(SECRET, "a") != node_key(SECRET, "b")
    assert len(node_key(SECRET, "a")) == 32
    with pytest.raises(ValueError, match="16 random bytes"):
        node_key(b"short", "a")
    with pytest.raises(ValueError, match="16 bytes"):
        issue(b"short", make())


@pytest.mark.parametrize(
    "token",
    [
        "",
        "tt1",
        "tt1..",
        "tt2.abc.def",
        "tt1.!!!.abc",
        "x" * (MAX_TICKET_CHARS + 1),
    ],
)
def test_malformed(token: str) -> None:
    with pytest.raises(TicketMalformed):
        verify(node_key(SECRET, "gpu7"), token, now=T0, node="gpu7")


def test_signature_is_checked_before_the_payload_is_trusted() -> None:
    with pytest.raises(TicketForged):  # '{}' as payload, a made-up MAC
        verify(node_key(SECRET, "gpu7"), "tt1.e30.AAAA", now=T0, node="gpu7")


def test_non_string_is_malformed() -> None:
    with pytest.raises(TicketMalformed):
        verify(node_key(SECRET, "gpu7"), b"tt1.a.b", now=T0, node="gpu7")  # type: ignore[arg-type]


def test_ticket_fields_are_validated() -> None:
    with pytest.raises(TicketMalformed):
        make(fraction=1.5)
    with pytest.raises(TicketMalformed):
        make(expires_at=T0 - 1)
    with pytest.raises(TicketMalformed):
        make(device_ids=())


@given(st.text(max_size=300))
def test_garbage_only_raises_ticket_errors(text: str) -> None:
    with pytest.raises(TicketError):
        verify(node_key(SECRET, "gpu7"), text, now=T0, node="gpu7")


@given(st.binary(max_size=300))
def test_garbage_payload_behind_the_prefix_only_raises_ticket_errors(raw: bytes) -> None:
    import base64

    body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(TicketError):
        verify(node_key(SECRET, "gpu7"), f"tt1.{body}.{body}", now=T0, node="gpu7")
