"""The leak plugin (tests/_leaks.py) on a suite of its own, in a child pytest."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = textwrap.dedent(
    """
    import os, socket, subprocess, sys, threading, time
    import pytest

    SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]

    def test_clean():
        t = threading.Thread(target=time.sleep, args=(0.2,))
        t.start()  # still running at teardown: ends within the grace
        with socket.socket() as s:
            pass
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_thread():
        threading.Thread(target=time.sleep, args=(60,), name="sleeper", daemon=True).start()

    def test_fd():
        test_fd.keep = socket.socket()

    def test_child():
        test_child.keep = subprocess.Popen(SLEEP)

    def test_orphan():
        # A grandchild whose parent exits at once: no longer our child.
        code = f"import subprocess; subprocess.Popen({SLEEP!r})"
        subprocess.run([sys.executable, "-c", code], check=True)

    @pytest.fixture(scope="module")
    def server():
        proc = subprocess.Popen(SLEEP)
        listener = socket.create_server(("127.0.0.1", 0))
        yield listener
        listener.close()
        proc.kill()
        proc.wait()

    def test_uses_a_module_fixture(server):
        pass

    def test_uses_it_again(server):
        pass

    @pytest.mark.allow_leaks("this test shows the marker")
    def test_marked():
        test_marked.keep = socket.socket()

    @pytest.mark.allow_leaks
    def test_marked_without_a_reason():
        pass

    @pytest.fixture(scope="module")
    def careless():
        yield subprocess.Popen(SLEEP)  # never ended

    def test_uses_a_careless_fixture(careless):
        pass  # the last test: the module's fixtures end at its teardown
    """
)


def test_the_plugin_fails_exactly_the_leaking_tests(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["_leaks"]\n')
    env = {**os.environ, "PYTEST_LEAKS_GRACE_S": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env.pop("PYTEST_LEAKS_RUN", None)  # the child run tags its own processes
    # Its own process group: the processes its tests leak on purpose die with it.
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_suite.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = child.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    errors = {
        line.split("::")[1].split()[0]
        for line in stdout.splitlines()
        if line.startswith("ERROR test_suite.py::")
    }
    assert errors == {
        "test_thread", "test_fd", "test_child", "test_orphan", "test_marked_without_a_reason",
        "test_uses_a_careless_fixture",
    }, stdout  # fmt: skip
    assert "fixture 'careless' (module) left behind" in stdout
    assert "thread 'sleeper' (daemon)" in stdout
    assert "-> socket:[" in stdout
    assert "time.sleep(60)" in stdout
    assert "needs a reason" in stdout
