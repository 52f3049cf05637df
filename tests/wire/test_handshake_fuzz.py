"""decode_handshake under hostile JSON: the fuzz rule holds for well-framed hellos too.

Two hellos once crashed the acceptor before authentication: a token with a
lone surrogate (valid JSON, ``"\\ud800"``, which no UTF-8 encoder accepts) and
deeply nested JSON (RecursionError). Garbage only ever raises ProtocolError,
and what decodes is safe to encode again.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire import Frame, Hello, Kind, decode_handshake
from tether.wire._messages import MAX_HANDSHAKE_DEPTH

#: Any code point, lone surrogates included (json.dumps escapes them as \udXXX).
ANY_TEXT = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _hello(body: Any) -> Frame:
    return Frame(kind=Kind.HELLO, flags=0, seq=0, meta=json.dumps(body).encode())


def _safe(decoded: object) -> None:
    """What decode_handshake returns can be encoded and walked without surprises."""
    if isinstance(decoded, Hello):
        decoded.token.encode("utf-8")
        json.dumps(decoded.info, ensure_ascii=False).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"protocol": st.integers(), "token": ANY_TEXT, "info": JSON}))
def test_any_json_hello_decodes_safely_or_raises_protocol_error(body: dict[str, Any]) -> None:
    with contextlib.suppress(ProtocolError):
        _safe(decode_handshake(_hello(body)))


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_any_json_body_only_raises_protocol_error(body: Any) -> None:
    with contextlib.suppress(ProtocolError):
        _safe(decode_handshake(_hello(body)))


@pytest.mark.parametrize("token", ["\ud800", "a\udfffb", "\udbff\udc00"[::-1]])
def test_a_token_with_a_lone_surrogate_is_a_protocol_error(token: str) -> None:
    with pytest.raises(ProtocolError, match="malformed handshake"):
        decode_handshake(_hello({"protocol": 2, "token": token}))


@pytest.mark.parametrize("depth", [MAX_HANDSHAKE_DEPTH, 1000, 100_000])
@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_deep_nesting_is_a_protocol_error(depth: int, opener: str, closer: str) -> None:
    nested = opener * depth + "1" + closer * depth  # with info's own {}, one level deeper
    meta = '{"protocol": 2, "token": "t", "info": {"x": ' + nested + "}}"
    with pytest.raises(ProtocolError, match="nested"):
        decode_handshake(Frame(kind=Kind.HELLO, flags=0, seq=0, meta=meta.encode()))


def test_a_real_clients_hello_is_well_within_the_depth_limit() -> None:
    info = {"values": ["numpy"], "client": {"host": "h", "pid": 1, "remote": ["torch"]}}
    assert decode_handshake(_hello({"protocol": 2, "token": "t", "info": info})).info == info
