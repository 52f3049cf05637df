"""The first hour without surprises (issue 13), with real processes.

Each test plays a new user who makes one of the mistakes, or meets one of the
events, that used to end in silence or in a traceback: a ``--remote`` typo, an
unreachable acceptor, a pool URL or month in the wrong form, ``-v`` to see
where torch runs. The pool half (``tether up``, queue, quota, drain, stop) is
in test_first_hour_pool.py. Every subprocess is bounded by a timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from _serving import sandbox_flags

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120.0

SCRIPT = """\
from pathlib import Path
Path("ran").write_text("1")
import torch
print("sum", int(torch.ones(3).sum()))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no user config file
    return env


def _tether(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m tether ARGV`` in ``tmp_path``, where the script is written first."""
    (tmp_path / "script.py").write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, "-m", "tether", *argv],
        env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
        check=False,
    )  # fmt: skip


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return _tether(tmp_path, *argv, "--", sys.executable, str(tmp_path / "script.py"))


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


def _stopped_before_the_script(r: subprocess.CompletedProcess[str], start: str, where: Path) -> str:
    """The run failed in one line that starts with ``start``, before the first line of
    the script in ``where`` (nothing ran on the wrong machine); that line."""
    assert r.returncode == 1, r.stderr
    line = _one_line(r.stderr)
    assert line.startswith(start), line
    assert r.stdout == ""
    assert not (where / "ran").exists()
    return line


def test_a_remote_typo_fails_at_once_naming_the_closest_module(tmp_path: Path) -> None:
    r = run(tmp_path, "run", "--remote", "troch")
    line = _stopped_before_the_script(
        r, "tether: error: no module named 'troch' on the acceptor", tmp_path
    )
    assert "did you mean 'torch'?" in line, line


def test_a_remote_typo_fails_in_tether_connect_too() -> None:
    with pytest.raises(tether.RemoteModuleNotFound, match="did you mean 'numpy'") as info:
        tether.connect(remote=["nunpy"])
    assert info.value.name == "nunpy"
    # A module that exists is fine, and nothing is imported for the check.
    with tether.connect(remote=["torch"]) as s:
        assert "torch" not in s.import_module("sys").modules


def test_plain_run_prints_only_the_scripts_output_and_v_says_where(tmp_path: Path) -> None:
    plain = run(tmp_path, "run", "--remote", "torch")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == "sum 3\n" and plain.stderr == ""
    verbose = run(tmp_path, "run", "-v", "--remote", "torch")
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout == "sum 3\n"
    line = _one_line(verbose.stderr)
    assert "torch runs in a local worker that `tether run` started on this machine" in line
    assert "worker pid " in line and "device " in line and "tcp://127.0.0.1:" in line


def _bare_python(tmp_path: Path) -> str:
    """The python of a new venv with nothing installed: no tether, no cloudpickle, no torch."""
    venv = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True, capture_output=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    return str(venv / "bin" / "python")


def _run_command(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return _tether(tmp_path, "run", "--remote", "torch", "--", *command)


def test_another_python_than_tethers_runs_the_script_remotely(tmp_path: Path) -> None:
    """`tether` from one environment (pipx, a tools venv), the script's interpreter from
    another: the client loads with Tether's own cloudpickle. This used to print "Error in
    sitecustomize" and run the script locally (here: no torch, ModuleNotFoundError)."""
    r = _run_command(tmp_path, _bare_python(tmp_path), "script.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sum 3\n" and r.stderr == ""


def test_a_python_that_cannot_load_the_client_stops_before_the_script(tmp_path: Path) -> None:
    """Whatever keeps the client from loading (here a broken cloudpickle first on the
    script's path), the script never starts on the wrong machine: one line, exit 1."""
    broken = tmp_path / "broken" / "cloudpickle"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    shell = f'PYTHONPATH="{broken.parent}:$PYTHONPATH" exec "$0" script.py'
    r = _run_command(tmp_path, "sh", "-c", shell, _bare_python(tmp_path))
    line = _stopped_before_the_script(r, "tether: error: ", tmp_path)
    assert "cannot load Tether's client (ImportError: broken on purpose)" in line, line


def test_v_names_a_remote_acceptor_and_the_worker(tmp_path: Path) -> None:
    token, ready = tmp_path / "token", tmp_path / "ready"
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
             "--token-file", str(token), "--ready-file", str(ready), *sandbox_flags()],
            env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _wait(serve, ready)
        url = ready.read_text().strip()
        r = run(tmp_path, "run", "-v", "--connect", url, "--token-file", str(token),
                "--remote", "torch")  # fmt: skip
        assert r.returncode == 0 and r.stdout == "sum 3\n", r.stderr
        line = _one_line(r.stderr)
        assert line.startswith(f"tether: torch runs on the acceptor at {url}: session "), line
        assert "local worker" not in line
        # --token-file reaches the script as the file's path: the token itself
        # stays out of the script's environment.
        probe = tmp_path / "probe.py"
        probe.write_text("import os\nprint(os.environ.get('TETHER_TOKEN'), "
                         "os.environ.get('TETHER_TOKEN_FILE'))\n")  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "tether", "run", "--connect", url, "--token-file", str(token),
             "--remote", "torch", "--", sys.executable, str(probe)],
            env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
            timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        assert r.returncode == 0 and r.stdout == f"None {token.resolve()}\n", r.stderr
    finally:
        serve.terminate()
        serve.wait(30)


def _wait(proc: subprocess.Popen[bytes], ready: Path) -> None:
    import time

    deadline = time.monotonic() + TIMEOUT_S
    while not ready.exists():
        assert proc.poll() is None, "the acceptor exited"
        assert time.monotonic() < deadline, "the acceptor never became ready"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_failures_are_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    port = _free_port()
    r = run(tmp_path, "run", "--connect", f"tcp://127.0.0.1:{port}", "--token", "x",
            "--remote", "torch")  # fmt: skip
    assert r.returncode == 1
    assert _one_line(r.stderr) == (
        f"tether: error: cannot reach the acceptor at tcp://127.0.0.1:{port}: Connection refused"
    )
    assert not (tmp_path / "ran").exists()

    r = run(tmp_path, "run", "--connect", "http://gpu:7070", "--token", "x", "--remote", "torch")
    assert r.returncode == 2
    assert "use tcp://HOST:PORT" in _one_line(r.stderr)

    r = run(tmp_path, "run", "--connect", "tcp://127.0.0.1:1", "--remote", "torch")
    assert r.returncode == 2 and "--token-file" in _one_line(r.stderr)

    # The pool's URL: an acceptor's scheme is named as such, not sent to http://tcp://...
    r = run(tmp_path, "run", "--pool", "tcp://pool:8600", "--token", "tu_x", "--gpus", "0.5",
            "--remote", "torch")  # fmt: skip
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert "must be http://HOST:PORT or https://HOST:PORT" in line and "--connect" in line
    assert "http://tcp://" not in line

    r = run(tmp_path, "run", "--pool", f"127.0.0.1:{port}", "--token", "tu_x", "--gpus", "0.5",
            "--remote", "torch")  # fmt: skip
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line.startswith(f"tether: error: cannot reach the pool at http://127.0.0.1:{port}")
    assert "is it running" in line


def test_with_pool_the_token_options_name_the_pool_token(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    r = run(tmp_path, "run", "--pool", "http://127.0.0.1:9", "--token-file", str(missing),
            "--gpus", "0.5", "--remote", "torch")  # fmt: skip
    assert r.returncode == 2
    assert f"cannot read the token file {missing}" in _one_line(r.stderr)

    r = run(tmp_path, "run", "--pool", "http://127.0.0.1:9", "--token-file", str(missing),
            "--pool-token", "tu_x", "--gpus", "0.5", "--remote", "torch")  # fmt: skip
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert "--token-file and --pool-token each name the pool token" in line, line
    assert not (tmp_path / "ran").exists()


def test_pool_commands_validate_url_month_and_token_file(tmp_path: Path) -> None:
    port = _free_port()
    r = _tether(tmp_path, "pool", "status", "--pool", "tcp://h:1", "--token", "t")
    assert r.returncode == 1 and "tcp:// is an acceptor's address" in _one_line(r.stderr)

    r = _tether(tmp_path, "usage", "--month", "nov", "--pool", "http://h:1", "--token", "t")
    line = _one_line(r.stderr)
    assert r.returncode == 1 and "give a UTC month as YYYY-MM, e.g. 20" in line, line
    assert "\\d" not in line and "pattern" not in line

    missing = tmp_path / "no-such-token"
    r = _tether(tmp_path, "pool", "status", "--pool", f"http://127.0.0.1:{port}",
                "--token-file", str(missing))  # fmt: skip
    assert r.returncode == 1 and f"cannot read the token file {missing}" in _one_line(r.stderr)


def test_up_without_the_pool_extra_says_what_to_install(tmp_path: Path) -> None:
    # -S: no site-packages, so none of the [pool] extra's packages can be found,
    # as on a machine where only `pip install tether` was run.
    r = subprocess.run(
        [sys.executable, "-S", "-m", "tether", "up", "--data-dir", str(tmp_path / "up")],
        env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "pip install 'tether[pool]'" in line and "fastapi" in line, line
    assert not (tmp_path / "up").exists()  # nothing started, nothing made


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--gpus", "0.5"), "no pool URL (--pool, $TETHER_POOL)"),
        (("--gpus", "0.5", "--pool", "http://127.0.0.1:9"), "no API token"),
        (("--pool", "tcp://127.0.0.1:9", "--token", "t"), "is an acceptor's address"),
        (("--gpus", "1.5", "--pool", "http://127.0.0.1:9", "--token", "t"), "--gpus 1.5"),
    ],
)
def test_a_pool_run_that_cannot_start_says_why_in_one_line(
    tmp_path: Path, argv: tuple[str, ...], says: str
) -> None:
    r = run(tmp_path, "run", *argv, "--remote", "torch")
    assert r.returncode == 2, r.stderr
    assert says in _one_line(r.stderr)
    assert r.stdout == ""
