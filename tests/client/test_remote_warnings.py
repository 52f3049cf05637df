"""Warnings issued in the worker: the engine queues them among the output, and
the client re-issues them under the script's own filters (no worker process:
the worker's protocol is driven directly, the client reads frames from a socket pair)."""

from __future__ import annotations

import json
import pickle
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tether import ProtocolError
from tether.acceptor._protocol import WorkerProtocol
from tether.acceptor._worker import warning_meta
from tether.client._session import Session
from tether.transport import Channel
from tether.wire import Flag, FrameDecoder, Kind, Role, State
from tether.wire._frames import frame_bytes
from tether.wire._messages import decode_warning


class FrameyWarning(UserWarning):
    """A category the client has itself (as the script's own would be)."""


def _sent(protocol: WorkerProtocol) -> list[tuple[int, int, bytes]]:
    decoder = FrameDecoder()
    decoder.feed(frame_bytes(protocol.data_to_send()))
    sent = []
    while (frame := decoder.next_frame()) is not None:
        sent.append((frame.kind, frame.flags, bytes(frame.meta)))
    return sent


def test_warnings_keep_their_place_among_the_output() -> None:
    protocol = WorkerProtocol()
    protocol.write_output("a", stderr=False)
    protocol.write_output("b", stderr=False)
    protocol.write_warning('{"w": 1}')
    protocol.write_output("c", stderr=True)
    protocol.write_warning('{"w": 2}')
    protocol.write_warning('{"w": 3}')
    protocol.write_output("d", stderr=False)
    protocol.flush_output()
    assert _sent(protocol) == [
        (Kind.OUTPUT, Flag.NONE, b"ab"),
        (Kind.WARNING, 0, b'{"w": 1}'),
        (Kind.OUTPUT, Flag.STDERR, b"c"),
        (Kind.WARNING, 0, b'{"w": 2}'),
        (Kind.WARNING, 0, b'{"w": 3}'),
        (Kind.OUTPUT, Flag.NONE, b"d"),
    ]
    assert protocol.touched  # the call that warned stops being pipelined


def test_the_worker_describes_a_warning_by_lineage_and_place() -> None:
    meta = warning_meta(FrameyWarning("x"), FrameyWarning, __file__, 7, None)
    w = decode_warning(meta.encode())
    assert w.category[:2] == ((__name__, "FrameyWarning"), ("builtins", "UserWarning"))
    assert (w.message, w.filename, w.lineno) == ("x", __file__, 7)
    assert w.line == "import json\n"  # line 7 of this file
    # Attributed to Tether's own frames: the client picks the script's line.
    import tether.acceptor._engine as engine_module

    inner = decode_warning(warning_meta("y", UserWarning, engine_module.__file__, 3, None).encode())
    assert (inner.filename, inner.lineno, inner.line) == ("", 0, None)


@pytest.fixture
def pair() -> Iterator[tuple[Session, Channel]]:
    a, b = socket.socketpair()
    session = Session(Channel(a, Role.CLIENT, state=State.OPEN), address="test", session_id="s")
    worker = Channel(b, Role.SERVER, state=State.OPEN)
    yield session, worker
    session.channel.close()
    worker.close()


def _warning(category: tuple[tuple[str, str], ...], message: str, **kw: Any) -> bytes:
    body = {"category": category, "message": message, "filename": "", "lineno": 0}
    body.update({"module": "", "line": None, **kw})
    return json.dumps(body).encode()


def _reply(worker: Channel, seq: int, value: Any) -> None:
    worker.send(Kind.REPLY, 0, seq, pickle.dumps(((), pickle.dumps(value))))
    worker.flush()


USER = (("builtins", "UserWarning"), ("builtins", "Warning"), ("builtins", "Exception"))
OWN = ((__name__, "FrameyWarning"), *USER)
REMOTE = (("faraway.module", "FarWarning"), ("builtins", "DeprecationWarning"))


def test_warnings_are_reissued_under_the_clients_filters(
    pair: tuple[Session, Channel], capsys: pytest.CaptureFixture[str]
) -> None:
    session, worker = pair
    worker.send(Kind.OUTPUT, 0, 0, b"before\n")
    worker.send(Kind.WARNING, 0, 0, _warning(USER, "plain"))
    worker.send(Kind.WARNING, 0, 0, _warning(OWN, "own"))
    worker.send(Kind.WARNING, 0, 0, _warning(REMOTE, "far", filename="/x/far.py", lineno=3))
    worker.send(Kind.WARNING, 0, 0, _warning(USER, "ignored"))
    _reply(worker, 1, 42)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="ignored")
        assert session._wait(1) == (42, 0)
    assert capsys.readouterr().out == "before\n"
    assert [(w.category.__name__, str(w.message)) for w in caught] == [
        ("UserWarning", "plain"),
        ("FrameyWarning", "own"),
        ("FarWarning", "far"),
    ]
    assert caught[0].category is UserWarning
    assert caught[1].category is FrameyWarning
    assert issubclass(caught[2].category, DeprecationWarning)
    # No place from the worker: the line of the code that was waiting (here).
    assert caught[0].filename == __file__
    assert (caught[2].filename, caught[2].lineno) == ("/x/far.py", 3)


def test_default_action_shows_a_repeated_warning_once(pair: tuple[Session, Channel]) -> None:
    session, worker = pair
    for _ in range(3):
        worker.send(Kind.WARNING, 0, 0, _warning(REMOTE, "again", filename="/x/far.py", lineno=3))
    _reply(worker, 1, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        session._wait(1)
    assert len(caught) == 1


def test_an_error_filter_raises_once_the_reply_is_in(pair: tuple[Session, Channel]) -> None:
    session, worker = pair
    worker.send(Kind.WARNING, 0, 0, _warning(OWN, "stop here"))
    worker.send(Kind.WARNING, 0, 0, _warning(USER, "never reached"))
    _reply(worker, 1, 1)
    worker.send(Kind.OUTPUT, 0, 0, b"next\n")
    _reply(worker, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FrameyWarning, match="stop here"):
            session._wait(1)
        # The reply was consumed: the session goes on with the next call.
        assert session._wait(2) == (2, 0)


@pytest.mark.parametrize(
    "meta",
    [
        b"not json",
        _warning((("builtins", "ValueError"), ("builtins", "Exception")), "no warning"),
        _warning((("faraway", "Thing"), ("builtins", "KeyError")), "no warning"),
        _warning(USER, "m", lineno=-3),
    ],
)
def test_a_malformed_warning_is_a_protocol_error(
    pair: tuple[Session, Channel], meta: bytes
) -> None:
    session, worker = pair
    worker.send(Kind.WARNING, 0, 0, meta)
    _reply(worker, 1, None)
    with pytest.raises(ProtocolError):
        session._wait(1)
