"""The remoting contract, proven by realistic user scripts.

Each script in ``tests/scripts`` (and the README demo) runs as ``python
script.py`` and as ``python -m tether run --remote torch -- python script.py``
with no acceptor configured, so ``tether run`` starts its embedded one on
loopback. Stdout must match line for line, and so must the exit status.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_harness import (
    REMOTE_TIMEOUT_S,
    Acceptor,
    Completed,
    ScriptSpec,
    all_specs,
    assert_same_run,
    base_env,
    run_script,
    script_params,
    tether_run_argv,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.torch,
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None,
        reason="torch is not installed in the test environment",
    ),
]

# Scripts whose remote run is known to fail, with the reason (see the report).
KNOWN_REMOTE_FAILURES: dict[str, str] = {}


def run_remote_embedded(spec: ScriptSpec, root: Path) -> Completed:
    """``python -m tether run --remote MOD -- python script.py`` in a fresh copy."""
    launcher = tether_run_argv(sys.executable, spec)
    return run_script(spec, root, label="embedded", launcher=launcher, timeout=REMOTE_TIMEOUT_S)


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.id) for s in all_specs()])
def test_script_runs_locally(
    spec: ScriptSpec, local_run: Callable[[ScriptSpec], Completed]
) -> None:
    """The scripts themselves are sound: plain Python runs them as their headers say."""
    local = local_run(spec)
    assert local.status == spec.expect_status, local.describe()
    assert len(local.stdout.splitlines()) >= 5, f"{spec.id} prints too little\n{local.describe()}"
    for name in spec.creates:
        assert (local.cwd / name).is_file(), f"{spec.id} did not write {name}\n{local.describe()}"
    if spec.expect_status == 0:
        assert "Traceback" not in local.stderr, local.describe()


@pytest.mark.parametrize("spec", script_params(KNOWN_REMOTE_FAILURES))
def test_script_remote_matches_local(
    spec: ScriptSpec, local_run: Callable[[ScriptSpec], Completed], tmp_path: Path
) -> None:
    local = local_run(spec)
    remote = run_remote_embedded(spec, tmp_path)
    assert_same_run(local, remote, spec)


@pytest.mark.parametrize("script_id", ["forward_print", "examples/train_mlp"])
def test_script_at_a_terminal(script_id: str, tmp_path: Path) -> None:
    """With stdout a terminal (line-buffered), the worker's prints still interleave the same."""
    spec = next(s for s in all_specs() if s.id == script_id)
    local = run_script(spec, tmp_path, label="local-tty", tty=True)
    launcher = tether_run_argv(sys.executable, spec)
    remote = run_script(
        spec, tmp_path, label="embedded-tty", launcher=launcher, timeout=REMOTE_TIMEOUT_S, tty=True
    )
    assert_same_run(local, remote, spec)


def test_uncaught_remote_error_shows_remote_frames(
    local_run: Callable[[ScriptSpec], Completed], tmp_path: Path
) -> None:
    """An uncaught remote error prints a traceback that reaches into the worker's frames."""
    spec = next(s for s in all_specs() if s.id == "uncaught_error")
    remote = run_remote_embedded(spec, tmp_path)
    assert remote.status == 1, remote.describe()
    assert "Traceback (most recent call last)" in remote.stderr, remote.describe()
    # The script's own forward ran in the worker, and torch's Linear under it.
    assert "in forward" in remote.stderr, remote.describe()
    assert "linear.py" in remote.stderr, remote.describe()
    # Tether's own frames (the proxy and session between the script's line and the
    # raise, the worker's engine) are not shown: the script's frames, then the worker's.
    assert f"tether{os.sep}client{os.sep}" not in remote.stderr, remote.describe()
    assert f"tether{os.sep}acceptor{os.sep}" not in remote.stderr, remote.describe()
    assert remote.stderr.rstrip().splitlines()[-1] == (
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"
    ), remote.describe()


def test_connect_through_environment_variables(
    acceptor: Acceptor, local_run: Callable[[ScriptSpec], Completed], tmp_path: Path
) -> None:
    """TETHER_CONNECT and TETHER_TOKEN stand in for --connect and --token-file."""
    spec = next(s for s in all_specs() if s.id == "examples/train_mlp")
    env = base_env(with_src=True)
    env["TETHER_CONNECT"] = acceptor.url
    env["TETHER_TOKEN"] = acceptor.token_file.read_text().strip()
    launcher = tether_run_argv(sys.executable, spec)
    remote = run_script(
        spec, tmp_path, label="env-connect", launcher=launcher, env=env, timeout=REMOTE_TIMEOUT_S
    )
    assert_same_run(local_run(spec), remote, spec)
