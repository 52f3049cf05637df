"""The client needs Tether, not torch: the scripts pass from an environment without it.

A second real virtual environment (cached under ``.venv-client/`` in the repo,
rebuilt when it no longer fits) holds this checkout's tether (editable, with its
declared dependencies), numpy and matplotlib, and no torch (and no pip). A ``tether serve`` from the
test environment, which has torch, serves it over ``--connect``; each script's
stdout must match the plain local run in the torch environment.
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_harness import (
    REMOTE_TIMEOUT_S,
    REPO,
    Acceptor,
    Completed,
    ScriptSpec,
    assert_same_run,
    base_env,
    run_command,
    run_script,
    script_params,
    tether_run_argv,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.torch,
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None,
        reason="torch is not installed in the test environment (the acceptor needs it)",
    ),
]

CLIENT_VENV = REPO / ".venv-client"
PIP_TIMEOUT_S = 900.0

# Scripts whose zero-install run is known to fail, with the reason (see the report).
KNOWN_FAILURES: dict[str, str] = {
    "multiprocessing_fork": (
        "processes the worker forks print to the acceptor's own output, which is not the "
        "client's with a separate acceptor (docs/remoting.md); their work is the same"
    ),
}

# Run inside the client venv: proves the setup is what this test claims.
_PROBE = """
import importlib.util, sys, tether
assert importlib.util.find_spec("torch") is None, "torch is importable"
import cloudpickle, numpy, matplotlib
print(tether.__file__)
print(numpy.__version__, cloudpickle.__version__, matplotlib.__version__)
"""


def _client_python() -> Path:
    return CLIENT_VENV / "bin" / "python"


def _pins() -> list[str]:
    # Same numpy, cloudpickle and matplotlib (a library that takes remote
    # arrays) as the torch side, so output cannot differ by version.
    return [
        f"{name}=={importlib.metadata.version(name)}"
        for name in ("numpy", "cloudpickle", "matplotlib")
    ]


def _probe_ok() -> bool:
    python = _client_python()
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(with_src=False),
        cwd=CLIENT_VENV,
        check=False,
    )
    if probe.returncode != 0:
        return False
    tether_file, versions = probe.stdout.splitlines()[:2]
    wanted = " ".join(p.split("==")[1] for p in _pins())
    return Path(tether_file).is_relative_to(REPO / "src") and versions == wanted


@pytest.fixture(scope="session")
def client_venv() -> Path:
    """The python of a venv with tether, cloudpickle, numpy and matplotlib, and no torch.

    Each xdist worker that runs a zero-install test asks for it: the first builds it,
    under a lock, and the others then find it built."""
    with open(REPO / ".venv-client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _build_client_venv()
    return _client_python()


def _build_client_venv() -> None:
    if not _probe_ok():
        # No pip inside it (ensurepip alone costs ~10 s): this environment's pip installs
        # into it (``pip --python``), tether editable with its declared dependencies and
        # the pins in one resolution, so the client gets exactly what tether asks for.
        steps = [
            [sys.executable, "-m", "venv", "--without-pip", "--clear", str(CLIENT_VENV)],
            [sys.executable, "-m", "pip", "--python", str(_client_python()), "install", "-q",
             "-e", str(REPO), *_pins()],
        ]  # fmt: skip
        for argv in steps:
            done = run_command(argv, cwd=REPO, timeout=PIP_TIMEOUT_S, env=base_env(with_src=False))
            if done.status != 0:
                pytest.fail(f"could not build the client venv:\n{done.describe()}", pytrace=False)
        assert _probe_ok(), f"the client venv at {CLIENT_VENV} is not what this test needs"


def test_client_venv_cannot_import_torch(client_venv: Path, tmp_path: Path) -> None:
    done = run_command(
        [str(client_venv), "-c", "import torch"],
        cwd=tmp_path,
        timeout=60,
        env=base_env(with_src=False),
    )
    assert done.status == 1, done.describe()
    assert "ModuleNotFoundError: No module named 'torch'" in done.stderr, done.describe()


@pytest.mark.parametrize("spec", script_params(KNOWN_FAILURES))
def test_script_zero_install(
    spec: ScriptSpec,
    client_venv: Path,
    acceptor: Acceptor,
    local_run: Callable[[ScriptSpec], Completed],
    tmp_path: Path,
) -> None:
    local = local_run(spec)
    launcher = tether_run_argv(
        str(client_venv), spec, "--connect", acceptor.url, "--token-file", str(acceptor.token_file)
    )
    env = base_env(with_src=False)
    env["PATH"] = f"{client_venv.parent}{os.pathsep}{env.get('PATH', '')}"
    remote = run_script(
        spec,
        tmp_path,
        label="zero-install",
        launcher=launcher,
        python=str(client_venv),
        env=env,
        timeout=REMOTE_TIMEOUT_S,
    )
    if remote.status != local.status:
        log = f"\n--- acceptor log ---\n{acceptor.log_tail()}"
        remote = dataclasses.replace(remote, stderr=remote.stderr + log)
    assert_same_run(local, remote, spec)
