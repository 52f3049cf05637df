"""``tether up`` with real processes: a pool and an acceptor, then ``tether run`` against them.

The test plays the user: ``tether up`` in one "terminal" (a subprocess with its
own HOME-like directories), then ``tether run --pool URL --gpus 0.5`` and plain
``tether run --gpus 0.5`` (URL and token from the config file ``up`` wrote) in
another. Bounded: every process has a timeout and its group is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

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


def test_up_then_run_in_another_terminal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    ready = tmp_path / "up.url"
    log = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "tether", "up", "--listen", "127.0.0.1:0",
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
        assert url in out and "an admin of this pool" in out, out
        assert "tu_" not in out  # no token is printed
        config = tomllib.loads((tmp_path / "config" / "tether" / "config.toml").read_text())
        assert config["pool"]["url"] == url and config["pool"]["token"].startswith("tu_")
        assert (tmp_path / "config" / "tether" / "config.toml").stat().st_mode & 0o077 == 0

        script = tmp_path / "hello.py"
        script.write_text("import torch\nprint('first line', int(torch.ones(3).sum()))\n")
        for extra in (["--pool", url], []):  # explicit URL, then from the config file
            done = subprocess.run(
                [sys.executable, "-m", "tether", "run", *extra, "--gpus", "0.5",
                 "--remote", "torch", "--", sys.executable, str(script)],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
                start_new_session=True,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout == "first line 3\n", done.stderr
            assert "tether: session" in done.stderr
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
