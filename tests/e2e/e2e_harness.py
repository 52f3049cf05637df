"""Shared harness for the end-to-end remoting tests (fixtures live in conftest.py).

Theory of operation: every user script under ``tests/scripts`` (and the README
demo in ``examples``) is run twice, each time in its own fresh copy of its
directory: once as ``python script.py`` and once under ``tether run``. The two
runs must print the same stdout, line for line, and exit with the same status;
a script expected to die must end stderr with the same exception line. Header
comments at the top of a script tell the harness what it needs::

    # tether-test: remote=numpy            modules to remote (default: torch)
    # tether-test: expect-status=1         exit status of a plain run (default 0)
    # tether-test: creates=m.pt,ckpt/a.pt  files the script writes in its cwd
    # tether-test: args=--epochs 3         command-line arguments for the script

Every subprocess runs in its own session with a timeout; on timeout the whole
process group is killed (the embedded acceptor and its worker included) and the
test fails with whatever output there was, so nothing here can hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "tests" / "scripts"
EXAMPLES_DIR = REPO / "examples"

# Generous: the CI machine has 2 cores shared by everything else that runs.
LOCAL_TIMEOUT_S = 180.0
REMOTE_TIMEOUT_S = 360.0
ACCEPTOR_START_TIMEOUT_S = 90.0
# How long the processes a finished command started may take to go away.
LEFTOVER_GRACE_S = 10.0

# (what, script id, seconds) of every script run, for the end-of-run summary.
TIMINGS: list[tuple[str, str, float]] = []


# --------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Completed:
    """The outcome of one finished subprocess."""

    argv: tuple[str, ...]
    cwd: Path
    stdout: str
    stderr: str
    status: int
    seconds: float = 0.0
    # Processes of the child's group still alive after it exited (pid: cmdline).
    leftovers: tuple[str, ...] = ()

    def describe(self, limit: int = 6000) -> str:
        """A readable dump for failure messages (stdout/stderr tails)."""
        return (
            f"$ cd {self.cwd} && {shlex.join(self.argv)}\n"
            f"exit status: {self.status} after {self.seconds:.1f}s\n"
            f"left behind: {list(self.leftovers)}\n"
            f"--- stdout (last {limit} chars) ---\n{self.stdout[-limit:]}\n"
            f"--- stderr (last {limit} chars) ---\n{self.stderr[-limit:]}"
        )


def run_json_script(folder: Path, script: str, remote: str, *, timeout: float = 120) -> Any:
    """Write ``script`` to ``folder/script.py``, run it under ``tether run --remote
    remote`` (this checkout's tether) and return the JSON of its last stdout line;
    the test fails, showing the run, if it did not exit 0 or left processes behind."""
    (folder / "script.py").write_text(script)
    argv = [sys.executable, "-m", "tether", "run", "--remote", remote, "--"]
    done = run_command(
        [*argv, sys.executable, "script.py"],
        cwd=folder,
        env=base_env(with_src=True),
        timeout=timeout,
    )
    assert done.status == 0 and not done.leftovers, done.describe()
    return json.loads(done.stdout.splitlines()[-1])


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    tty: bool = False,
) -> Completed:
    """Run ``argv`` to completion and return its output and exit status.

    With ``tty`` the child's stdout is a pseudo-terminal, as for a person at a
    terminal (Python then line-buffers it); its "\r\n" come back as "\n".
    The child gets its own session so that, on timeout, its whole process group
    (including grandchildren such as an embedded acceptor and its worker) is
    killed; the test then fails showing the output collected so far.
    """
    started = time.monotonic()
    master, slave = os.openpty() if tty else (-1, -1)
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=slave if tty else subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        # Ctrl-C as at a terminal: a runner started in the background (nohup, `cmd &`
        # in a script) ignores SIGINT, the ignore is inherited through exec, and a
        # script that interrupts itself would then never see KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )
    if tty:
        os.close(slave)  # the child holds it now; EOF on master once it is gone
    try:
        out, err = _collect(proc, master, timeout) if tty else proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        kill_group(proc)
        if tty:
            proc.wait()
            stdout, stderr = _text(exc.output), _text(exc.stderr)
        else:
            stdout, stderr = (_text(b) for b in proc.communicate())
        partial = Completed(tuple(argv), cwd, stdout, stderr, -9, timeout)
        pytest.fail(f"timed out after {timeout:.0f}s\n{partial.describe()}", pytrace=False)
    finally:
        if tty:
            os.close(master)
            if proc.stderr is not None:
                proc.stderr.close()
    seconds = time.monotonic() - started
    stdout = _text(out).replace("\r\n", "\n") if tty else _text(out)
    leftovers = _wait_group_empty(proc.pid, LEFTOVER_GRACE_S)
    kill_group(proc)  # whatever is left must not outlive the test
    return Completed(tuple(argv), cwd, stdout, _text(err), proc.returncode, seconds, leftovers)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, str):
        return data
    return (data or b"").decode("utf-8", errors="replace")


def _collect(proc: subprocess.Popen[bytes], master: int, timeout: float) -> tuple[bytes, bytes]:
    """Read the pty master and the stderr pipe until both end, or raise TimeoutExpired."""
    assert proc.stderr is not None
    err_fd = proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {master: [], err_fd: []}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(
                    proc.args,
                    timeout,
                    b"".join(chunks[master]),
                    b"".join(chunks[proc.stderr.fileno()]),
                )
            for key, _ in sel.select(min(remaining, 1.0)):
                try:
                    data = os.read(key.fd, 65536)
                except OSError:  # EIO: the pty's last writer is gone
                    data = b""
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
    proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    return b"".join(chunks[master]), b"".join(chunks[err_fd])


def _group_members(pgid: int) -> tuple[str, ...]:
    """Live (non-zombie) processes in process group ``pgid``, as "pid: cmdline"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
        found.append(f"{entry.name}: {cmdline.strip()}")
    return tuple(found)


def _wait_group_empty(pgid: int, grace: float) -> tuple[str, ...]:
    """Give the child's descendants ``grace`` seconds to exit; return who is left."""
    if not Path("/proc/self/stat").exists():
        return ()  # no procfs: cannot tell, assume none
    deadline = time.monotonic() + grace
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return members


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group led by ``proc`` (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def base_env(*, with_src: bool) -> dict[str, str]:
    """The environment for a child: ours, minus anything that steers tether.

    ``with_src`` puts the working tree's ``src`` first on PYTHONPATH so the
    test environment's interpreter runs this checkout's tether whether or not
    it is installed there; the zero-install client venv has its own install.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("PYTHONPATH", None)
    if with_src:
        env["PYTHONPATH"] = str(REPO / "src")
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclasses.dataclass(frozen=True)
class Acceptor:
    """A running ``tether serve``: where to connect and how to authenticate."""

    url: str
    token_file: Path
    log: Path

    def log_tail(self, limit: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-limit:]


# --------------------------------------------------------------------------- scripts


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """A user script and what its header comments say about it."""

    path: Path
    remote: tuple[str, ...] = ("torch",)
    expect_status: int = 0
    creates: tuple[str, ...] = ()
    args: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.path.stem if self.path.parent == SCRIPTS_DIR else f"examples/{self.path.stem}"

    def remote_flags(self) -> list[str]:
        return [flag for module in self.remote for flag in ("--remote", module)]


def parse_spec(path: Path) -> ScriptSpec:
    """Read the ``# tether-test: key=value`` lines at the top of ``path``."""
    fields: dict[str, object] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body.startswith("tether-test:"):
            continue
        key, _, value = body.removeprefix("tether-test:").strip().partition("=")
        key, value = key.strip(), value.strip()
        if key == "remote":
            fields["remote"] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif key == "expect-status":
            fields["expect_status"] = int(value)
        elif key == "creates":
            fields["creates"] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif key == "args":
            fields["args"] = tuple(shlex.split(value))
        else:
            raise ValueError(f"{path.name}: unknown tether-test header key {key!r}")
    return ScriptSpec(path=path, **fields)  # type: ignore[arg-type]


def all_specs() -> list[ScriptSpec]:
    """Every runnable script: tests/scripts/*.py except helpers, plus the demo."""
    paths = [p for p in sorted(SCRIPTS_DIR.glob("*.py")) if not p.name.startswith("helpers_")]
    paths.append(EXAMPLES_DIR / "train_mlp.py")
    return [parse_spec(p) for p in paths]


def script_params(known_failures: Mapping[str, str]) -> list[Any]:
    """pytest params for every script, strict-xfail where ``known_failures`` names it."""
    params = []
    for spec in all_specs():
        reason = known_failures.get(spec.id)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(spec, id=spec.id, marks=marks))
    return params


def fresh_copy(spec: ScriptSpec, root: Path, label: str) -> Path:
    """A private copy of the script's directory, so runs cannot see each other's files."""
    dest = root / f"{spec.id.replace('/', '_')}-{label}"
    shutil.copytree(
        spec.path.parent,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.bin", "*.npy", "*.npz", "ckpt"),
    )
    return dest


def run_script(
    spec: ScriptSpec,
    root: Path,
    *,
    label: str,
    launcher: Sequence[str] = (),
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    timeout: float = LOCAL_TIMEOUT_S,
    tty: bool = False,
) -> Completed:
    """``[*launcher] python script.py args`` in a fresh copy of the script's directory.

    ``launcher`` is empty for a plain run, or e.g. ``tether run --remote torch --``.
    The run's wall time is recorded in TIMINGS under ``label``.
    """
    cwd = fresh_copy(spec, root, label)
    argv = [*launcher, python, spec.path.name, *spec.args]
    done = run_command(
        argv,
        cwd=cwd,
        timeout=timeout,
        env=env if env is not None else base_env(with_src=True),
        tty=tty,
    )
    TIMINGS.append((label, spec.id, done.seconds))
    return done


def run_local(spec: ScriptSpec, root: Path) -> Completed:
    """The plain ``python script.py args`` run, in the test environment (with torch)."""
    return run_script(spec, root, label="local")


def tether_run_argv(python: str, spec: ScriptSpec, *options: str) -> list[str]:
    """``python -m tether run [options] --remote MOD... --``: a launcher for run_script."""
    return [python, "-m", "tether", "run", *options, *spec.remote_flags(), "--"]


# --------------------------------------------------------------------------- comparing


def assert_same_run(local: Completed, remote: Completed, spec: ScriptSpec) -> None:
    """Fail, with a unified diff, unless ``remote`` behaved exactly like ``local``."""
    assert local.status == spec.expect_status, (
        f"the plain local run of {spec.id} itself misbehaved\n{local.describe()}"
    )
    local_lines = local.stdout.splitlines()
    remote_lines = remote.stdout.splitlines()
    if local_lines != remote_lines:
        diff = "\n".join(
            difflib.unified_diff(
                local_lines, remote_lines, "python (local)", "tether run (remote)", lineterm=""
            )
        )
        pytest.fail(
            f"stdout of {spec.id} differs between the local and the remote run:\n{diff}\n\n"
            f"remote run:\n{remote.describe()}",
            pytrace=False,
        )
    assert remote.status == local.status, (
        f"exit status differs: local {local.status}, remote {remote.status}\n{remote.describe()}"
    )
    if spec.expect_status != 0:
        assert last_line(remote.stderr) == last_line(local.stderr), (
            "the last line of stderr (the exception) differs:\n"
            f"  local:  {last_line(local.stderr)!r}\n  remote: {last_line(remote.stderr)!r}\n"
            f"{remote.describe()}"
        )
    assert not remote.leftovers, (
        f"processes outlived the run by {LEFTOVER_GRACE_S:.0f}s: {list(remote.leftovers)}\n"
        f"{remote.describe()}"
    )
    for name in spec.creates:
        assert (remote.cwd / name).is_file(), (
            f"{spec.id} should have written {name} into the client's working directory "
            f"{remote.cwd}\n{remote.describe()}"
        )


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
