"""When a channel's waits spin before they sleep, over real socket pairs.

A wait spins while the waits of its kind that spun were answered within the spin
on average, and sooner than those that slept; after one that was answered far
later, the next waits of that kind sleep at once, and try a spin again every
_RESPIN waits. A quick answer to a wait that slept does not turn spinning back
on: on a busy machine the spin itself is what makes answers late. A round trip
(``recv(alone=True)``) is its own kind: a long wait for queued work says nothing
of it. Only the decision is asserted, never a time: the peer answers after a
delay far longer than the spin, or before the wait begins.
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


def test_a_quick_answer_to_a_wait_that_slept_does_not_turn_spinning_on(
    pair: tuple[Channel, Channel],
) -> None:
    client, server = pair
    _wait_late(client, server, 1, alone=True)
    assert not client.spins(ALONE)
    server.send(Kind.REPLY, 0, 2, b"early")  # there before the wait starts
    server.flush()
    assert client.recv(timeout=BOUND_S, alone=True).seq == 2
    assert not client.spins(ALONE)  # only a spin that pays says spinning pays
