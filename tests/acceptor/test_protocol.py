"""The worker's protocol in memory: frames in, events and exact frames out, no sockets.

The client's end is written by hand (exact frames), or the real
:class:`~tether.client._protocol.ClientProtocol`, back to back with the worker's
protocol, shell and engine.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _protocol_pair import ProtocolPair, Proxy, encode
from tether import ProtocolError
from tether.acceptor._codec import error_payload
from tether.acceptor._events import (
    NEED_DATA,
    Batch,
    Call,
    CallFailed,
    Closed,
    Event,
    Mispredicted,
    Names,
    Release,
    Response,
)
from tether.acceptor._protocol import TRANSITIONS, Input, State, WorkerProtocol
from tether.acceptor._shell import WorkerShell
from tether.client import _events as client_events
from tether.wire import Flag, Frame, FrameDecoder, Kind
from tether.wire._frames import encode_frame, frame_bytes
from tether.wire._messages import TOUCHED_NOTICE
from tether.wire._ops import (
    NAMESPACE_TAG,
    NONE,
    RELEASE_TAG,
    Handle,
    Items,
    Op,
    Shape,
    pack_batch,
    pack_ids,
    shape_to_wire,
)
from tether.wire._values import decode as decode_value

CALL, REPLY, NOTICE, REQUEST = int(Kind.CALL), int(Kind.REPLY), int(Kind.NOTICE), int(Kind.REQUEST)
SYNC, BATCH, NESTED = int(Flag.SYNC), int(Flag.BATCH), int(Flag.NESTED)


def frame(kind: int, flags: int = 0, seq: int = 0, meta: bytes = b"") -> Frame:
    return Frame(kind=kind, flags=flags, seq=seq, meta=meta)


def call_meta(shape: Shape = None) -> bytes:
    """A pickled call with a readable shape (its function never matters here)."""
    return pickle.dumps((int(Op.CALL), shape_to_wire(shape), len, ((),), {}))


def sent(p: WorkerProtocol) -> list[tuple[int, int, int, bytes]]:
    """What the protocol wants written, decoded: (kind, flags, seq, meta)."""
    dec = FrameDecoder()
    dec.feed(frame_bytes(p.data_to_send()))
    out = []
    while (f := dec.next_frame()) is not None:
        out.append((f.kind, f.flags, f.seq, bytes(f.meta)))
    assert dec.at_boundary()
    return out


def events(p: WorkerProtocol) -> list[Event]:
    """Every event the frames received so far make, none carried out."""
    out: list[Event] = []
    while (e := p.next_event()) is not NEED_DATA:
        out.append(e)
    return out


def notice(seq: int, why: str) -> tuple[int, int, int, bytes]:
    return (NOTICE, 0, seq, pickle.dumps(("mispredicted", why)))


def failed(p: WorkerProtocol, err: BaseException, shape: Shape = None) -> None:
    """Put ``p`` in FAILED, as a failed pipelined call 1 does."""
    p.receive_frame(frame(CALL, 0, 1, call_meta(shape)))
    (ev,) = events(p)
    p.pipelined(ev.seq, CallFailed(shape, err))  # type: ignore[union-attr]


# -- states -------------------------------------------------------------------------
def test_the_transition_table_covers_every_state_and_input() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in State for i in Input}
    assert all(TRANSITIONS[State.CLOSED, i] is State.CLOSED for i in Input)
    assert TRANSITIONS[State.FAILED, Input.RESUME] is State.OPEN


def test_a_sync_call_is_an_event_and_its_value_an_exact_reply() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, SYNC, 1, b"\x80call"))
    assert events(p) == [Call(1, True, b"\x80call", ())]
    p.reply(1, b"\x80value", [b"buf"])
    dec = FrameDecoder()
    dec.feed(frame_bytes(p.data_to_send()))
    f = dec.next_frame()
    assert f is not None and (f.kind, f.flags, f.seq, f.meta) == (REPLY, 0, 1, b"\x80value")
    assert [bytes(b) for b in f.buffers] == [b"buf"]


def test_the_reply_bytes_are_those_the_engine_always_sent() -> None:
    p = WorkerProtocol()
    p.reply(7, b"\x80v", [b"xy"])
    p.exhausted(8)
    assert frame_bytes(p.data_to_send()) == frame_bytes(
        encode_frame(REPLY, 0, 7, b"\x80v", [b"xy"])
    ) + frame_bytes(encode_frame(REPLY, int(Flag.EXHAUSTED), 8, b""))


def test_a_failed_pipelined_call_defers_its_error_to_the_next_sync_call() -> None:
    p = WorkerProtocol()
    err = ZeroDivisionError("division by zero")
    failed(p, err, Handle(1, 0))
    assert p.state is State.FAILED and p.poisoned == {1: err}
    assert sent(p) == []  # a pipelined call gets no reply
    # Later pipelined calls are skipped, their results poisoned with the same error.
    p.receive_frame(frame(CALL, 0, 2, call_meta(Items(False, (Handle(2, 0), Handle(3, 0))))))
    compact = encode(int(Op.CALL), Handle(4, 0), (operator.add, (1, 2), {}))
    assert compact is not None
    p.receive_frame(frame(CALL, 0, 3, compact))
    # The next synchronous call is answered with it, flagged DEFERRED, and never runs.
    p.receive_frame(frame(CALL, SYNC, 4, call_meta()))
    assert events(p) == []
    assert p.poisoned == {1: err, 2: err, 3: err, 4: err}
    assert sent(p) == [(REPLY, int(Flag.ERROR | Flag.DEFERRED), 4, error_payload(err))]
    # Until RESUME, every call is answered the same way.
    p.receive_frame(frame(CALL, SYNC, 5, call_meta()))
    assert events(p) == [] and sent(p)[0][:3] == (REPLY, int(Flag.ERROR | Flag.DEFERRED), 5)
    p.receive_frame(frame(Kind.RESUME))
    p.receive_frame(frame(CALL, SYNC, 6, b"\x80c"))
    assert events(p) == [Call(6, True, b"\x80c", ())]
    assert p.state is State.OPEN and p.failed is None and 1 in p.poisoned


def test_a_batch_is_handed_out_whole_while_nothing_waits_or_failed() -> None:
    p = WorkerProtocol()
    metas = [call_meta(Handle(1, 0)), RELEASE_TAG + pack_ids([9]), call_meta(Handle(2, 0))]
    p.receive_frame(frame(CALL, BATCH, 10, pack_batch(metas)))
    assert events(p) == [Batch(10, metas)]


def test_a_failure_in_a_batch_skips_the_rest_of_it() -> None:
    p = WorkerProtocol()
    metas = [call_meta(Handle(1, 0)), call_meta(Handle(2, 0)), call_meta(Handle(3, 0))]
    p.receive_frame(frame(CALL, BATCH, 10, pack_batch(metas)))
    assert p.next_event() == Batch(10, metas)
    # The shell runs the first call, which fails, and hands the rest back.
    err = ValueError("x")
    p.pipelined(10, CallFailed(Handle(1, 0), err))
    p.requeue(11, metas[1:])
    assert events(p) == [] and p.poisoned == {1: err, 2: err, 3: err}


def test_a_batch_that_arrives_in_failed_is_skipped_entry_by_entry() -> None:
    p = WorkerProtocol()
    err = ValueError("x")
    p.receive_frame(frame(CALL, 0, 1, call_meta(Handle(1, 0))))
    first = p.next_event()
    assert isinstance(first, Call)
    p.pipelined(1, CallFailed(Handle(1, 0), err))
    metas = [call_meta(Handle(2, 0)), RELEASE_TAG + pack_ids([1]), call_meta(Handle(3, 0))]
    p.receive_frame(frame(CALL, BATCH, 2, pack_batch(metas)))
    # Releases still apply (and forget the poison of what they release).
    assert events(p) == [Release([1])] and p.poisoned == {2: err, 3: err}


def test_releases_and_names_in_a_batch_keep_their_place_and_take_no_number() -> None:
    p = WorkerProtocol()
    entries = [
        RELEASE_TAG + pack_ids([9]),
        b"\x80a",
        NAMESPACE_TAG + b"names",
        b"\x80b",
        RELEASE_TAG + pack_ids([1, 2]),
    ]
    p.receive_frame(frame(CALL, BATCH, 20, pack_batch(entries)))
    assert p.next_event() == Batch(20, entries)
    # Handed back whole (as the shell hands back a batch's rest), entry by entry:
    p.requeue(20, entries)
    assert events(p) == [
        Release([9]),
        Call(20, False, b"\x80a", ()),
        Names(b"names"),
        Call(21, False, b"\x80b", ()),
        Release([1, 2]),
    ]


def test_names_still_apply_while_calls_are_skipped_and_a_release_forgets_poison() -> None:
    p = WorkerProtocol()
    err = ValueError("x")
    failed(p, err, Handle(1, 0))
    p.receive_frame(frame(CALL, 0, 2, NAMESPACE_TAG + b"rebinds"))
    p.receive_frame(frame(Kind.RELEASE, 0, 0, pack_ids([1])))
    assert events(p) == [Names(b"rebinds"), Release([1])]
    assert p.poisoned == {} and p.state is State.FAILED


def test_a_misprediction_is_a_notice_and_a_changed_shape_poisons_its_ids() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, 0, 3, b"\x80a"))
    events(p)
    shape = Items(True, (Handle(5, 0),))
    err = TypeError("changed shape")
    p.pipelined(3, Mispredicted("changed shape", shape, err))
    p.pipelined(4, Mispredicted("result type changed to int"))
    assert sent(p) == [notice(3, "changed shape"), notice(4, "result type changed to int")]
    assert p.poisoned == {5: err} and p.state is State.OPEN


def test_a_result_of_another_class_is_named_in_its_notice() -> None:
    p = WorkerProtocol()
    desc = (7, "numpy", "float64", "float64", (), frozenset(), frozenset())
    p.pipelined(3, Mispredicted("result type changed to float64", tid=7, types=(desc,)))
    [(kind, _flags, seq, meta)] = sent(p)
    assert (kind, seq) == (int(Kind.NOTICE), 3)
    assert pickle.loads(meta) == ("mispredicted", "result type changed to float64", 7, [desc])


def test_output_goes_out_merged_before_a_reply_and_a_request() -> None:
    p = WorkerProtocol()
    p.write_output("a", stderr=False)
    p.write_output("b", stderr=False)
    p.write_output("c", stderr=True)
    p.reply(1, b"\x80v")
    p.write_output("d", stderr=False)
    p.request(b"\x80q")
    assert [(k, f, s, m) for k, f, s, m in sent(p)] == [
        (int(Kind.OUTPUT), 0, 0, b"ab"),
        (int(Kind.OUTPUT), int(Flag.STDERR), 0, b"c"),
        (REPLY, 0, 1, b"\x80v"),
        (int(Kind.OUTPUT), 0, 0, b"d"),
        (REQUEST, 0, 1, b"\x80q"),
    ]


def test_a_notice_does_not_wait_for_the_output() -> None:
    p = WorkerProtocol()
    p.write_output("x", stderr=False)
    p.pipelined(1, Mispredicted("why"))
    assert sent(p) == [notice(1, "why")]
    p.flush_output()
    assert sent(p) == [(int(Kind.OUTPUT), 0, 0, b"x")]


def test_a_call_that_used_the_client_says_so() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, 0, 1, b"\x80a"))
    events(p)
    p.request(b"\x80q")
    p.receive_frame(frame(Kind.RESPONSE, 0, 1, b"\x80answer"))
    assert events(p) == [Response(1, False, b"\x80answer", ())]
    p.pipelined(1, None)
    p.receive_frame(frame(CALL, SYNC, 2, b"\x80b"))
    events(p)
    p.write_warning("{}")
    p.reply(2, b"\x80v")
    out = sent(p)
    assert (NOTICE, 0, 1, TOUCHED_NOTICE) in out
    assert out[-1] == (REPLY, int(Flag.NOPIPE), 2, b"\x80v")
    # A call that touches nothing is pipelined as before.
    p.receive_frame(frame(CALL, SYNC, 3, b"\x80c"))
    events(p)
    p.reply(3, b"\x80v")
    assert sent(p) == [(REPLY, 0, 3, b"\x80v")]


# -- requests and the nested wait -------------------------------------------------------
def test_while_waiting_only_nested_calls_and_the_answer_come_through() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, SYNC, 1, b"\x80outer"))
    assert events(p) == [Call(1, True, b"\x80outer", ())]
    assert p.request(b"\x80q") == 1 and p.waiting == 1
    assert sent(p) == [(REQUEST, 0, 1, b"\x80q")]
    p.receive_frame(frame(CALL, 0, 2, b"\x80later"))  # not nested: for after the wait
    p.receive_frame(frame(Kind.RELEASE, 0, 0, pack_ids([4])))
    p.receive_frame(frame(Kind.BYE))
    p.receive_frame(frame(Kind.RESPONSE, 0, 9, b"\x80stale"))
    p.receive_frame(frame(CALL, SYNC | NESTED, 3, b"\x80nested"))
    assert p.next_event() == Call(3, True, b"\x80nested", ())
    assert p.next_event() is NEED_DATA
    p.receive_frame(frame(Kind.RESPONSE, Flag.ERROR, 1, b"\x80err"))
    assert p.next_event() == Response(1, True, b"\x80err", ())
    assert p.waiting == 0
    # The frames set aside, in order; the stale answer is dropped.
    assert events(p) == [Call(2, False, b"\x80later", ()), Release([4]), Closed()]
    assert p.state is State.CLOSED


def test_a_batch_interrupted_by_a_wait_resumes_after_it() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, BATCH, 1, pack_batch([b"\x80a", b"\x80b"])))
    p.receive_frame(frame(CALL, BATCH, 3, pack_batch([b"\x80c"])))
    assert p.next_event() == Batch(1, [b"\x80a", b"\x80b"])
    p.request(b"\x80q")  # a, run by the shell, asks the client
    p.receive_frame(frame(CALL, 0, 5, b"\x80after"))
    assert p.next_event() is NEED_DATA  # nothing else runs until a is done
    p.receive_frame(frame(Kind.RESPONSE, 0, 1, b""))
    assert isinstance(p.next_event(), Response)
    # A nested batch (the client's code serving a wait) comes entry by entry.
    p.request(b"\x80q2")
    p.receive_frame(frame(CALL, NESTED | BATCH, 7, pack_batch([b"\x80n1", b"\x80n2"])))
    assert [p.next_event(), p.next_event()] == [
        Call(7, False, b"\x80n1", ()),
        Call(8, False, b"\x80n2", ()),
    ]
    p.receive_frame(frame(Kind.RESPONSE, 0, 2, b""))
    assert isinstance(p.next_event(), Response)
    # b is the shell's to run; the frames set aside come after, in order.
    assert events(p) == [Batch(3, [b"\x80c"]), Call(5, False, b"\x80after", ())]


def test_waits_nest_innermost_first() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(CALL, SYNC, 1, b"\x80a"))
    events(p)
    assert p.request(b"\x80outer") == 1
    p.receive_frame(frame(CALL, SYNC | NESTED, 2, b"\x80n"))
    assert p.next_event() == Call(2, True, b"\x80n", ())
    assert p.request(b"\x80inner") == 2 and p.waiting == 2
    p.receive_frame(frame(Kind.RESPONSE, 0, 1, b"\x80early"))  # not the innermost: set aside
    assert p.next_event() is NEED_DATA
    p.receive_frame(frame(Kind.RESPONSE, 0, 2, b"\x80in"))
    assert p.next_event() == Response(2, False, b"\x80in", ())
    assert p.waiting == 1 and p.next_event() is NEED_DATA  # as before: the early answer is lost
    p.receive_frame(frame(Kind.RESPONSE, 0, 1, b"\x80out"))
    assert p.next_event() == Response(1, False, b"\x80out", ())
    assert events(p) == []  # the early answer, set aside, is stale now


def test_a_frame_the_worker_never_expects_is_a_protocol_error() -> None:
    p = WorkerProtocol()
    p.receive_frame(frame(REPLY, 0, 1))
    with pytest.raises(ProtocolError):
        p.next_event()


def test_bytes_check_the_sender_and_skip_beats() -> None:
    p = WorkerProtocol()
    p.receive_data(frame_bytes(encode_frame(Kind.BEAT, 0, 0, b"")))
    assert p.next_event() is NEED_DATA
    with pytest.raises(ProtocolError):
        p.receive_data(frame_bytes(encode_frame(Kind.OUTPUT, 0, 0, b"x")))


# -- bytes in, any chunking -------------------------------------------------------------
_CLIENT_FRAMES: list[tuple[int, int, int, bytes, tuple[bytes, ...]]] = [
    (CALL, 0, 1, call_meta(Handle(1, 0)), ()),
    (CALL, BATCH, 2, pack_batch([call_meta(Handle(2, 0)), RELEASE_TAG + pack_ids([1])]), ()),
    (CALL, SYNC, 3, call_meta(), (b"buffer",)),
    (Kind.RESUME, 0, 0, b"", ()),
    (Kind.BEAT, 0, 0, b"", ()),
    (CALL, 0, 4, NAMESPACE_TAG + b"n", ()),
    (CALL, SYNC, 5, call_meta(), ()),
    (Kind.RELEASE, 0, 0, pack_ids([2, 3]), ()),
    (Kind.BYE, 0, 0, b"", ()),
]
_WIRE = b"".join(frame_bytes(encode_frame(*f)) for f in _CLIENT_FRAMES)


def _run(chunks: Sequence[bytes]) -> tuple[list[Event], bytes]:
    """Feed the chunks; the first pipelined call fails, the rest run as assumed."""
    p = WorkerProtocol()
    seen: list[Event] = []
    out = bytearray()
    for chunk in chunks:
        p.receive_data(chunk)
        while (e := p.next_event()) is not NEED_DATA:
            seen.append(e)
            if type(e) is Call:
                if e.sync:
                    p.reply(e.seq, b"\x80%d" % e.seq)
                elif e.seq == 1:
                    p.pipelined(e.seq, CallFailed(Handle(1, 0), ValueError("first")))
                else:
                    p.pipelined(e.seq, None)
        out += frame_bytes(p.data_to_send())
    return seen, bytes(out)


def test_bytes_fed_one_at_a_time_give_the_same_events_and_frames() -> None:
    whole = _run([_WIRE])
    # Call 2 skipped (FAILED), sync 3 answered DEFERRED, then RESUME reopened.
    assert [type(e).__name__ for e in whole[0]] == [
        "Call",
        "Release",
        "Names",
        "Call",
        "Release",
        "Closed",
    ]
    assert _run([_WIRE[i : i + 1] for i in range(len(_WIRE))]) == whole


@settings(deadline=None)
@given(st.lists(st.integers(1, len(_WIRE)), max_size=12))
def test_any_chunking_gives_the_same_events_and_frames(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [_WIRE[a:b] for a, b in zip([0, *points], [*points, len(_WIRE)], strict=True)]
    assert _run(chunks) == _run([_WIRE])


# No deadline: a flipped length byte may announce a big frame.
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.data(), st.booleans())
def test_garbage_from_the_client_only_raises_protocol_error(
    seed: bytes, data: st.DataObject, in_failed: bool
) -> None:
    """Random bytes, and real frames with bytes flipped, in OPEN or FAILED:
    events or ProtocolError, nothing else escapes."""
    if data.draw(st.booleans()):
        wire = seed
    else:
        i = data.draw(st.integers(0, len(_WIRE) - 1))
        wire = _WIRE[:i] + data.draw(st.binary(min_size=1, max_size=4)) + _WIRE[i + 1 :]
    p = WorkerProtocol()
    if in_failed:
        failed(p, ValueError("x"))
    try:
        p.receive_data(wire)
        events(p)
    except ProtocolError:
        pass


# -- back to back with the client's protocol (tests/_protocol_pair.py) -----------------
def test_pipelined_calls_a_deferred_error_and_resume_back_to_back() -> None:
    pair = ProtocolPair()
    ftid = pair.worker.engine.types.tid(float)
    pair.call(operator.mul, 3.0, 2, shape=Handle(1, ftid))
    pair.call(operator.truediv, Proxy(1), 0, shape=NONE)  # fails in the worker
    pair.call(operator.add, Proxy(1), 1, shape=NONE)  # skipped
    seq = pair.call(operator.add, 1, 2)
    (event,) = pair.pump()
    assert isinstance(event, client_events.Failed) and event.deferred and event.seq == seq
    assert pair.worker.engine.handles[1] == 6.0
    assert pair.worker.protocol.state is State.FAILED
    pair.call(operator.add, 2, 2)  # the RESUME goes first
    (event,) = pair.pump()
    assert isinstance(event, client_events.Reply)
    assert pair.worker.protocol.state is State.OPEN


def _script_fn(pair: ProtocolPair, source: str) -> Any:
    code = compile(source, "script_mod.py", "exec")
    fn_code = next(c for c in code.co_consts if getattr(c, "co_name", None) == "f")
    return pair.worker.engine.script.function(
        7, ("script_mod", "script_mod.py", "", False), fn_code, None
    )


def test_a_request_round_trip_with_a_nested_call_back_to_back() -> None:
    pair = ProtocolPair({"k": 5})
    f = _script_fn(pair, "def f(x):\n    return x * k\n")
    pair.nested = [(operator.add, (40, 2))]  # the client calls back while answering
    pair.worker.engine.handles[50] = f  # as if the client had shipped it
    seq = pair.call(Proxy(50), 2)
    got = pair.pump()
    replies = [e for e in got if isinstance(e, client_events.Reply)]
    assert [r.seq for r in replies] == [seq + 1, seq]  # the nested call's, then the outer
    # The call paged a name in from the client: it is not pipelined again.
    assert replies[1].flags & Flag.NOPIPE
    assert pair.worker.protocol.waiting == 0


# Once for both ends: tests/client/test_protocol.py ran its own copy of this, 40
# examples of its own, and its checks are here (the engine's failed state too).
@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["ok", "fail", "sync", "release"]), max_size=30))
def test_any_mix_of_calls_keeps_both_protocols_in_step(steps: list[str]) -> None:
    """Every sync call gets exactly its reply, errors come out at the first sync
    after them, and the worker's failed state clears once the client resumes."""
    pair = ProtocolPair()
    ftid = pair.engine.types.tid(float)
    next_hid, failing = 1, False
    for step in [*steps, "sync"]:
        if step == "ok":
            pair.call(operator.add, 1.0, 1.0, shape=Handle(next_hid, ftid))
            next_hid += 1
        elif step == "fail":
            pair.call(operator.truediv, 1, 0, shape=NONE)
            failing = True
        elif step == "release" and next_hid > 1:
            pair.client.release(next_hid - 1)
        elif step == "sync":
            seq = pair.call(operator.add, 1, 1)
            (event,) = pair.pump()
            assert event.seq == seq  # type: ignore[union-attr]
            assert isinstance(event, client_events.Failed if failing else client_events.Reply)
            failing = False
    pair.pump()  # the last RESUME, if any
    assert pair.worker.protocol.state is State.OPEN
    assert pair.worker.protocol.failed is None


def test_the_last_word_follows_the_queued_output() -> None:
    p = WorkerProtocol()
    p.write_output("partial", stderr=True)
    p.last_word("the acceptor ended the session")
    assert sent(p) == [
        (int(Kind.OUTPUT), int(Flag.STDERR), 0, b"partial"),
        (NOTICE, 0, 0, b"the acceptor ended the session"),
    ]


def _call_reading_a_global(shell: WorkerShell) -> bytes:
    """The CALL meta of a script function ``f()`` that returns its module's ``k``
    (which the worker pages in from the client)."""
    code = compile("def f():\n    return k\n", "script_mod.py", "exec")
    fn_code = next(c for c in code.co_consts if getattr(c, "co_name", None) == "f")
    shell.engine.handles[50] = shell.engine.script.function(
        7, ("script_mod", "script_mod.py", "", False), fn_code, None
    )
    meta = encode(int(Op.CALL), None, (Proxy(50), (), {}))
    assert meta is not None
    return meta


def test_an_answer_flagged_error_raises_where_the_engine_asked() -> None:
    from memory_link import MemoryLink, pump

    def answer(link: MemoryLink, request: Any) -> Any:
        raise LookupError("the client cannot say")

    link = MemoryLink(answer)
    shell = WorkerShell(link)
    meta = _call_reading_a_global(shell)
    link.push(CALL, SYNC, 1, meta)
    pump(shell)
    *asked, reply = link.frames
    assert asked and all(f.kind == REQUEST for f in asked)  # each answered, with an error
    assert (reply.kind, reply.flags, reply.seq) == (REPLY, int(Flag.ERROR), 1)
    assert "the client cannot say" in pickle.loads(reply.meta)["traceback"]
    assert shell.protocol.waiting == 0 and shell.protocol.state is State.OPEN


def test_a_request_that_raised_before_its_answer_leaves_no_wait_open() -> None:
    """A page-in that never got its answer (a RecursionError of page-ins nested
    too deep, an interrupt) must not leave its wait open: every later frame
    would be set aside for it, and the session would hang."""
    from memory_link import MemoryLink, pump

    class BrokenOnce(MemoryLink):
        broke = False

        def recv(self) -> Any:
            if not self.broke:
                self.broke = True
                raise RecursionError("maximum recursion depth exceeded")
            return super().recv()

    link = BrokenOnce(lambda link, request: (True, 5))
    shell = WorkerShell(link)
    meta = _call_reading_a_global(shell)
    link.push(CALL, SYNC, 1, meta)
    pump(shell)
    reply = link.frames[-1]
    assert (reply.kind, reply.flags, reply.seq) == (REPLY, int(Flag.ERROR), 1)
    assert "maximum recursion depth" in pickle.loads(reply.meta)["traceback"]
    assert shell.protocol.waiting == 0
    link.push(CALL, SYNC, 2, meta)  # the same call again: k is paged in this time
    pump(shell)
    reply = link.frames[-1]
    assert (reply.kind, reply.seq) == (REPLY, 2) and not reply.flags & int(Flag.ERROR)
    assert decode_value(bytes(reply.meta)) == 5


def test_abandoning_a_wait_hands_out_what_came_meanwhile_and_drops_its_answer() -> None:
    p = WorkerProtocol()
    p.receive_frame(Frame(kind=CALL, flags=0, seq=1, meta=b"outer"))
    (event,) = [p.next_event()]
    assert isinstance(event, Call)
    outer_rid = p.request(b"asked")
    inner_rid = p.request(b"asked inside")  # a page-in made while unpickling the first
    p.receive_frame(Frame(kind=CALL, flags=0, seq=2, meta=b"later"))
    assert p.next_event() is NEED_DATA  # set aside: a wait is open
    p.abandon(outer_rid)  # the outer frame unwound: the inner wait goes with it
    assert p.waiting == 0
    p.receive_frame(Frame(kind=int(Kind.RESPONSE), flags=0, seq=inner_rid, meta=b"late"))
    event = p.next_event()
    assert isinstance(event, Call) and event.seq == 2
    assert p.next_event() is NEED_DATA  # the late answer was dropped
