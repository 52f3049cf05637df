"""Clear errors, never hangs: each failure a user can meet, against real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from e2e_harness import Acceptor

import tether
from tether.wire import (
    PROTOCOL_VERSION,
    FrameDecoder,
    Hello,
    Refused,
    decode_handshake,
    encode_handshake,
    frame_bytes,
)

pytestmark = pytest.mark.slow


def _token(acceptor: Acceptor) -> str:
    return acceptor.token_file.read_text().strip()


def _worker_host_pid(session_id: str) -> int:
    """The host pid of a session's worker process.

    Not the worker's own ``os.getpid()``: a sandboxed worker has its own PID
    namespace, where it is pid 2.
    """
    needle = f"--session\0{session_id}\0".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            cmdline = b"\0".join(argv)
            if needle in cmdline and argv[1:3] == [b"-m", b"tether.acceptor._worker"]:
                return int(name)
    raise AssertionError(f"no worker process for session {session_id}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_unreachable_acceptor_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        tether.ConnectError, match=f"cannot reach the acceptor at tcp://127.0.0.1:{port}"
    ):
        tether.connect(f"tcp://127.0.0.1:{port}", token="x")


def test_wrong_token_is_refused_and_the_acceptor_keeps_serving(acceptor: Acceptor) -> None:
    with pytest.raises(tether.AuthenticationError, match="wrong or missing token"):
        tether.connect(acceptor.url, token="not-the-token")
    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        assert s.import_module("math").sqrt(16.0) == 4.0


def test_module_missing_on_the_acceptor(acceptor: Acceptor) -> None:
    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        with pytest.raises(
            ModuleNotFoundError, match=r"no_such_module_xyz.*on the acceptor"
        ) as info:
            s.import_module("no_such_module_xyz")
        assert isinstance(info.value, tether.RemoteModuleNotFound)
        assert s.import_module("math").floor(2.5) == 2  # the session goes on


def test_protocol_version_mismatch_is_refused_with_both_versions(acceptor: Acceptor) -> None:
    host, port = acceptor.url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        hello = Hello(protocol=PROTOCOL_VERSION + 100, token=_token(acceptor))
        s.sendall(frame_bytes(encode_handshake(hello)))
        dec = FrameDecoder()
        while (frame := dec.next_frame()) is None:
            dec.feed(s.recv(65536))
    msg = decode_handshake(frame)
    assert isinstance(msg, Refused) and msg.code == "version"
    assert f"client speaks {PROTOCOL_VERSION + 100}" in msg.reason


def test_garbage_does_not_hurt_the_acceptor(acceptor: Acceptor) -> None:
    host, port = acceptor.url.removeprefix("tcp://").rsplit(":", 1)
    for junk in (b"GET / HTTP/1.1\r\n\r\n", os.urandom(64), b"\xff" * 16 + b"x" * 100):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(15)
            while s.recv(65536):
                pass  # the acceptor answers (a refusal) and closes
    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        assert s.import_module("math").pi > 3


def test_released_object_and_closed_session(acceptor: Acceptor) -> None:
    s = tether.connect(acceptor.url, token=_token(acceptor))
    collections = s.import_module("collections")
    xs = collections.deque([1, 2, 3])
    s.release(xs)
    with pytest.raises(tether.ObjectReleased, match="released"):
        len(xs)
    ys = collections.deque([4])
    s.close()
    with pytest.raises(tether.SessionClosed):
        len(ys)


def test_worker_death_is_device_lost_not_a_hang(acceptor: Acceptor) -> None:
    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        worker_pid = _worker_host_pid(s.session_id)
        assert worker_pid != os.getpid()
        os.kill(worker_pid, signal.SIGKILL)
        with pytest.raises(tether.DeviceLost, match="lost the worker"):
            s.import_module("math").sqrt(2.0)
        with pytest.raises(tether.DeviceLost):
            s.sync()


def test_client_death_frees_the_worker_within_seconds(acceptor: Acceptor) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time, tether
        s = tether.connect({acceptor.url!r}, token={_token(acceptor)!r})
        print(s.session_id, flush=True)
        time.sleep(60)
        """
    )
    client = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        worker_pid = _worker_host_pid(client.stdout.readline().strip())
        assert _pid_alive(worker_pid)
    finally:
        client.kill()
        client.wait(10)
        if client.stdout is not None:
            client.stdout.close()
    assert _wait_dead(worker_pid, 10), "the worker outlived its client"


def test_remote_exception_keeps_type_message_and_remote_traceback(acceptor: Acceptor) -> None:
    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        operator = s.import_module("operator")
        with pytest.raises(ZeroDivisionError) as info:
            operator.truediv(1, 0)
        assert isinstance(info.value.__cause__, tether.RemoteTraceback)
        assert "ZeroDivisionError: division by zero" in info.value.__cause__.text
        with pytest.raises(FileNotFoundError) as info2:
            s.import_module("io").open("/definitely/not/here")
        assert info2.value.filename == "/definitely/not/here"


def test_an_argument_that_cannot_travel_is_a_clear_type_error(acceptor: Acceptor) -> None:
    import threading

    with tether.connect(acceptor.url, token=_token(acceptor)) as s:
        builtins = s.import_module("builtins")
        with pytest.raises(TypeError, match="cannot send this call to the worker"):
            builtins.repr(threading.Lock())
        assert builtins.repr("still fine") == "'still fine'"


def test_an_older_client_gets_protocol_version_mismatch(
    acceptor: Acceptor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Speak as a client of another protocol version would.
    import tether.client._connect as connect_module

    monkeypatch.setattr(connect_module, "PROTOCOL_VERSION", PROTOCOL_VERSION - 1)
    with pytest.raises(tether.ProtocolVersionMismatch, match="install the same Tether version"):
        tether.connect(acceptor.url, token=_token(acceptor))
