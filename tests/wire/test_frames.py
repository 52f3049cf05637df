"""Framing: round trips in any chunking, limits, and the fuzz rule."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import FrameTooLarge, ProtocolError
from tether.wire import HEADER_SIZE, Frame, FrameDecoder, encode_frame, frame_bytes


def decode_all(data: bytes, *, chunk: int = 1, max_frame: int = 1 << 20) -> list[Frame]:
    dec = FrameDecoder(max_frame=max_frame)
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        while (f := dec.next_frame()) is not None:
            out.append(f)
    return out


def test_round_trip_one_byte_at_a_time() -> None:
    a = frame_bytes(encode_frame(10, 1, 7, b"meta", [b"x" * 3, b"", bytearray(b"yz")]))
    b = frame_bytes(encode_frame(20, 0, 2**64 - 1, b""))
    frames = decode_all(a + b, chunk=1)
    assert [(f.kind, f.flags, f.seq, f.meta) for f in frames] == [
        (10, 1, 7, b"meta"),
        (20, 0, 2**64 - 1, b""),
    ]
    assert [bytes(x) for x in frames[0].buffers] == [b"xxx", b"", b"yz"]


def test_large_buffer_is_received_directly_into_its_own_memory() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB, above the direct threshold
    data = frame_bytes(encode_frame(10, 0, 1, b"m", [payload]))
    dec = FrameDecoder()
    dec.feed(data[: HEADER_SIZE + 8 + 1 + 100])  # header, one length, meta, a little
    assert dec.next_frame() is None
    target = dec.direct_target()
    assert target is not None and len(target) == len(payload) - 100
    target[:] = payload[100:]
    dec.direct_filled(len(target))
    frame = dec.next_frame()
    assert frame is not None and bytes(frame.buffers[0]) == payload


def _receive_large(dec: FrameDecoder, payload: bytes) -> Frame:
    """One frame with one large buffer, received as a channel receives it."""
    data = frame_bytes(encode_frame(10, 0, 1, b"m", [payload]))
    dec.feed(data[: HEADER_SIZE + 8 + 1])
    assert dec.next_frame() is None
    target = dec.direct_target()
    assert target is not None and len(target) == len(payload)
    target[:] = payload
    dec.direct_filled(len(target))
    frame = dec.next_frame()
    assert frame is not None
    return frame


def test_a_large_buffer_let_go_of_is_received_into_again() -> None:
    import numpy

    dec = FrameDecoder()
    size = 4 << 20  # the size from which buffers are mappings, kept for reuse
    first = numpy.frombuffer(_receive_large(dec, b"a" * size).buffers[0], dtype=numpy.uint8)
    base = first.base
    second = _receive_large(dec, b"b" * size).buffers[0]
    # The first array still lives: the second frame got other memory, and the first
    # array's bytes are its own.
    assert bytes(first[:3]) == b"aaa" and bytes(second[-3:]) == b"bbb"
    assert second.obj is not base.obj
    kept = id(base.obj)  # (its address: a reference would keep it in use)
    del first, base
    third = _receive_large(dec, b"c" * size).buffers[0]
    assert id(third.obj) == kept  # (nothing else held it: used again)
    assert bytes(third[:2]) == b"cc" and bytes(second[:2]) == b"bb"
    fourth = _receive_large(dec, b"d" * (size + 1)).buffers[0]
    assert id(fourth.obj) != kept and bytes(fourth[-1:]) == b"d"  # (another size)


def test_at_most_a_few_large_buffers_are_kept() -> None:
    from tether.wire._frames import KEEP_BUFFERS, Recycler

    recycler = Recycler()
    held = [recycler.take((4 << 20) + i * 4096) for i in range(KEEP_BUFFERS + 3)]
    assert len(recycler._kept) <= KEEP_BUFFERS
    assert all(len(m) == (4 << 20) + i * 4096 for i, m in enumerate(held))  # still the caller's
    del held
    recycler.take(1 << 20)  # small: a bytearray, nothing kept
    assert len(recycler._kept) <= KEEP_BUFFERS


def test_sender_refuses_a_frame_over_the_limit_before_sending() -> None:
    with pytest.raises(FrameTooLarge, match="over the connection's limit"):
        encode_frame(10, 0, 1, b"", [b"x" * 101], max_frame=100)


def test_receiver_refuses_an_announced_frame_over_the_limit() -> None:
    data = struct.pack("<IBBHQ", 10, 10, 0, 1, 1) + struct.pack("<Q", 10**12)
    with pytest.raises(FrameTooLarge):
        decode_all(data, chunk=len(data))


def test_decoder_is_dead_after_an_error() -> None:
    dec = FrameDecoder(max_frame=10)
    dec.feed(struct.pack("<IBBHQ", 11, 1, 0, 0, 0))
    with pytest.raises(FrameTooLarge):
        dec.next_frame()
    with pytest.raises(ProtocolError):
        dec.feed(b"x")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=1, max_value=17))
def test_garbage_only_ever_raises_protocol_error(data: bytes, chunk: int) -> None:
    with contextlib.suppress(ProtocolError):
        decode_all(data, chunk=chunk, max_frame=4096)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 2**64 - 1),
            st.binary(max_size=64),
            st.lists(st.binary(max_size=32), max_size=3),
        ),
        max_size=5,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_any_frames_round_trip_in_any_chunking(frames: list, chunk: int) -> None:  # type: ignore[type-arg]
    data = b"".join(frame_bytes(encode_frame(k, fl, s, m, bufs)) for k, fl, s, m, bufs in frames)
    got = decode_all(data, chunk=chunk)
    assert [(f.kind, f.flags, f.seq, f.meta, [bytes(b) for b in f.buffers]) for f in got] == [
        (k, fl, s, m, bufs) for k, fl, s, m, bufs in frames
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 200))
def test_truncated_and_corrupted_frames_raise_protocol_error_or_wait(junk: bytes, cut: int) -> None:
    good = frame_bytes(encode_frame(10, 0, 1, b"meta" * 10, [b"buffer" * 10]))
    mutated = good[:cut] + junk + good[cut:]
    with contextlib.suppress(ProtocolError):
        decode_all(mutated, chunk=7, max_frame=4096)


@given(
    meta=st.binary(max_size=300),
    buffers=st.lists(st.binary(max_size=200), max_size=4),
    big=st.booleans(),
    trailing=st.binary(min_size=1, max_size=50),
)
@settings(max_examples=200, deadline=None)
def test_reading_bytes_needed_takes_one_frame_and_nothing_behind_it(
    meta: bytes, buffers: list[bytes], big: bool, trailing: bytes
) -> None:
    """The acceptor reads a hello this way; what follows it must stay unread."""
    if big:  # a buffer that is received straight into its own memory
        buffers = [*buffers, bytes(range(256)) * 300]
    stream = frame_bytes(encode_frame(7, 1, 42, meta, buffers)) + trailing
    dec = FrameDecoder()
    pos = 0
    while (frame := dec.next_frame()) is None:
        need = dec.bytes_needed()
        assert need >= 1
        target = dec.direct_target()
        if target is not None:  # the decoder lends memory: fill it, as the channel does
            target[:need] = stream[pos : pos + need]
            dec.direct_filled(need)
        else:
            dec.feed(stream[pos : pos + need])
        pos += need
    assert stream[pos:] == trailing
    assert (frame.kind, frame.seq, frame.meta) == (7, 42, meta)
    assert [bytes(b) for b in frame.buffers] == buffers
