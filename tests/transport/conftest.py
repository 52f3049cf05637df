"""Fixtures of the transport tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tether.transport import Channel
from tether.wire import Role, State


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    """Two open channels over a real socket pair: (client, server)."""
    a, b = socket.socketpair()
    client = Channel(a, Role.CLIENT, state=State.OPEN)
    server = Channel(b, Role.SERVER, state=State.OPEN)
    try:
        yield client, server
    finally:
        client.close()
        server.close()
