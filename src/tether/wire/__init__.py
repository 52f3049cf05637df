"""The wire protocol, sans-I/O: bytes in, frames and events out.

Imports no socket, no asyncio and no framework, so the blocking client, the
acceptor, the worker and the tests all drive the same code.
"""

from tether.wire._frames import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    Frame,
    FrameDecoder,
    encode_frame,
    frame_bytes,
)
from tether.wire._messages import (
    PROTOCOL_VERSION,
    Connection,
    Flag,
    Hello,
    Kind,
    Refused,
    Role,
    State,
    Welcome,
    decode_handshake,
    encode_handshake,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "Connection",
    "Flag",
    "Frame",
    "FrameDecoder",
    "Hello",
    "Kind",
    "Refused",
    "Role",
    "State",
    "Welcome",
    "decode_handshake",
    "encode_frame",
    "encode_handshake",
    "frame_bytes",
]
