"""A real Acceptor on loopback, served by a thread of the test process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from tether.acceptor._server import Acceptor
from tether.transport import Address


@contextlib.contextmanager
def running_acceptor(
    authorizer: Any, *, handoff_delay: float = 0.0, sandbox: Any = None
) -> Iterator[str]:
    """Serve an acceptor with ``authorizer`` until the block ends; yields its URL.

    ``handoff_delay`` widens the window between a worker's start and the
    acceptor dropping its copy of the session's socket.
    """
    acceptor = Acceptor(Address("tcp", "127.0.0.1", 0), authorizer, sandbox=sandbox)
    acceptor.handoff_delay = handoff_delay
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task = loop.create_task(acceptor.serve(lambda _a: ready.set()))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), "the acceptor did not start listening in 30 s"
    try:
        yield str(acceptor.address)
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        loop.close()
