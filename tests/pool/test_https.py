"""The pool over HTTPS (``tether pool serve --tls-cert/--tls-key``), with real processes.

A user's client and an acceptor's node link verify the pool's certificate
against a CA made in the test; a client that cannot verify it, or that speaks
the wrong scheme, gets one clear line. The last test is the whole chain a TLS
deployment runs: the pool on HTTPS, an acceptor on ``tls://`` registering over
HTTPS, and ``tether run --pool`` with its token and CA from files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _serving import sandbox_flags
from tether._errors import ConnectError
from tether.poolapi import PoolClient
from tether.transport._selfsigned import SelfSigned, make_self_signed

from ._pooltest import PoolServer, repo_env, run_pool_server

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="the openssl command makes the test certificates (apt-get install openssl)",
)
pytestmark = [pytest.mark.slow, needs_openssl]
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SelfSigned]:
    root = tmp_path_factory.mktemp("pki")
    return {
        "good": make_self_signed(root / "good", hosts=("127.0.0.1", "localhost")),
        "other": make_self_signed(root / "other", hosts=("127.0.0.1", "localhost")),
    }


@pytest.fixture(scope="module")
def https_pool(
    pki: dict[str, SelfSigned], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PoolServer]:
    good = pki["good"]
    root = tmp_path_factory.mktemp("https-pool")
    with run_pool_server(root, None, "--tls-cert", str(good.cert), "--tls-key", str(good.key)) as p:
        yield p


def test_a_client_talks_to_the_pool_over_https(
    https_pool: PoolServer, pki: dict[str, SelfSigned]
) -> None:
    assert https_pool.url.startswith("https://127.0.0.1:")
    admin = PoolClient(https_pool.url, https_pool.admin_token, ca=pki["good"].ca)
    me = admin.me()
    assert (me["user"], me["admin"]) == ("admin", True)
    with contextlib.suppress(Exception):
        admin.create_team("https-team")
    assert "https-team" in {t["name"] for t in admin.teams()}


@pytest.mark.parametrize("ca", ["other", None])
def test_a_pool_certificate_that_does_not_verify_is_refused(
    https_pool: PoolServer,
    pki: dict[str, SelfSigned],
    ca: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TETHER_TLS_CA", raising=False)
    client = PoolClient(
        https_pool.url, https_pool.admin_token, ca=None if ca is None else pki[ca].ca
    )
    with pytest.raises(ConnectError) as info:
        client.me()
    message = str(info.value)
    assert "\n" not in message
    assert f"the TLS certificate of the pool at {https_pool.url} is not trusted" in message
    assert "--tls-ca" in message


def test_plain_http_at_an_https_pool_is_told_to_use_https(https_pool: PoolServer) -> None:
    plain = https_pool.url.replace("https://", "http://")
    with pytest.raises(ConnectError, match="if it serves HTTPS, use https://"):
        PoolClient(plain, https_pool.admin_token, timeout=10).me()


def test_https_at_a_plain_pool_is_told_it_is_not_https(
    tmp_path: Path, pki: dict[str, SelfSigned]
) -> None:
    with run_pool_server(tmp_path / "plain") as plain:
        url = plain.url.replace("http://", "https://")
        with pytest.raises(ConnectError, match="is it serving https"):
            PoolClient(url, plain.admin_token, ca=pki["good"].ca, timeout=10).me()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_node_registration_and_a_run_over_https_and_tls(
    https_pool: PoolServer, pki: dict[str, SelfSigned], tmp_path: Path
) -> None:
    good = pki["good"]
    admin = PoolClient(https_pool.url, https_pool.admin_token, ca=good.ca)
    with contextlib.suppress(Exception):
        admin.create_team("tls-team")
    admin.create_user("tina", teams=["tls-team"])
    user_token = tmp_path / "user-token"
    user_token.write_text(admin.create_token(user="tina")["token"] + "\n")
    node_token = tmp_path / "node-token"
    node_token.write_text(admin.create_token(kind="node", node="tlsnode")["token"] + "\n")
    env = repo_env()
    env.pop("TETHER_TLS_CA", None)
    registered = tmp_path / "registered"
    log = (tmp_path / "serve.log").open("wb")
    acceptor = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--listen", "tls://127.0.0.1:0",
         "--tls-cert", str(good.cert), "--tls-key", str(good.key), "--tls-ca", str(good.ca),
         "--pool", https_pool.url, "--node-token-file", str(node_token), "--name", "tlsnode",
         "--devices", "cpu", "--ready-file", str(registered), *sandbox_flags()],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not registered.exists():
            assert acceptor.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the acceptor never registered"
            time.sleep(0.05)
        nodes = {n["name"]: n for n in admin.nodes()}
        assert nodes["tlsnode"]["address"].startswith("tls://127.0.0.1:")
        script = tmp_path / "job.py"
        script.write_text("import numpy as np\nprint(int(np.arange(100).sum()))\n")
        done = subprocess.run(
            [sys.executable, "-m", "tether", "run", "--pool", https_pool.url,
             "--pool-token-file", str(user_token), "--tls-ca", str(good.ca), "--gpus", "0.5",
             "--remote", "numpy", "--", sys.executable, str(script)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + (tmp_path / "serve.log").read_text()
        assert done.stdout == "4950\n"
        assert "tether: session" in done.stderr
    finally:
        _kill(acceptor)
        log.close()
