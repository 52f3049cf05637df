"""Fixtures for the end-to-end remoting tests; the helpers live in e2e_harness.py."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import (
    ACCEPTOR_START_TIMEOUT_S,
    TIMINGS,
    Acceptor,
    Completed,
    ScriptSpec,
    base_env,
    kill_group,
    run_local,
)

from _serving import sandbox_flags
from _timings import WORKER_KEY, write_table

# --------------------------------------------------------------------------- grouping


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per script: its local run (``local_run``, cached per
    worker), its remote runs and its zero-install run share a worker, so the
    local run is made once while the scripts spread over the workers."""
    for item in items:
        spec = getattr(item, "callspec", None) and item.callspec.params.get("spec")
        if isinstance(spec, ScriptSpec):
            item.add_marker(pytest.mark.xdist_group(f"script:{spec.id}"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[ScriptSpec], Completed]:
    """``local_run(spec)``: the plain ``python script.py`` run of a script.

    Cached for the session, since several tests compare against the same run.
    """
    cache: dict[str, Completed] = {}

    def get(spec: ScriptSpec) -> Completed:
        if spec.id not in cache:
            cache[spec.id] = run_local(spec, tmp_path_factory.mktemp("local"))
        return cache[spec.id]

    return get


@pytest.fixture(scope="session")
def acceptor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acceptor]:
    """A ``tether serve`` on loopback, run by the test environment's Python.

    That interpreter has torch, so its workers can serve ``--remote torch``.
    The acceptor creates the token file itself; its stderr goes to a log file
    that failure messages show.
    """
    root = tmp_path_factory.mktemp("acceptor")
    token_file, ready_file, log = root / "token", root / "ready", root / "serve.log"
    argv = [
        sys.executable, "-m", "tether", "serve",
        "--listen", "tcp://127.0.0.1:0",
        "--token-file", str(token_file),
        "--ready-file", str(ready_file),
        # Every test here runs in the worker sandbox where bubblewrap is (CI
        # installs it); a developer's machine without it runs them unsandboxed.
        *sandbox_flags(),
    ]  # fmt: skip
    with log.open("w") as log_fh:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=base_env(with_src=True),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_ready(proc, ready_file, log)
        yield Acceptor(url=url, token_file=token_file, log=log)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        kill_group(proc)  # the acceptor's workers, too
        proc.wait(timeout=15)


def _wait_ready(proc: subprocess.Popen[Any], ready_file: Path, log: Path) -> str:
    deadline = time.monotonic() + ACCEPTOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_file.exists():
            url = ready_file.read_text().strip()
            if url:
                return url
        if proc.poll() is not None:
            pytest.fail(
                f"tether serve exited with status {proc.returncode} before it was ready:\n"
                f"{log.read_text(errors='replace')}",
                pytrace=False,
            )
        time.sleep(0.1)
    kill_group(proc)
    pytest.fail(
        f"tether serve did not write {ready_file} within {ACCEPTOR_START_TIMEOUT_S:.0f}s:\n"
        f"{log.read_text(errors='replace')}",
        pytrace=False,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its script timings to the controlling process."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKER_KEY] = [list(row) for row in TIMINGS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Wall time of every script run, when the scripts ran in this process."""
    write_table(terminalreporter, TIMINGS)
