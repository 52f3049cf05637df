"""Handshake encoding and the per-role state table."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire import (
    PROTOCOL_VERSION,
    Connection,
    Frame,
    FrameDecoder,
    Hello,
    Kind,
    Refused,
    Role,
    State,
    Welcome,
    decode_handshake,
    encode_handshake,
    frame_bytes,
)


def _frame(msg: Hello | Welcome | Refused) -> Frame:
    dec = FrameDecoder()
    dec.feed(frame_bytes(encode_handshake(msg)))
    f = dec.next_frame()
    assert f is not None
    return f


@pytest.mark.parametrize(
    "msg",
    [
        Hello(protocol=PROTOCOL_VERSION, token="t", info={"values": ["numpy"]}),
        Welcome(protocol=PROTOCOL_VERSION, session="abc", info={"pid": 1}),
        Refused(reason="wrong token", code="auth"),
    ],
)
def test_handshake_round_trip(msg: Hello | Welcome | Refused) -> None:
    assert decode_handshake(_frame(msg)) == msg


def test_handshake_rejects_unknown_fields_and_bad_types() -> None:
    for body in ({"protocol": 1, "token": "t", "evil": 1}, {"protocol": "1", "token": "t"}, [1]):
        frame = Frame(kind=Kind.HELLO, flags=0, seq=0, meta=json.dumps(body).encode())
        with pytest.raises(ProtocolError):
            decode_handshake(frame)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=128))
def test_handshake_garbage_only_raises_protocol_error(kind: int, meta: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_handshake(Frame(kind=kind, flags=0, seq=0, meta=meta))


def test_connection_states_follow_the_table() -> None:
    client = Connection(Role.CLIENT)
    client.check_outgoing(Kind.HELLO)
    with pytest.raises(ProtocolError):
        client.check_outgoing(Kind.CALL)  # not before the welcome
    client.check_incoming(Frame(kind=Kind.WELCOME, flags=0, seq=0, meta=b"{}"))
    assert client.state is State.OPEN
    client.check_outgoing(Kind.CALL)
    with pytest.raises(ProtocolError):
        client.check_incoming(Frame(kind=Kind.CALL, flags=0, seq=0, meta=b""))  # wrong direction
    client.check_outgoing(Kind.BYE)
    assert client.state is State.CLOSED


def test_server_refusal_closes() -> None:
    server = Connection(Role.SERVER)
    server.check_incoming(Frame(kind=Kind.HELLO, flags=0, seq=0, meta=b"{}"))
    server.check_outgoing(Kind.REFUSED)
    assert server.state is State.CLOSED


def test_call_batches_round_trip_and_reject_bad_lengths() -> None:
    from tether.wire._ops import pack_batch, unpack_batch

    metas = [b"", b"a", b"x" * 300]
    assert unpack_batch(pack_batch(metas)) == metas
    with pytest.raises(ProtocolError):
        unpack_batch(pack_batch(metas)[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_call_batch_garbage_only_raises_protocol_error(meta: bytes) -> None:
    from tether.wire._ops import unpack_batch

    with contextlib.suppress(ProtocolError):
        unpack_batch(meta)
