"""Real ``tether serve`` processes and throw-away certificates for the transport tests.

Certificates come from :func:`tether.transport._selfsigned.make_self_signed`
(the ``openssl`` command). Where ``openssl`` is missing the TLS tests skip and
say so; .ci/run installs it, so CI does not skip them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from _serving import sandbox_flags
from tether.transport._selfsigned import SelfSigned, make_self_signed

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="the openssl command makes the test certificates (apt-get install openssl)",
)


def certificates(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> SelfSigned:
    """A fresh CA and a server certificate for ``hosts``, under ``directory``."""
    return make_self_signed(directory, hosts=hosts)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Served:
    url: str
    token: str
    token_file: Path
    pid: int


@contextlib.contextmanager
def tether_serve(
    work: Path,
    listen: str,
    *extra: str,
    env: dict[str, str] | None = None,
    preexec: object = None,
) -> Iterator[Served]:
    """Run ``tether serve --listen LISTEN EXTRA...`` until the block ends."""
    work.mkdir(parents=True, exist_ok=True)
    token_file, ready = work / "token", work / "addr"
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--listen", listen,
         "--token-file", str(token_file), "--ready-file", str(ready), *sandbox_flags(),
         *extra],
        env=env or child_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=preexec,  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"tether serve exited: {(work / 'serve.log').read_text()}")
            assert time.monotonic() < deadline, "tether serve did not start in time"
            time.sleep(0.05)
        url, token = ready.read_text().strip(), token_file.read_text().strip()
        yield Served(url, token, token_file, proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
