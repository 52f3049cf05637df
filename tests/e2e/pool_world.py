"""A pool and its acceptors as real processes, for the end-to-end tests that need one.

:class:`World` starts one pool (``tether pool serve`` on SQLite, short timeouts) and
acceptors (``tether serve --pool``) on loopback, each offering ``devices`` (this machine's
CPU by default; ``nvidia:0`` for the GPU suite), and starts clients as ``tether run --pool``
processes. Every process runs in its own process group and is killed at the end; every wait
is bounded and fails with the processes' output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import base_env, kill_group

from _serving import sandbox_flags

START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 240.0


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, on_fail: str | Callable[[], str] = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``, with
    ``on_fail`` (or what it returns, read at that moment) under the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            told = on_fail() if callable(on_fail) else on_fail
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{told}")
        time.sleep(0.1)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"status {self.popen.poll()}\n--- stdout\n{self.stdout()}\n"
            f"--- stderr\n{self.stderr()[-4000:]}"
        )

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.popen)
            pytest.fail(f"timed out after {timeout:.0f}s\n{self.describe()}")


class World:
    """The running pool and acceptors, and helpers to start clients."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: tuple[str, ...] = ("a", "b"),
        devices: str | None = None,
        node_timeout: float = 5.0,
        lease_timeout: float = 4.0,
    ) -> None:
        self.root = root
        self.nodes = nodes
        self.devices = devices
        self.timeouts = (
            *("--node-timeout", f"{node_timeout:g}"),
            *("--lease-timeout", f"{lease_timeout:g}"),
        )
        self.procs: list[Proc] = []
        self.env = base_env(with_src=True)
        self.env["XDG_CONFIG_HOME"] = str(root / "config")  # no user config file
        self.env["TETHER_LEASE_HEARTBEAT_S"] = "1"
        self.url = ""
        self.admin: Any = None
        self.ann: Any = None
        self.ann_token = ""
        self.acceptors: dict[str, str] = {}

    def spawn(self, argv: list[str], name: str, cwd: Path | None = None) -> Proc:
        out, err = self.root / f"{name}.out", self.root / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen(
                argv,
                cwd=cwd or self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )
        proc = Proc(popen, out, err)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        from tether.poolapi import PoolClient

        ready = self.root / "pool.url"
        pool = self.spawn(
            [
                sys.executable, "-m", "tether", "pool", "serve",
                "--listen", "127.0.0.1:0",
                "--db", str(self.root / "pool.db"),
                "--bootstrap-token-file", str(self.root / "admin-token"),
                "--ready-file", str(ready),
                *self.timeouts,
            ],
            "pool",
        )  # fmt: skip
        wait_for("the pool", ready.exists, START_TIMEOUT_S, pool.describe)
        self.url = ready.read_text().strip()
        self.admin = PoolClient(self.url, (self.root / "admin-token").read_text().strip())
        wait_for("the pool's API", lambda: _answers(self.admin), START_TIMEOUT_S, pool.describe)
        self.admin.create_team("ml")
        self.admin.create_user("ann", teams=["ml"])
        self.ann_token = self.admin.create_token(user="ann")["token"]
        (self.root / "ann-token").write_text(self.ann_token)
        self.ann = PoolClient(self.url, self.ann_token)
        starting = []
        for node in self.nodes:
            token_file = self.root / f"node-{node}"
            token_file.write_text(self.admin.create_token(kind="node", node=node)["token"])
            node_ready = self.root / f"acceptor-{node}.addr"
            proc = self.spawn(
                [
                    sys.executable, "-m", "tether", "serve",
                    "--listen", "tcp://127.0.0.1:0",
                    "--pool", self.url, "--node-token-file", str(token_file),
                    "--name", node, "--heartbeat-interval", "1",
                    "--ready-file", str(node_ready),
                    *(["--devices", self.devices] if self.devices else []),
                    *sandbox_flags(),
                ],
                f"acceptor-{node}",
            )  # fmt: skip
            starting.append((node, node_ready, proc))
        for node, node_ready, proc in starting:
            wait_for(f"acceptor {node}", node_ready.exists, START_TIMEOUT_S, proc.describe)
            self.acceptors[node] = node_ready.read_text().strip()
        wait_for(
            f"{len(self.nodes)} ready nodes",
            lambda: sum(n["status"] == "ready" for n in self.admin.nodes()) == len(self.nodes),
            START_TIMEOUT_S,
            self.logs,
        )

    def open_leases(self) -> list[dict[str, Any]]:
        """The pool's placed sessions, of every team."""
        return list(self.admin.sessions(state="placed"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(proc.popen)
                proc.popen.wait(5)
            kill_group(proc.popen)

    def run(self, script: Path, *options: str, name: str, args: tuple[str, ...] = ()) -> Proc:
        argv = [
            sys.executable, "-m", "tether", "run",
            "--pool", self.url, "--pool-token", self.ann_token,
            *options, "--remote", "torch", "--",
            sys.executable, str(script), *args,
        ]  # fmt: skip
        return self.spawn(argv, name, cwd=script.parent)

    def log(self, name: str) -> str:
        """The end of what the process started as ``name`` printed (stdout, then stderr)."""
        parts = [self.root / f"{name}.out", self.root / f"{name}.err"]
        return "".join(p.read_text(errors="replace")[-3000:] for p in parts if p.exists())

    def logs(self) -> str:
        parts = []
        for name in ("pool", *(f"acceptor-{node}" for node in self.nodes)):
            err = self.root / f"{name}.err"
            if err.exists():
                parts.append(f"--- {name}\n{err.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _answers(client: Any) -> bool:
    try:
        client.me()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def running_world(root: Path, **options: Any) -> Iterator[World]:
    """A started :class:`World` (see its options), stopped at the end whatever happens."""
    w = World(root, **options)
    try:
        w.start()
        yield w
    finally:
        w.stop()


def write_script(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path
