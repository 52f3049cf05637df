"""The liveness policy (no clock, no socket) and the BEAT frame."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire import Connection, Frame, FrameDecoder, Kind, Role, State, frame_bytes
from tether.wire._liveness import (
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    Decision,
    Pulse,
    parse_window,
)
from tether.wire._messages import check_beat, encode_beat

N, B, S = Decision.NOTHING, Decision.BEAT, Decision.SILENT


def _run(pulse: Pulse, steps: list[tuple[float, int, int, int]]) -> list[Decision]:
    return [pulse.observe(t, received=r, sent=s, unread=u) for t, r, s, u in steps]


def test_a_quiet_end_beats_every_interval_and_a_busy_one_never() -> None:
    pulse = Pulse(window=None, interval=1.0, now=0.0)
    # quiet: a BEAT is due after 1 s, again until one has gone (sent moves)
    assert _run(pulse, [(0.5, 0, 0, 0), (1.0, 0, 0, 0), (1.2, 0, 0, 0), (1.4, 0, 1, 0)]) == [
        N, B, B, N,
    ]  # fmt: skip
    # busy: writes every half second, never a BEAT
    steps = [(1.4 + 0.5 * i, 0, 1 + i, 0) for i in range(1, 10)]
    assert set(_run(pulse, steps)) == {N}


def test_the_peer_is_silent_after_a_whole_window_without_a_byte() -> None:
    pulse = Pulse(window=4.0, interval=100.0, now=0.0)
    assert _run(pulse, [(1, 1, 0, 0), (4.9, 1, 0, 0), (5.0, 1, 0, 0), (6, 2, 0, 0)]) == [
        N, N, S, S,  # silent for good, even if bytes come later
    ]  # fmt: skip
    assert pulse.silent_for(6.0) == 5.0


def test_unread_bytes_that_grow_are_the_peer_speaking() -> None:
    # The main thread computes (reads nothing); the peer's BEATs pile up unread.
    pulse = Pulse(window=2.0, interval=100.0, now=0.0, backlog=1024)
    steps = [(0.5 * i, 0, 0, 16 * i) for i in range(1, 20)]
    assert set(_run(pulse, steps)) == {N}


def test_unread_bytes_that_stay_put_are_a_stopped_peer() -> None:
    # The BEATs it sent before it was stopped, never read by a busy end.
    pulse = Pulse(window=2.0, interval=100.0, now=0.0, backlog=1024)
    assert _run(pulse, [(0.5, 0, 0, 48), (1.0, 0, 0, 48), (2.4, 0, 0, 48), (2.5, 0, 0, 48)]) == [
        N, N, N, S,
    ]  # fmt: skip


def test_a_backlog_excuses_the_peer_whose_write_is_stuck_behind_it() -> None:
    pulse = Pulse(window=2.0, interval=100.0, now=0.0, backlog=1024)
    steps = [(0.5 * i, 0, 0, 4096) for i in range(1, 40)]
    assert set(_run(pulse, steps)) == {N}


def test_no_window_means_never_silent() -> None:
    pulse = Pulse(window=None, interval=1.0, now=0.0)
    assert S not in _run(pulse, [(t, 0, t, 0) for t in range(1, 1000, 7)])


def test_tick_is_fine_enough_for_both_jobs() -> None:
    assert Pulse(window=8.0, interval=2.0, now=0).tick == 1.0
    assert Pulse(window=8.0, interval=100.0, now=0).tick == 1.0
    assert Pulse(window=None, interval=3.0, now=0).tick == 1.5


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_pulse_refuses_a_nonsense_window(bad: float) -> None:
    with pytest.raises(ValueError):
        Pulse(window=bad, interval=1.0, now=0.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 60.0), st.lists(st.floats(0.001, 0.3), min_size=1, max_size=200))
def test_a_peer_heard_every_interval_is_never_silent(window: float, gaps: list[float]) -> None:
    """Whatever the times of observation, a peer that says something every
    window/4 (its BEAT interval) is never found silent."""
    interval = window / 4
    pulse = Pulse(window=window, interval=interval, now=0.0)
    now = 0.0
    for gap in gaps:
        now += gap * window
        received = int(now // interval)  # the peer's BEATs so far
        assert pulse.observe(now, received=received, sent=0, unread=0) is not S


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 60.0), st.floats(0.01, 1.0))
def test_a_silent_peer_is_found_within_window_and_a_tick(window: float, tick_share: float) -> None:
    pulse = Pulse(window=window, interval=window / 4, now=0.0)
    now = 0.0
    tick = pulse.tick * tick_share
    while pulse.observe(now, received=0, sent=0, unread=0) is not S:
        now += tick
        assert now <= window + pulse.tick + 1e-9
    assert now >= window


@pytest.mark.parametrize(
    ("value", "window"),
    [(5, 5.0), (2.5, 2.5), (0.01, MIN_WINDOW_S), (1e9, MAX_WINDOW_S), (0, None), (-3, None),
     (float("inf"), None), (float("nan"), None), (True, None), ("5", None), (None, None)],
)  # fmt: skip
def test_parse_window(value: object, window: float | None) -> None:
    assert parse_window(value) == window


def _open(role: Role) -> Connection:
    return Connection(role, State.OPEN)


def test_a_beat_goes_either_way_once_open_and_never_before() -> None:
    beat = FrameDecoder()
    beat.feed(frame_bytes(encode_beat()))
    frame = beat.next_frame()
    assert frame is not None and frame.kind == Kind.BEAT
    assert len(frame_bytes(encode_beat())) == 16
    check_beat(frame)
    for role in Role:
        _open(role).check_outgoing(Kind.BEAT)
        _open(role).check_incoming(frame)
        with pytest.raises(ProtocolError):
            Connection(role).check_incoming(frame)  # not during the handshake
        with pytest.raises(ProtocolError):
            Connection(role).check_outgoing(Kind.BEAT)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(kind=Kind.BEAT, flags=1, seq=0, meta=b""),
        Frame(kind=Kind.BEAT, flags=0, seq=7, meta=b""),
        Frame(kind=Kind.BEAT, flags=0, seq=0, meta=b"x"),
        Frame(kind=Kind.BEAT, flags=0, seq=0, meta=b"", buffers=(memoryview(b"y"),)),
    ],
)
def test_a_beat_that_carries_anything_is_refused(frame: Frame) -> None:
    with pytest.raises(ProtocolError):
        check_beat(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_in_an_open_session_only_raises_protocol_error(data: bytes) -> None:
    """The fuzz rule, with BEATs in the table: decoding, the state check and
    the BEAT check raise ProtocolError or nothing."""
    dec = FrameDecoder(max_frame=1 << 16)
    conn = _open(Role.SERVER)
    with contextlib.suppress(ProtocolError):
        dec.feed(data)
        while (frame := dec.next_frame()) is not None:
            conn.check_incoming(frame)
            if frame.kind == Kind.BEAT:
                check_beat(frame)
