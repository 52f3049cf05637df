"""The client's protocol and the real worker back to back, in memory.

The protocol tests of both ends (``tests/client/test_protocol.py``,
``tests/acceptor/test_protocol.py``) drive :class:`ProtocolPair`, as h11's tests
drive ``ConnectionPair``: the bytes one end writes are what the other reads,
with no socket, and the worker's answers reach the client a byte at a time.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Sequence
from typing import Any

from tether.acceptor._engine import Engine
from tether.acceptor._shell import WorkerShell
from tether.client import _events as client_events
from tether.client._events import Event
from tether.client._protocol import ClientProtocol
from tether.wire import Frame, FrameDecoder
from tether.wire._compact import CompactEncoder
from tether.wire._frames import Buffer, frame_bytes
from tether.wire._ops import Op
from tether.wire._requests import ReadGlobal, request_from_wire

__all__ = ["ProtocolPair", "Proxy", "encode"]


class _ProxyMeta(type):
    pass


class Proxy(metaclass=_ProxyMeta):
    """Stands for the client's proxy of handle ``hid`` in an encoded call."""

    def __init__(self, hid: int) -> None:
        self._t_id = hid


#: The client's compact encoder, with :class:`Proxy` as its proxies.
encode = CompactEncoder(_ProxyMeta).encode


class ProtocolPair:
    """A :class:`ClientProtocol` and the worker's shell (protocol and engine),
    connected by bytes in memory, a byte at a time towards the client.

    The pair is the worker's link. When the worker waits (a request of its
    own), the client reads what it was sent and answers: from ``names``, the
    script's globals, making the ``nested`` calls first as the client's code
    would while serving it. Without ``names`` the client answers nothing: a
    worker that asks fails the test.
    """

    def __init__(self, names: dict[str, Any] | None = None) -> None:
        self.client = ClientProtocol()
        self.worker = WorkerShell(self)
        self.names = names
        self.nested: list[Any] = []  # calls the client makes while answering
        self.client_events: list[Event] = []
        self._inbox: deque[Frame] = deque()  # client -> worker
        self._wire = bytearray()  # worker -> client
        self._decoder = FrameDecoder()

    @property
    def engine(self) -> Engine:
        return self.worker.engine

    # The worker's link: bytes out to ``_wire``, frames in from ``_inbox``.
    def send_pieces(self, pieces: Sequence[Buffer]) -> None:
        self._wire += frame_bytes(pieces)

    def poll(self) -> Frame | None:
        return self._inbox.popleft() if self._inbox else None

    def recv(self) -> Frame:
        """The worker waits: the client reads what it sent and answers."""
        self._to_client()
        self._to_worker()
        if not self._inbox:
            raise AssertionError("both ends wait")
        return self._inbox.popleft()

    def flush(self) -> None:
        pass

    # The client's side.
    def call(self, fn: Any, *args: Any, shape: Any = None) -> int:
        """``fn(*args)`` as the client's call: pipelined with a ``shape``, else sync."""
        meta = encode(int(Op.CALL), shape, (fn, args, {}))
        assert meta is not None
        return self.client.call(meta, sync=shape is None)

    def deliver(self) -> list[Event]:
        """What the client has written goes to the worker, which runs it and
        answers; the client's events since the last delivery."""
        self._to_worker()
        self.worker.pump()
        self.worker.write()
        self._to_client()
        seen, self.client_events = self.client_events, []
        return seen

    def pump(self) -> list[Event]:
        """Run what the client queued (its batch written first), as :meth:`deliver`."""
        self.client.emit_batch()
        return self.deliver()

    def _to_worker(self) -> None:
        self._decoder.feed(frame_bytes(self.client.data_to_send()))
        while (f := self._decoder.next_frame()) is not None:
            self._inbox.append(f)

    def _to_client(self) -> None:
        data, self._wire = bytes(self._wire), bytearray()
        for i in range(len(data)):
            for event in self.client.receive_data(data[i : i + 1]):
                self.client_events.append(event)
                if isinstance(event, client_events.Request):
                    self._answer(event)

    def _answer(self, event: client_events.Request) -> None:
        if self.names is None:
            raise AssertionError("the worker waits for an answer nobody will send")
        _types, inner = pickle.loads(event.meta)
        request = request_from_wire(pickle.loads(inner))
        assert isinstance(request, ReadGlobal)
        for fn, args in self.nested:  # the client's code, serving it, calls back
            meta = encode(int(Op.CALL), None, (fn, args, {}))
            assert meta is not None
            self.client.call(meta, sync=True, nested=True)
        self.nested = []
        found = request.name in self.names
        self.client.respond(
            event.rid, pickle.dumps((found, self.names.get(request.name))), (), error=False
        )
