"""``tether up --tls``: a one-host pool on HTTPS with a ``tls://`` acceptor, for real.

The user's view: ``tether up --tls`` in one terminal; in another, plain
``tether run --gpus 0.5`` works with nothing more, because the config file
``up`` wrote names the pool's https URL, the token and the CA. The acceptor
listens on ``tls://`` and the pool refuses clients that do not trust the CA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether._errors import ConnectError
from tether.poolapi import PoolClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("openssl") is None,
        reason="tether up --tls makes its CA with the openssl command (apt-get install openssl)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data")
    env["USER"] = "ann"
    return env


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _up(tmp_path: Path, *flags: str, listen: str = "127.0.0.1:0") -> Iterator[str]:
    """``tether up FLAGS`` until the block ends (then SIGTERM, which must stop it)."""
    ready = tmp_path / "up.url"
    ready.unlink(missing_ok=True)
    log = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "tether", "up", *flags, "--listen", listen,
         "--acceptor-listen", "tcp://127.0.0.1:0", "--ready-file", str(ready)],
        env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists():
            assert up.poll() is None, (tmp_path / "up.out").read_text()
            assert time.monotonic() < deadline, "tether up never became ready"
            time.sleep(0.1)
        yield ready.read_text().strip()
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        _kill(up)
        log.close()
    assert code == 0, (tmp_path / "up.out").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_restart_with_tls_repoints_the_config(tmp_path: Path) -> None:
    """First `tether up` plain, then `--tls` on the same port: the config follows."""
    listen = f"127.0.0.1:{_free_port()}"
    config_file = tmp_path / "config" / "tether" / "config.toml"
    with _up(tmp_path, listen=listen) as url:
        assert url.startswith("http://")
    token = tomllib.loads(config_file.read_text())["pool"]["token"]
    with _up(tmp_path, "--tls", listen=listen) as url:
        assert url == f"https://{listen}"
        pool = tomllib.loads(config_file.read_text())["pool"]
        assert (pool["url"], pool["token"]) == (url, token)
        assert PoolClient(url, token, ca=pool["ca"]).me()["user"] == "ann"


def test_up_with_tls_then_run_with_nothing_more(tmp_path: Path) -> None:
    env = _env(tmp_path)
    ready = tmp_path / "up.url"
    log = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "tether", "up", "--tls", "--listen", "127.0.0.1:0",
         "--acceptor-listen", "tcp://127.0.0.1:0", "--ready-file", str(ready)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists():
            assert up.poll() is None, (tmp_path / "up.out").read_text()
            assert time.monotonic() < deadline, "tether up never became ready"
            time.sleep(0.1)
        url = ready.read_text().strip()
        out = (tmp_path / "up.out").read_text()
        assert url.startswith("https://127.0.0.1:"), out
        assert "acceptor  tls://127.0.0.1:" in out, out
        config = tomllib.loads((tmp_path / "config" / "tether" / "config.toml").read_text())
        ca = Path(config["pool"]["ca"])
        assert config["pool"]["url"] == url and ca.is_file()
        assert not (ca.parent / "ca.key").exists()  # nobody can sign more with this CA
        assert (ca.parent / "server.key").stat().st_mode & 0o077 == 0

        with pytest.raises(ConnectError, match="not trusted"):
            PoolClient(url, config["pool"]["token"], ca=None).me()

        script = tmp_path / "hello.py"
        script.write_text("import numpy as np\nprint('first line', int(np.ones(3).sum()))\n")
        done = subprocess.run(
            [sys.executable, "-m", "tether", "run", "--gpus", "0.5",
             "--remote", "numpy", "--", sys.executable, str(script)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
            start_new_session=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == "first line 3\n", done.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            _kill(up)
            pytest.fail("tether up did not stop on SIGTERM")
        finally:
            _kill(up)
            log.close()
    assert code == 0, (tmp_path / "up.out").read_text()
