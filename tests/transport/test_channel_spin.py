"""When a channel's waits spin before they sleep, over real socket pairs.

A wait spins while the last one of its kind was answered within the spin; after
one that was not, the next waits of that kind sleep at once, and try a spin
again every _RESPIN waits. A round trip (``recv(alone=True)``) is its own kind:
a long wait for queued work says nothing of it. Only the decision is asserted,
never a time: the peer answers after a delay far longer than the spin.
"""

from __future__ import annotations

import threading

from tether.transport import Channel
from tether.transport._channel import _RESPIN
from tether.wire import Kind

BOUND_S = 10.0
LATE_S = 0.05  # far longer than the spin (100 us by default)
ALONE, QUEUED = 1, 0


def _wait_late(client: Channel, server: Channel, seq: int, *, alone: bool) -> None:
    """A wait of ``client`` that the peer answers after LATE_S."""

    def answer() -> None:
        server.send(Kind.REPLY, 0, seq, b"late")
        server.flush()

    timer = threading.Timer(LATE_S, answer)
    timer.start()
    frame = client.recv(timeout=BOUND_S, alone=alone)
    assert frame.seq == seq
    timer.join(BOUND_S)


def test_a_long_wait_behind_queued_work_leaves_round_trips_spinning(
    pair: tuple[Channel, Channel],
) -> None:
    client, server = pair
    assert client.spins(QUEUED) and client.spins(ALONE)
    _wait_late(client, server, 1, alone=False)
    assert not client.spins(QUEUED)  # the next such wait sleeps at once
    assert client.spins(ALONE)  # a round trip still spins first


def test_a_round_trip_that_missed_the_spin_sleeps_then_tries_again(
    pair: tuple[Channel, Channel],
) -> None:
    client, server = pair
    _wait_late(client, server, 1, alone=True)
    assert not client.spins(ALONE) and client.spins(QUEUED)
    for seq in range(2, 2 + _RESPIN):
        assert not client.spins(ALONE)
        _wait_late(client, server, seq, alone=True)
    assert client.spins(ALONE)  # every _RESPIN waits, a spin is tried again
