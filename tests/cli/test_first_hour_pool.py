"""The first hour with a pool (issue 13): ``tether up``, then what a user meets.

One ``tether up`` (a real pool and acceptor, in a HOME-like directory of the
test's own) serves the whole test, which goes through, in order: the config
``up`` wrote works for ``tether admin`` with nothing pasted and no token was
printed or logged; a memory request larger than the team's whole quota is
refused at once; the queue line advances and names the request ahead; an
admin's drain ends a running script with one line that says who and why;
stopping the acceptor does the same. Scripts signal the test through marker
files; every process is bounded by a timeout and its group killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180.0

# Holds its session, calling torch, until the session ends under it.
HOLD = """\
import sys, time
from pathlib import Path
import torch

x = torch.ones(8)
Path(f"started-{sys.argv[1]}").write_text("1")
deadline = time.monotonic() + 170
while time.monotonic() < deadline:
    float(x.sum())
    time.sleep(0.05)
print("the session was never ended")
"""


class Up:
    """A running ``tether up`` and the commands a user types beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env["PYTHONPATH"] = str(REPO / "src")
        self.env["XDG_CONFIG_HOME"] = str(root / "config")
        self.env["XDG_DATA_HOME"] = str(root / "data")
        self.env["USER"] = "ann"
        self.env["TETHER_LEASE_HEARTBEAT_S"] = "1"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.script = root / "hold.py"
        self.script.write_text(HOLD)
        self.up = self.spawn(
            ["up", "--listen", "127.0.0.1:0", "--acceptor-listen", "tcp://127.0.0.1:0",
             "--name", "n1", "--ready-file", str(root / "up.url")],
            "up",
        )  # fmt: skip
        wait_for("tether up", lambda: (root / "up.url").exists(), self.describe("up"))
        self.url = (root / "up.url").read_text().strip()

    def spawn(
        self, argv: list[str], name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (
            (self.root / f"{name}.out").open("wb") as o,
            (self.root / f"{name}.err").open("wb") as e,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tether", *argv], env=env or self.env, cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def hold(self, tag: str, *slice_options: str, env: dict[str, str] | None = None) -> Any:
        return self.spawn(
            ["run", *slice_options, "--remote", "torch", "--", sys.executable,
             str(self.script), tag],
            f"run-{tag}",
            env,
        )  # fmt: skip

    def tether(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether", *argv], env=self.env, cwd=self.root,
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip

    def err(self, name: str) -> str:
        return (self.root / f"{name}.err").read_text(errors="replace")

    def describe(self, *names: str) -> Callable[[], str]:
        def text() -> str:
            parts = []
            for name in (*names, "up"):
                for ext in ("out", "err"):
                    path = self.root / f"{name}.{ext}"
                    if path.exists():
                        parts.append(f"--- {name}.{ext}\n{path.read_text(errors='replace')}")
            logs = self.root / "data" / "tether" / "up"
            for log in ("pool.log", "acceptor.log"):
                if (logs / log).exists():
                    parts.append(f"--- {log}\n{(logs / log).read_text()[-3000:]}")
            return "\n".join(parts)

        return text

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(what: str, check: Callable[[], Any], on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{on_fail()}")
        time.sleep(0.1)
    return value


def finish(proc: subprocess.Popen[bytes], what: str, on_fail: Callable[[], str]) -> int:
    try:
        return proc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not end\n{on_fail()}")


def last_line(text: str) -> str:
    assert "Traceback" not in text, text
    return text.strip().splitlines()[-1]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="tether up needs pip install 'tether[pool]'")
    world = Up(tmp_path)
    try:
        yield world
    finally:
        world.stop()


def test_the_first_hour_with_a_pool(up: Up) -> None:
    # 1. The config `up` wrote is an admin's: `tether admin` works with nothing
    #    pasted, and no token was printed or logged; the bootstrap one is revoked.
    config = up.root / "config" / "tether" / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    data = up.root / "data" / "tether" / "up"
    assert "tu_" not in (up.root / "up.out").read_text() + up.err("up")
    assert "tu_" not in (data / "pool.log").read_text()
    assert not (data / "admin-token.new").exists()
    r = up.tether("admin", "user", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert {u["name"]: u["admin"] for u in json.loads(r.stdout)}["ann"] is True
    tokens = json.loads(up.tether("admin", "token", "list", "--json").stdout)
    (bootstrap,) = [t for t in tokens if t["label"] == "bootstrap"]
    assert bootstrap["revoked_at"] is not None

    # 2. A memory request larger than the team's whole quota is refused at once.
    assert up.tether("admin", "quota", "set", "local", "--max-memory", "1GiB").returncode == 0
    r = up.tether("run", "--gpu-memory", "2GiB", "--remote", "torch", "--",
                  sys.executable, str(up.script), "never")  # fmt: skip
    assert r.returncode == 1, r.stderr
    line = last_line(r.stderr)
    assert line.startswith("tether: error: team local: concurrent memory"), line
    assert "the request alone is over the team's limit" in line
    assert not (up.root / "started-never").exists()
    assert up.tether("admin", "quota", "set", "local").returncode == 0  # unlimited again

    # 3. The queue line advances and names the request ahead.
    holder = up.hold("a", "--gpus", "0.5")
    wait_for("the first session", lambda: (up.root / "started-a").exists(), up.describe("run-a"))
    first = up.hold("b", "--gpus", "1")
    queued_b = lambda: "position 1 in the queue" in up.err("run-b")  # noqa: E731
    wait_for("b to queue", queued_b, up.describe("run-b"))
    second = up.hold("c", "--gpus", "1", env={**up.env, "TETHER_QUEUE_REPORT_S": "0.2"})

    def two_waits_and_ahead() -> bool:
        lines = [x for x in up.err("run-c").splitlines() if "position 2 in the queue" in x]
        ahead = [x for x in lines if "; ahead: ann (local), 1 device, waiting " in x]
        so_far = {x.split(", waiting ")[1].split(" so far")[0] for x in ahead}
        return len(so_far) >= 2  # the wait so far moved on

    wait_for("c's queue line to advance", two_waits_and_ahead, up.describe("run-c"))

    # 4. Session management: list, show, cancel (the queued c is withdrawn).
    r = up.tether("sessions", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert sorted(s["state"] for s in listed) == ["placed", "queued", "queued"], listed
    assert all("ticket" not in s for s in listed)
    table = up.tether("sessions").stdout
    assert "placed" in table and "queued #2" in table and "ann" in table, table
    placed = next(s for s in listed if s["state"] == "placed")
    shown = up.tether("session", "show", placed["id"])
    assert "owner:     ann (team local)" in shown.stdout and "node:      n1" in shown.stdout
    assert "tn_" not in shown.stdout and "ticket" not in shown.stdout
    c_id = next(s["id"] for s in listed if s.get("position") == 2)
    r = up.tether("session", "cancel", c_id)
    assert r.returncode == 0 and f"withdrew the queued request {c_id}" in r.stdout, r.stderr
    assert finish(second, "the withdrawn run", up.describe("run-c")) == 1
    assert last_line(up.err("run-c")).startswith("tether: error: ")
    assert not (up.root / "started-c").exists()
    first.send_signal(signal.SIGTERM)  # withdrawn on SIGTERM
    finish(first, "a queued run", up.describe("run-b"))

    # 5. An admin drains the node: the running script ends with one line saying so.
    assert up.tether("node", "drain", "n1").returncode == 0
    code = finish(holder, "the drained session", up.describe("run-a"))
    assert code == 1, up.describe("run-a")()
    line = last_line(up.err("run-a"))
    assert line.startswith("tether: error: lost the worker of session"), line
    assert "an admin drained node n1" in line, line
    assert "the session was never ended" not in (up.root / "run-a.out").read_text()
    assert up.tether("node", "uncordon", "n1").returncode == 0

    # 6. The acceptor stops (`tether up` is stopped): one line again, who and why.
    last = up.hold("d", "--gpus", "0.5")
    wait_for("the last session", lambda: (up.root / "started-d").exists(), up.describe("run-d"))
    up.up.send_signal(signal.SIGTERM)
    assert finish(last, "the session of a stopped acceptor", up.describe("run-d")) == 1
    line = last_line(up.err("run-d"))
    assert "the acceptor at tcp://127.0.0.1:" in line and "was stopped by its operator" in line
    assert finish(up.up, "tether up", up.describe()) == 0


def test_a_shell_command_leaves_the_ticket_to_the_script(up: Up) -> None:
    """`tether run -- bash -c "python ...; python train.py"` with a pool: the
    first interpreter the shell starts is not the script, and a ticket opens one
    session only. The script's interpreter must be the one that spends it."""
    quick = up.root / "quick.py"
    quick.write_text("import torch\nprint('sum', float(torch.ones(3).sum()))\n")
    python = sys.executable
    r = up.tether(
        "run", "--gpus", "0.5", "--remote", "torch", "--", "bash", "-c",
        f"{python} -c 'print(\"a tool first\")' && {python} {quick}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["a tool first", "sum 3.0"], r.stdout + r.stderr
