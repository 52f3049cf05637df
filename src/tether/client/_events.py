"""What a frame from the worker means to the client: the events of
:meth:`tether.client._protocol.ClientProtocol.receive_frame`.

Frozen records, built once per received frame; ``meta`` and ``buffers`` are
the frame's own (still encoded: the session decodes them, since decoding makes
proxies).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """The value of the awaited synchronous call (still encoded)."""

    seq: int
    flags: int
    meta: bytes
    buffers: tuple[memoryview, ...]


@dataclass(frozen=True, slots=True)
class Exhausted:
    """The awaited NEXT call found its iterator at its end."""

    seq: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The awaited call failed, or (``deferred``) a pipelined one before it did."""

    seq: int
    meta: bytes
    deferred: bool


@dataclass(frozen=True, slots=True)
class Output:
    data: bytes
    stderr: bool


@dataclass(frozen=True, slots=True)
class WarningFrame:
    meta: bytes


@dataclass(frozen=True, slots=True)
class Request:
    """The worker asks the client for something; answer with :meth:`ClientProtocol.respond`."""

    rid: int
    meta: bytes
    buffers: tuple[memoryview, ...]


@dataclass(frozen=True, slots=True)
class Lost:
    """The worker's last word: it ended the session, for ``why``."""

    why: str


#: What a received frame means; Reply, Exhausted and Failed end a wait.
Event = Reply | Exhausted | Failed | Output | WarningFrame | Request | Lost
