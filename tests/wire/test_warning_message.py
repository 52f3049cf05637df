"""The WARNING frame's body: encoding, validation and its place in the state table."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire import PROTOCOL_VERSION, Connection, Frame, Kind, Role, State
from tether.wire._messages import RemoteWarning, decode_warning, encode_warning

LINEAGE = (
    ("torch.jit", "TracerWarning"),
    ("builtins", "Warning"),
    ("builtins", "Exception"),
    ("builtins", "BaseException"),
)


def _body(**changes: object) -> bytes:
    body: dict[str, object] = {
        "category": [list(p) for p in LINEAGE],
        "message": "careful",
        "filename": "/srv/torch/jit/_trace.py",
        "lineno": 12,
        "module": "torch.jit._trace",
        "line": "    warnings.warn(msg)\n",
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not _MISSING}).encode()


_MISSING = object()


def test_a_warning_round_trips() -> None:
    w = RemoteWarning(
        category=LINEAGE,
        message="caf\u00e9 \udc80 \U0001f600",
        filename="",
        lineno=0,
        module="",
        line=None,
    )
    meta = encode_warning(w)
    assert meta.isascii()
    assert decode_warning(meta) == w
    assert decode_warning(_body()).category == LINEAGE


@pytest.mark.parametrize(
    "meta",
    [
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b"[" * 100_000,
        _body(evil=1),
        _body(category=[]),
        _body(category=[["builtins"]]),
        _body(category=[["builtins", ""]]),
        _body(category=[["builtins", 3]]),
        _body(category="builtins.UserWarning"),
        _body(category=[["m", "C"]] * 65),
        _body(message=None),
        _body(message=["a"]),
        _body(filename=1),
        _body(module=None),
        _body(lineno=-1),
        _body(lineno=2**31),
        _body(lineno=1.5),
        _body(lineno=True),
        _body(line=7),
        _body(message=_MISSING),
        _body(lineno=_MISSING),
    ],
)
def test_malformed_warnings_raise_protocol_error(meta: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_warning(meta)


@given(st.binary(max_size=256))
def test_warning_garbage_only_raises_protocol_error(meta: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_warning(meta)


@given(
    st.dictionaries(
        st.sampled_from(["category", "message", "filename", "lineno", "module", "line", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=8,
        ),
    )
)
def test_warning_bodies_of_any_json_only_raise_protocol_error(body: dict[str, object]) -> None:
    with contextlib.suppress(ProtocolError):
        decode_warning(json.dumps(body).encode())


def test_only_the_worker_sends_warnings_and_only_in_an_open_session() -> None:
    assert PROTOCOL_VERSION >= 2  # older peers do not know Kind.WARNING
    frame = Frame(kind=Kind.WARNING, flags=0, seq=0, meta=_body())
    client = Connection(Role.CLIENT, State.OPEN)
    assert client.check_incoming(frame) is frame
    with pytest.raises(ProtocolError):
        client.check_outgoing(Kind.WARNING)
    worker = Connection(Role.SERVER, State.OPEN)
    worker.check_outgoing(Kind.WARNING)
    with pytest.raises(ProtocolError):
        worker.check_incoming(frame)
    with pytest.raises(ProtocolError):
        Connection(Role.CLIENT).check_incoming(frame)  # still in the handshake
