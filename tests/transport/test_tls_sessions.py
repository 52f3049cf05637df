"""``tls://`` sessions against a real ``tether serve``, certificates made in the test.

What a user sees: a session over TLS works end to end (calls, arrays both ways,
``tether run``); a client that cannot verify the acceptor's certificate (another
CA, the system's trust, a certificate for another host) is refused at once with
one clear line, and the acceptor goes on serving; a plain client at a TLS
acceptor, or a TLS client at a plain one, is told what is wrong.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tether
from tether._errors import AuthenticationError, ConnectError, TetherError
from tether.acceptor._server import Acceptor, token_authorizer
from tether.transport import Address

from .servehelp import Served, certificates, child_env, needs_openssl, tether_serve

pytestmark = [pytest.mark.slow, needs_openssl]
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    certificates(root / "good")
    certificates(root / "other")  # another CA, same host names
    certificates(root / "elsewhere", hosts=("elsewhere.example",))
    return root


@pytest.fixture(scope="module")
def tls_acceptor(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("tls-acceptor")
    good = pki / "good"
    with tether_serve(
        work, "tls://127.0.0.1:0",
        "--tls-cert", str(good / "server.crt"), "--tls-key", str(good / "server.key"),
    ) as served:  # fmt: skip
        yield served


def _works(url: str, token: str, ca: Path | None) -> None:
    with tether.connect(url, token, remote=("numpy",), tls_ca=ca, ordered_output=False) as s:
        rnp = s.import_module("numpy")
        local = np.arange(1 << 20, dtype=np.int64)  # 8 MiB up, then back down
        remote = rnp.asarray(local) * 3
        assert int(remote.sum()) == int(local.sum()) * 3
        back = np.frombuffer(remote.tobytes(), dtype=np.int64)  # 8 MiB down, by value
        assert np.array_equal(back, local * 3)


def test_a_session_over_tls_works_end_to_end(tls_acceptor: Served, pki: Path) -> None:
    assert tls_acceptor.url.startswith("tls://127.0.0.1:")
    _works(tls_acceptor.url, tls_acceptor.token, pki / "good" / "ca.crt")


def test_tether_run_over_tls_with_the_ca_from_the_command_line(
    tls_acceptor: Served, pki: Path, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    script.write_text("import numpy as np\nprint(int(np.arange(10).sum()), type(np).__name__)\n")
    done = subprocess.run(
        [sys.executable, "-m", "tether", "run", "--connect", tls_acceptor.url,
         "--tls-ca", str(pki / "good" / "ca.crt"), "--token-file", str(tls_acceptor.token_file),
         "--remote", "numpy", "--", sys.executable, str(script)],
        env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "45 RemoteModule\n"


@pytest.mark.parametrize(
    ("ca", "why"),
    [
        ("other", "unable to get local issuer certificate"),
        (None, "unable to get local issuer certificate"),  # the system's trust
    ],
)
def test_a_client_that_cannot_verify_the_acceptor_is_refused(
    tls_acceptor: Served, pki: Path, ca: str | None, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_TLS_CA", raising=False)
    ca_file = None if ca is None else pki / ca / "ca.crt"
    with pytest.raises(ConnectError) as info:
        tether.connect(tls_acceptor.url, tls_acceptor.token, remote=("numpy",), tls_ca=ca_file)
    message = str(info.value)
    assert "\n" not in message
    assert f"the TLS certificate of the acceptor at {tls_acceptor.url} is not trusted" in message
    assert why in message and "--tls-ca" in message
    # The acceptor shrugs it off and serves the next, trusting, client.
    _works(tls_acceptor.url, tls_acceptor.token, pki / "good" / "ca.crt")


def test_a_wrong_token_over_tls_is_refused_as_such(tls_acceptor: Served, pki: Path) -> None:
    with pytest.raises(AuthenticationError, match="wrong or missing token"):
        tether.connect(tls_acceptor.url, "not-the-token", remote=("numpy",),
                       tls_ca=pki / "good" / "ca.crt")  # fmt: skip


def test_a_certificate_for_another_host_is_refused(pki: Path, tmp_path: Path) -> None:
    cert = pki / "elsewhere"
    with (
        tether_serve(
            tmp_path, "tls://127.0.0.1:0",
            "--tls-cert", str(cert / "server.crt"), "--tls-key", str(cert / "server.key"),
        ) as served,
        pytest.raises(ConnectError) as info,
    ):  # fmt: skip
        tether.connect(served.url, served.token, remote=("numpy",), tls_ca=cert / "ca.crt")
    message = str(info.value)
    assert "\n" not in message
    assert "is not for 127.0.0.1 (IP address mismatch" in message, message


def test_a_plain_client_at_a_tls_acceptor_is_told_to_use_tls(tls_acceptor: Served) -> None:
    plain = tls_acceptor.url.replace("tls://", "tcp://")
    with pytest.raises(ConnectError, match=r"if it serves TLS, connect to tls://127\.0\.0\.1:"):
        tether.connect(plain, tls_acceptor.token, remote=("numpy",))


def test_a_tls_client_at_a_plain_acceptor_is_told_so(pki: Path, tmp_path: Path) -> None:
    with tether_serve(tmp_path, "tcp://127.0.0.1:0") as served:
        url = served.url.replace("tcp://", "tls://")
        with pytest.raises(ConnectError, match=r"TLS handshake with the acceptor at .* failed"):
            tether.connect(url, served.token, remote=("numpy",), tls_ca=pki / "good" / "ca.crt")


def test_tls_serve_without_a_certificate_says_what_it_needs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "--listen", "tls://127.0.0.1:0",
         "--token-file", str(tmp_path / "token")],
        env=child_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs a certificate and its key: --tls-cert PATH --tls-key PATH" in done.stderr


def test_a_bad_ca_file_is_a_clear_error(tls_acceptor: Served, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TetherError, match="cannot use the TLS CA file"):
        tether.connect(tls_acceptor.url, tls_acceptor.token, remote=("numpy",), tls_ca=junk)


def test_an_acceptor_needs_tls_settings_that_match_its_address() -> None:
    with pytest.raises(TetherError, match="tls:// address needs a certificate"):
        Acceptor(Address("tls", "127.0.0.1", 0), token_authorizer("t"))


def test_bytes_sent_right_behind_the_hello_reach_the_worker(
    tls_acceptor: Served, pki: Path
) -> None:
    """The relay hands the worker what the acceptor read past the hello: a BYE sent in
    the same TLS record as the hello ends the session at once; were it lost, the
    worker would wait for it and the channel would time out instead of closing."""
    from tether.transport import Channel, ChannelClosed, connect, parse_address
    from tether.wire import (
        PROTOCOL_VERSION,
        Hello,
        Kind,
        Role,
        encode_frame,
        encode_handshake,
        frame_bytes,
    )

    sock = connect(parse_address(tls_acceptor.url), tls_ca=pki / "good" / "ca.crt")
    channel = Channel(sock, Role.CLIENT)
    try:
        hello = Hello(protocol=PROTOCOL_VERSION, token=tls_acceptor.token)
        channel.conn.check_outgoing(Kind.HELLO)
        together = frame_bytes(encode_handshake(hello)) + frame_bytes(
            encode_frame(Kind.BYE, 0, 0, b"")
        )
        channel.send_pieces([together])  # one write: one TLS record
        assert channel.recv(timeout=60).kind == Kind.WELCOME
        with pytest.raises(ChannelClosed):
            channel.recv(timeout=60)
    finally:
        channel.close()
