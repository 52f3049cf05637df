"""The client's protocol in memory: calls in, frames and events out, no sockets.

The worker's end is either written by hand (exact frames) or the real one
(:class:`~tether.acceptor._shell.WorkerShell`: its protocol and engine), fed
the protocol's bytes and answering with frames the protocol reads one byte at
a time.
"""

from __future__ import annotations

import operator
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _protocol_pair import ProtocolPair, Proxy
from tether import DeviceLost, ProtocolError, SessionClosed
from tether.acceptor._engine import Engine
from tether.client._events import (
    Event,
    Exhausted,
    Failed,
    Lost,
    Output,
    Reply,
    Request,
    Retyped,
    WarningFrame,
)
from tether.client._predict import HandleOf
from tether.client._protocol import (
    FLUSH_EVERY,
    RELEASE_BATCH,
    TRANSITIONS,
    ClientProtocol,
    Input,
    State,
)
from tether.wire import Flag, Frame, FrameDecoder, Kind
from tether.wire._frames import encode_frame, frame_bytes
from tether.wire._messages import TOUCHED_NOTICE
from tether.wire._ops import NONE, RELEASE_TAG, Handle, unpack_batch, unpack_ids


def frames(proto: ClientProtocol) -> list[Frame]:
    """What the protocol wants written, decoded."""
    dec = FrameDecoder()
    dec.feed(frame_bytes(proto.data_to_send()))
    out = []
    while (f := dec.next_frame()) is not None:
        out.append(f)
    assert dec.at_boundary()
    return out


def heads(proto: ClientProtocol) -> list[tuple[int, int, int]]:
    return [(f.kind, f.flags, f.seq) for f in frames(proto)]


def frame(kind: int, flags: int = 0, seq: int = 0, meta: bytes = b"") -> Frame:
    return Frame(kind=kind, flags=flags, seq=seq, meta=meta)


CALL, SYNC, BATCH = int(Kind.CALL), int(Flag.SYNC), int(Flag.BATCH)


# -- calls out -------------------------------------------------------------------------
def test_pipelined_calls_wait_and_go_as_one_batch_before_the_sync_call() -> None:
    p = ClientProtocol()
    assert [p.call(b"\x80a", sync=False), p.call(b"\x80b", sync=False)] == [1, 2]
    assert p.data_to_send() == [] and p.unsynced
    assert p.call(b"\x80s", sync=True) == 3 and p.awaiting == 3
    out = frames(p)
    assert [(f.kind, f.flags, f.seq) for f in out] == [(CALL, BATCH, 1), (CALL, SYNC, 3)]
    assert unpack_batch(out[0].meta) == [b"\x80a", b"\x80b"]
    assert p.stats == {"sync": 1, "async": 2}


def test_a_lone_pipelined_call_is_a_plain_call_frame() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.emit_batch()
    assert heads(p) == [(CALL, 0, 1)]


def test_a_full_batch_asks_to_be_written() -> None:
    p = ClientProtocol()
    for i in range(FLUSH_EVERY - 1):
        p.call(b"\x80%d" % i, sync=False)
        assert not p.flush_due
    p.call(b"\x80last", sync=False)
    assert p.flush_due
    assert heads(p) == [(CALL, BATCH, 1)] and not p.flush_due


def test_a_big_call_fills_a_batch_by_bytes() -> None:
    p = ClientProtocol()
    p.call(b"\x80" + bytes(300_000), sync=False)
    assert p.flush_due


def test_calls_with_buffers_and_nested_calls_go_alone_at_once() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.call(b"\x80b", (b"raw",), sync=False)
    p.call(b"\x80c", sync=False, nested=True)
    out = frames(p)
    assert [(f.flags, f.seq) for f in out] == [(0, 1), (0, 2), (int(Flag.NESTED), 3)]
    assert bytes(out[1].buffers[0]) == b"raw"


def test_namespace_entries_ride_in_the_batch_without_a_number() -> None:
    p = ClientProtocol()
    p.names(b"\x03names")
    p.call(b"\x80a", sync=False)
    p.call(b"\x80s", sync=True)
    out = frames(p)
    assert (out[0].flags, out[0].seq) == (BATCH, 1)
    assert unpack_batch(out[0].meta) == [b"\x03names", b"\x80a"]
    assert out[1].seq == 2


# -- releases --------------------------------------------------------------------------
def test_releases_go_in_the_batch_after_the_calls_queued_before_them() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.release(7)  # after call 1
    for c in (b"\x80b", b"\x80c", b"\x80d", b"\x80e"):
        p.call(c, sync=False)
    p.emit_batch()
    (out,) = frames(p)
    entries = unpack_batch(out.meta)
    where = next(i for i, e in enumerate(entries) if e[:1] == RELEASE_TAG)
    assert unpack_ids(entries[where][1:]) == [7]
    assert 1 <= where <= 4 and [e for e in entries if e[:1] != RELEASE_TAG] == [
        b"\x80a",
        b"\x80b",
        b"\x80c",
        b"\x80d",
        b"\x80e",
    ]


def test_releases_with_no_batch_go_in_a_release_frame_before_a_sync_call() -> None:
    p = ClientProtocol()
    p.release(3)
    p.release(4)
    p.call(b"\x80s", sync=True)
    out = frames(p)
    assert [f.kind for f in out] == [int(Kind.RELEASE), CALL]
    assert unpack_ids(out[0].meta) == [3, 4]


def test_many_releases_are_sent_without_waiting_for_a_sync() -> None:
    p = ClientProtocol()
    for hid in range(RELEASE_BATCH):
        p.release(hid)
    p.call(b"\x80a", sync=False)
    out = frames(p)
    assert [f.kind for f in out] == [int(Kind.RELEASE)]
    assert unpack_ids(out[0].meta) == list(range(RELEASE_BATCH))


def test_release_now_sends_the_queued_calls_first() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.release(9)
    p.send_released()
    out = frames(p)
    assert [f.kind for f in out] == [CALL]
    assert unpack_batch(out[0].meta)[1][:1] == RELEASE_TAG


def test_releases_after_close_are_dropped() -> None:
    p = ClientProtocol()
    p.close()
    p.data_to_send()
    p.release(1)
    with pytest.raises(SessionClosed):
        p.send_released()


# -- frames in -------------------------------------------------------------------------
def test_the_awaited_reply_ends_the_wait_and_the_stale_one_is_skipped() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=True)
    p.call(b"\x80b", sync=True)  # the wait for 1 was interrupted (Ctrl-C)
    assert p.receive_frame(frame(Kind.REPLY, seq=1, meta=b"old")) is None
    assert p.receive_frame(frame(Kind.REPLY, seq=2, meta=b"v")) == Reply(2, 0, b"v", ())
    assert not p.unsynced


def test_a_wait_nested_in_answering_a_request_ends_first_then_the_outer_one() -> None:
    p = ClientProtocol()
    p.call(b"\x80outer", sync=True)
    assert p.receive_frame(frame(Kind.REQUEST, 0, 1, b"q")) == Request(1, b"q", ())
    p.call(b"\x80inner", sync=True, nested=True)  # the script's code, serving it
    assert p.receive_frame(frame(Kind.REPLY, seq=2, meta=b"in")) == Reply(2, 0, b"in", ())
    assert p.receive_frame(frame(Kind.REPLY, seq=1, meta=b"out")) == Reply(1, 0, b"out", ())
    assert p.awaiting == 0


def test_an_abandoned_wait_skips_its_late_reply() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=True)
    p.abandon(1)  # Ctrl-C while waiting
    p.call(b"\x80b", sync=True)
    assert p.receive_frame(frame(Kind.REPLY, seq=1)) is None
    assert p.receive_frame(frame(Kind.REPLY, seq=2)) == Reply(2, 0, b"", ())


def test_a_reply_from_the_future_is_a_protocol_error() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=True)
    with pytest.raises(ProtocolError):
        p.receive_frame(frame(Kind.REPLY, seq=5))


def test_a_deferred_error_is_raised_at_the_sync_point_and_the_worker_resumed() -> None:
    p = ClientProtocol()
    p.call(b"\x80pipelined", sync=False)
    p.call(b"\x80sync", sync=True)
    frames(p)
    event = p.receive_frame(frame(Kind.REPLY, Flag.ERROR | Flag.DEFERRED, 2, b"err"))
    assert event == Failed(2, b"err", deferred=True)
    assert heads(p) == [(int(Kind.RESUME), 0, 0)]


def test_an_error_of_the_sync_call_itself_needs_no_resume() -> None:
    p = ClientProtocol()
    p.call(b"\x80sync", sync=True)
    frames(p)
    assert p.receive_frame(frame(Kind.REPLY, Flag.ERROR, 1, b"e")) == Failed(1, b"e", False)
    assert frames(p) == []


def test_the_end_of_an_iteration_is_a_flag() -> None:
    p = ClientProtocol()
    p.call(b"\x80next", sync=True)
    assert p.receive_frame(frame(Kind.REPLY, Flag.EXHAUSTED, 1)) == Exhausted(1)


def test_a_notice_stops_pipelining_the_site_of_that_call() -> None:
    p = ClientProtocol()
    p.predictions.learn("site", HandleOf(3))
    assert p.plan("site") == HandleOf(3)
    seq = p.call(b"\x80a", sync=False)
    p.predictions.sent(seq, "site")
    assert p.receive_frame(frame(Kind.NOTICE, seq=seq, meta=b"mispredicted")) is None
    assert p.plan("site") is None
    assert p.predictions.is_never("site")


def test_a_notice_of_another_class_hands_back_what_was_made_for_the_call() -> None:
    p = ClientProtocol()
    p.predictions.learn("site", HandleOf(3))
    made = [p.call(b"\x80a", sync=False) for _ in range(3)]
    for seq in made:
        p.predictions.sent(seq, "site", lambda seq=seq: f"proxy {seq}")
    desc = (9, "numpy", "float64", "float64", (), frozenset(), frozenset())
    retyped = p.receive_frame(
        frame(Kind.NOTICE, seq=made[0], meta=pickle.dumps(("mispredicted", "x", 9, [desc])))
    )
    assert isinstance(retyped, Retyped)
    assert (retyped.result(), retyped.tid, retyped.types) == ("proxy 1", 9, (desc,))
    assert p.predictions.is_never("site")
    # A notice that names no class (a None, a changed list) asks nothing of the proxy.
    notice = pickle.dumps(("mispredicted", "result changed shape"))
    assert p.receive_frame(frame(Kind.NOTICE, seq=made[1], meta=notice)) is None
    # Once the calls are known to have run, nothing is kept for them.
    p.predictions.synced()
    late = pickle.dumps(("mispredicted", "x", 9, []))
    assert p.receive_frame(frame(Kind.NOTICE, seq=made[2], meta=late)) is None


def test_a_notice_that_a_call_used_the_client_makes_the_next_call_wait() -> None:
    p = ClientProtocol()
    p.predictions.learn("site", HandleOf(3))
    seq = p.call(b"\x80a", sync=False)
    p.predictions.sent(seq, "site")
    assert p.receive_frame(frame(Kind.NOTICE, seq=seq, meta=TOUCHED_NOTICE)) is None
    assert p.plan("site") is None and not p.predictions.is_never("site")
    p.predictions.learn("site", HandleOf(3))  # the next call waited and used nothing
    assert p.plan("site") == HandleOf(3)


def test_the_try_block_check_is_injected() -> None:
    catching = [False]
    p = ClientProtocol(in_handler=lambda: catching[0])
    p.predictions.learn("site", HandleOf(3))
    assert p.plan("site") == HandleOf(3)
    catching[0] = True
    assert p.plan("site") is None  # inside a try that could catch it: wait for it


def test_output_warnings_and_requests_are_events() -> None:
    p = ClientProtocol()
    assert p.receive_frame(frame(Kind.OUTPUT, Flag.STDERR, 0, b"x")) == Output(b"x", True)
    assert p.receive_frame(frame(Kind.WARNING, 0, 0, b"{}")) == WarningFrame(b"{}")
    assert p.receive_frame(frame(Kind.REQUEST, 0, 4, b"q")) == Request(4, b"q", ())
    p.respond(4, b"a", (), error=False)
    assert heads(p) == [(int(Kind.RESPONSE), 0, 4)]


# -- states ----------------------------------------------------------------------------
def test_the_transition_table_covers_every_state_and_input() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in State for i in Input}
    assert all(TRANSITIONS[State.CLOSED, i] is State.CLOSED for i in Input)


def test_the_workers_last_word_loses_the_session() -> None:
    p = ClientProtocol(session_id="s1", address="tcp://h:1")
    assert p.receive_frame(frame(Kind.NOTICE, seq=0, meta=b"killed")) == Lost("killed")
    message = p.lose("killed")
    assert p.state is State.LOST and p.lost and "s1" in message and "killed" in message
    with pytest.raises(DeviceLost, match="killed"):
        p.call(b"\x80a", sync=False)
    p.close()  # no BYE to a worker that is gone
    assert p.state is State.CLOSED and p.lost and frames(p) == []
    with pytest.raises(DeviceLost):
        p.check_open()


def test_close_sends_the_queued_calls_then_bye() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.close()
    assert heads(p) == [(CALL, 0, 1), (int(Kind.BYE), 0, 0)]
    with pytest.raises(SessionClosed):
        p.call(b"\x80b", sync=False)


def test_abort_sends_nothing_queued() -> None:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.call(b"\x80b", (b"buf",), sync=False)
    p.abort()
    assert p.state is State.CLOSED and frames(p) == []


# -- bytes in, any chunking --------------------------------------------------------------
_WORKER_FRAMES = [
    (Kind.OUTPUT, 0, 0, b"hello\n", ()),
    (Kind.NOTICE, 0, 1, pickle.dumps(("mispredicted", "x")), ()),
    (Kind.REQUEST, 0, 9, b"\x80req", (b"buffer",)),
    (Kind.BEAT, 0, 0, b"", ()),
    (Kind.REPLY, 0, 2, b"\x80value", (b"b1", b"b2")),
]
_WIRE = b"".join(frame_bytes(encode_frame(*f)) for f in _WORKER_FRAMES)


def _feed(chunks: list[bytes]) -> list[Event]:
    p = ClientProtocol()
    p.call(b"\x80a", sync=False)
    p.call(b"\x80b", sync=True)
    events: list[Event] = []
    for chunk in chunks:
        events += p.receive_data(chunk)
    return events


def test_bytes_fed_one_at_a_time_give_the_same_events() -> None:
    whole = _feed([_WIRE])
    assert [type(e) for e in whole] == [Output, Request, Reply]
    assert _feed([_WIRE[i : i + 1] for i in range(len(_WIRE))]) == whole


@settings(deadline=None)
@given(st.lists(st.integers(1, len(_WIRE)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [_WIRE[a:b] for a, b in zip([0, *points], [*points, len(_WIRE)], strict=True)]
    assert _feed(chunks) == _feed([_WIRE])


def test_a_frame_only_the_worker_may_not_send_is_refused() -> None:
    p = ClientProtocol()
    with pytest.raises(ProtocolError):
        p.receive_data(frame_bytes(encode_frame(Kind.CALL, 0, 1, b"\x80")))


# -- back to back with the worker's engine (tests/_protocol_pair.py) ---------------------
def _tid(engine: Engine, cls: type) -> int:
    return engine.types.tid(cls)


def test_pipelined_results_are_used_by_later_calls_and_read_at_the_sync() -> None:
    pair = ProtocolPair()
    pair.call(operator.mul, 3.0, 2, shape=Handle(1, _tid(pair.engine, float)))
    pair.call(operator.add, Proxy(1), 1.5, shape=Handle(2, _tid(pair.engine, float)))
    assert pair.deliver() == [] and 2 not in pair.engine.handles  # queued, not yet written
    pair.client.emit_batch()  # as before a flush
    assert pair.deliver() == [] and pair.engine.handles[2] == 7.5  # ran, answered nothing
    pair.call(operator.truth, Proxy(2))
    (reply,) = pair.deliver()
    assert isinstance(reply, Reply) and reply.seq == 3


def test_a_failed_pipelined_call_surfaces_at_the_next_sync_and_resume_reopens() -> None:
    pair = ProtocolPair()
    pair.call(operator.truediv, 1, 0, shape=NONE)  # fails in the worker
    pair.call(operator.add, 1, 2, shape=NONE)  # skipped
    pair.call(operator.add, 1, 2)
    (event,) = pair.deliver()
    assert isinstance(event, Failed) and event.deferred and event.seq == 3
    assert pair.worker.protocol.failed is not None
    pair.call(operator.add, 2, 2)  # the RESUME goes first
    (event,) = pair.deliver()
    assert isinstance(event, Reply) and pair.worker.protocol.failed is None


def test_a_misprediction_comes_back_as_a_notice_for_its_site() -> None:
    pair = ProtocolPair()
    pair.client.predictions.learn("mul", HandleOf(_tid(pair.engine, float)))
    seq = pair.call(operator.mul, 3, 2, shape=Handle(1, _tid(pair.engine, float)))  # an int
    pair.client.predictions.sent(seq, "mul")
    pair.call(operator.add, 1, 1)
    (event,) = pair.deliver()
    assert isinstance(event, Reply)
    assert pair.client.plan("mul") is None


def test_released_handles_are_freed_in_the_worker() -> None:
    pair = ProtocolPair()
    pair.call(operator.add, 1.0, 1.0, shape=Handle(1, _tid(pair.engine, float)))
    pair.client.release(1)
    pair.call(operator.add, 1, 1)
    pair.deliver()
    assert 1 not in pair.engine.handles


# Any mix of pipelined, failing, sync calls and releases, back to back: one
# property test for both ends, in tests/acceptor/test_protocol.py.


# No deadline: a flipped length byte may announce a big frame, and the decoder's
# first buffer for it takes as long as the machine's load makes it.
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.data())
def test_garbage_from_the_worker_only_raises_protocol_error(
    seed: bytes, data: st.DataObject
) -> None:
    """Random bytes, and real frames with bytes flipped: events or ProtocolError,
    nothing else escapes (the house's fuzz rule, as for the frame decoder)."""
    if data.draw(st.booleans()):
        wire = seed
    else:
        i = data.draw(st.integers(0, len(_WIRE) - 1))
        wire = _WIRE[:i] + data.draw(st.binary(min_size=1, max_size=4)) + _WIRE[i + 1 :]
    p = ClientProtocol()
    p.call(b"\x80a", sync=True)
    p.call(b"\x80b", sync=True)
    try:
        for event in p.receive_data(wire):
            assert isinstance(
                event, (Reply, Exhausted, Failed, Output, WarningFrame, Request, Lost)
            )
    except ProtocolError:
        pass
