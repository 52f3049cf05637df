"""A channel's liveness parts, over real socket pairs: BEATs, expiry, the heart."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tether.transport import Channel, ChannelClosed
from tether.transport._heart import Heart
from tether.wire import Kind

BOUND_S = 10.0  # no wait here may take longer: a hang fails, it does not block the suite


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {BOUND_S} s"
        time.sleep(0.01)


def test_a_beat_is_counted_and_dropped_never_handed_up(pair: tuple[Channel, Channel]) -> None:
    client, server = pair
    assert client.send_nowait(Kind.BEAT, 0, 0, b"")
    with pytest.raises(TimeoutError):
        server.recv(timeout=0.2)
    assert server.received > 0 and client.sent > 0
    client.send(Kind.CALL, 0, 1, b"call")
    client.flush()
    frame = server.recv(timeout=BOUND_S)
    assert (frame.kind, frame.seq, frame.meta) == (Kind.CALL, 1, b"call")


def test_beats_from_another_thread_never_land_inside_a_frame(
    pair: tuple[Channel, Channel],
) -> None:
    client, server = pair
    stop = threading.Event()
    beats = [0]

    def beat() -> None:
        while not stop.is_set():
            beats[0] += client.send_nowait(Kind.BEAT, 0, 0, b"")

    payload = bytes(range(256)) * 1024  # 256 KiB: written in many pieces
    got: list[tuple[int, bytes]] = []

    def read() -> None:
        while len(got) < 50:
            f = server.recv(timeout=BOUND_S)
            got.append((f.seq, bytes(f.buffers[0])))

    beater, reader = threading.Thread(target=beat), threading.Thread(target=read)
    beater.start()
    reader.start()
    try:
        for seq in range(1, 51):
            client.send(Kind.CALL, 0, seq, b"m", [payload])
            client.flush()
    finally:
        stop.set()
        beater.join(BOUND_S)
        reader.join(BOUND_S)
    assert [s for s, _ in got] == list(range(1, 51))
    assert all(data == payload for _, data in got)
    assert beats[0] > 0


def test_no_beat_while_the_owner_is_stuck_writing(pair: tuple[Channel, Channel]) -> None:
    client, server = pair
    big = bytearray(16 << 20)  # far more than the socket holds: flush blocks

    def write() -> None:
        client.send(Kind.CALL, 0, 1, b"big", [big])
        client.flush()

    writer = threading.Thread(target=write)
    writer.start()
    _wait_for(lambda: server.unread() > 0 and client.pending_output > 0, "blocked write")
    assert not client.send_nowait(Kind.BEAT, 0, 0, b"")  # never waits behind the write
    frame = server.recv(timeout=BOUND_S)  # reading lets the write finish, intact
    writer.join(BOUND_S)
    assert frame.seq == 1 and len(frame.buffers[0]) == len(big)


def test_expire_wakes_a_blocked_recv_with_its_reason(pair: tuple[Channel, Channel]) -> None:
    client, _server = pair
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            client.recv()
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    client.expire("the worker was silent for 9 s")
    waiter.join(BOUND_S)
    assert not waiter.is_alive(), "recv still waits after expire"
    assert isinstance(raised[0], ChannelClosed)
    assert str(raised[0]) == "the worker was silent for 9 s"
    assert not client.send_nowait(Kind.BEAT, 0, 0, b"")


def test_expire_wakes_a_blocked_flush_with_its_reason(pair: tuple[Channel, Channel]) -> None:
    client, _server = pair
    raised: list[BaseException] = []

    def write() -> None:
        try:
            client.send(Kind.CALL, 0, 1, b"big", [bytearray(16 << 20)])
            client.flush()
        except BaseException as exc:
            raised.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    _wait_for(lambda: client.pending_output > 0, "blocked write")
    time.sleep(0.1)
    client.expire("silent")
    writer.join(BOUND_S)
    assert not writer.is_alive(), "flush still blocks after expire"
    assert [str(e) for e in raised] == ["silent"]


def test_unread_beats_are_told_apart_from_unread_work(pair: tuple[Channel, Channel]) -> None:
    client, server = pair
    assert not server.unread_is_only_beats()  # nothing unread: nothing to tell
    for _ in range(3):
        assert client.send_nowait(Kind.BEAT, 0, 0, b"")
    _wait_for(lambda: server.unread() == 48, "three beats")
    assert server.unread_is_only_beats()
    client.send(Kind.CALL, 0, 1, b"work")
    client.flush()
    _wait_for(lambda: server.unread() > 48, "the call")
    assert not server.unread_is_only_beats()
    assert server.recv(timeout=BOUND_S).seq == 1  # peeking took nothing


def test_two_hearts_keep_a_quiet_session_alive_and_one_alone_is_found_silent(
    pair: tuple[Channel, Channel],
) -> None:
    client, server = pair
    silent: list[tuple[str, float]] = []
    hearts = [
        Heart(ch, window=1.0, interval=0.25, on_silent=lambda s, n=n: silent.append((n, s)))
        for n, ch in (("client", client), ("server", server))
    ]
    for h in hearts:
        h.start()
    try:
        # Nobody reads: the peers' BEATs pile up unread, and still count.
        time.sleep(3.0)
        assert silent == []
        hearts[1].stop()  # the server falls silent (as if stopped)
        _wait_for(lambda: silent, "silence noticed")
        assert silent[0][0] == "client" and silent[0][1] >= 1.0
    finally:
        for h in hearts:
            h.stop()


def test_a_stopped_heart_leaves_no_thread(pair: tuple[Channel, Channel]) -> None:
    client, _server = pair
    before = set(threading.enumerate())
    heart = Heart(client, window=None, interval=0.1, on_silent=lambda s: None)
    heart.start()
    heart.stop()
    with contextlib.suppress(Exception):
        heart.stop()  # twice is fine
    assert set(threading.enumerate()) == before
