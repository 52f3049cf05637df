"""Bytes before authentication, against a real acceptor socket (issue 10).

Whatever a peer sends before it has authenticated ends in a REFUSED frame or a
silent close: never an exception out of the connection handler, never a
traceback in the log, and the log lines about dropped peers are rate-limited.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator

import pytest
from acceptor_thread import running_acceptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.acceptor._ratelog import RateLimitedLog
from tether.acceptor._server import token_authorizer
from tether.wire import FrameDecoder, Kind, Refused, decode_handshake

TOKEN = "fuzz-token"
IO_TIMEOUT_S = 15.0


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def acceptor() -> Iterator[tuple[str, Records]]:
    records = Records()
    loggers = [logging.getLogger(n) for n in ("tether", "asyncio")]
    for lg in loggers:
        lg.addHandler(records)
    try:
        with running_acceptor(token_authorizer(TOKEN)) as url:
            yield url, records
    finally:
        for lg in loggers:
            lg.removeHandler(records)


def exchange(url: str, data: bytes) -> bytes:
    """Send ``data``, end our side, and return all the acceptor answered."""
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=IO_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # it may refuse and close before it read everything
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def assert_refused_or_closed(answer: bytes) -> None:
    if not answer:
        return
    dec = FrameDecoder()
    dec.feed(answer)
    frame = dec.next_frame()
    assert frame is not None and frame.kind == Kind.REFUSED, answer[:200]
    assert isinstance(decode_handshake(frame), Refused)
    assert dec.next_frame() is None


def assert_clean_log(records: Records) -> None:
    bad = [r for r in records.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage()[:300] for r in bad]


def hello_bytes(meta: bytes, *, kind: int = Kind.HELLO, nbufs: int = 0) -> bytes:
    return struct.pack("<IBBHQ", len(meta), kind, 0, nbufs, 0) + meta


ANY_TEXT = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=12,
)
WELL_FRAMED = st.builds(
    lambda body: hello_bytes(json.dumps(body).encode()),
    st.fixed_dictionaries({"protocol": st.integers(0, 3), "token": ANY_TEXT, "info": JSON}),
)
HEADERS = st.builds(
    lambda meta_len, kind, nbufs, rest: struct.pack("<IBBHQ", meta_len, kind, 0, nbufs, 0) + rest,
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
    st.integers(0, 2**16 - 1),
    st.binary(max_size=64),
)
ANY_BYTES = st.binary(max_size=512)
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(hello_bytes(b'{"protocol": 2, "token": "\\ud800"}'), id="lone-surrogate"),
        pytest.param(
            hello_bytes(
                b'{"protocol": 2, "token": "t", "info": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
            ),
            id="deep-nesting",
        ),
        pytest.param(hello_bytes(b"{}", nbufs=3), id="buffers"),
        pytest.param(hello_bytes(b"x" * 10, kind=Kind.CALL), id="not-a-hello"),
        pytest.param(struct.pack("<I", 2**32 - 1) + b"\0" * 12, id="huge-length"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"", id="nothing"),
    ],
)
def test_hostile_hellos_are_refused_cleanly(acceptor: tuple[str, Records], data: bytes) -> None:
    url, records = acceptor
    records.records.clear()
    assert_refused_or_closed(exchange(url, data))
    assert_clean_log(records)


def test_a_wrong_token_is_refused_as_auth(acceptor: tuple[str, Records]) -> None:
    url, _ = acceptor
    answer = exchange(url, hello_bytes(json.dumps({"protocol": 2, "token": "nope"}).encode()))
    dec = FrameDecoder()
    dec.feed(answer)
    frame = dec.next_frame()
    assert frame is not None
    msg = decode_handshake(frame)
    assert isinstance(msg, Refused) and msg.code in ("auth", "version")


@FUZZ
@given(st.one_of(WELL_FRAMED, HEADERS, ANY_BYTES))
def test_fuzzed_hellos_never_raise(acceptor: tuple[str, Records], data: bytes) -> None:
    url, records = acceptor
    records.records.clear()
    assert_refused_or_closed(exchange(url, data))
    assert_clean_log(records)


def test_dropped_peers_are_logged_at_a_bounded_rate(acceptor: tuple[str, Records]) -> None:
    url, records = acceptor
    before = len(records.records)
    for _ in range(60):
        exchange(url, b"garbage that is not a hello")
    lines = [r for r in records.records[before:] if "dropped connection" in r.getMessage()]
    assert len(lines) <= 11, len(lines)  # the burst, and at most one more as it refills


def test_the_rate_limit_counts_what_it_suppressed() -> None:
    now = [0.0]
    records = Records()
    logger = logging.getLogger("tether.test.ratelog")
    logger.addHandler(records)
    try:
        limited = RateLimitedLog(logger, burst=2, interval=10.0, clock=lambda: now[0])
        assert [limited.warning("x %d", i) for i in range(5)] == [True, True, False, False, False]
        now[0] += 5.0  # one token back
        assert limited.warning("y")
        assert [r.getMessage() for r in records.records] == [
            "x 0", "x 1", "y (3 similar lines suppressed)"
        ]  # fmt: skip
    finally:
        logger.removeHandler(records)
