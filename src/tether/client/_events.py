"""What a frame from the worker means to the client: the events of
:meth:`tether.client._protocol.ClientProtocol.receive_frame`.

Frozen records, built once per received frame; ``meta`` and ``buffers`` are
the frame's own (still encoded: the session decodes them, since decoding makes
proxies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Retyped:
    """A pipelined call's result is a handle of class ``tid``, not of the class
    guessed: ``result`` (a weak reference to the proxy made for it, which may be
    gone) must take that class. ``types``: descriptions of types not seen before."""

    result: Callable[[], Any]
    tid: int
    types: tuple[tuple[Any, ...], ...]


#: What a received frame means; Reply, Exhausted and Failed end a wait.
Event = Reply | Exhausted | Failed | Output | WarningFrame | Request | Lost | Retyped
