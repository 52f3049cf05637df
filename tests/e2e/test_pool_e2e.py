"""The pool in the loop, with real processes: a pool, two acceptors, clients.

One pool (``tether pool serve`` on SQLite, short timeouts) and two acceptors
(``tether serve --pool``, nodes ``a`` and ``b`` on loopback, each offering this
machine's CPU as one device) are started once for the module. Clients are
``tether run --pool ... --gpus 0.5`` processes running small torch scripts, and
the test process itself (``tether.connect`` with a ticket). Scripts coordinate
with the test through marker files, never through sleeps; every subprocess has
a timeout and its whole process group is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 240.0


def wait_for(what: str, check: Callable[[], Any], timeout: float, on_fail: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{on_fail}")
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

    def __init__(self, root: Path) -> None:
        self.root = root
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
                "--node-timeout", "5", "--lease-timeout", "4",
            ],
            "pool",
        )  # fmt: skip
        wait_for("the pool", ready.exists, START_TIMEOUT_S, pool.describe())
        self.url = ready.read_text().strip()
        self.admin = PoolClient(self.url, (self.root / "admin-token").read_text().strip())
        wait_for("the pool's API", lambda: _answers(self.admin), START_TIMEOUT_S, pool.describe())
        self.admin.create_team("ml")
        self.admin.create_user("ann", teams=["ml"])
        self.ann_token = self.admin.create_token(user="ann")["token"]
        self.ann = PoolClient(self.url, self.ann_token)
        starting = []
        for node in ("a", "b"):
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
                    *([] if shutil.which("bwrap") else ["--no-sandbox"]),
                ],
                f"acceptor-{node}",
            )  # fmt: skip
            starting.append((node, node_ready, proc))
        for node, node_ready, proc in starting:
            wait_for(f"acceptor {node}", node_ready.exists, START_TIMEOUT_S, proc.describe())
            self.acceptors[node] = node_ready.read_text().strip()

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

    def logs(self) -> str:
        parts = []
        for name in ("pool", "acceptor-a", "acceptor-b"):
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("pool-e2e"))
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


# A script that announces itself with a marker file, waits for a go file, then
# does real torch work. With "crash" it raises at the end (exit status 1).
GATED = """\
    import sys, time
    from pathlib import Path
    import torch

    tag, mode = sys.argv[1], sys.argv[2]
    here = Path(__file__).parent
    x = torch.ones(64, 64)
    (here / f"started-{tag}").write_text("1")
    print(f"{tag} started", flush=True)
    deadline = time.monotonic() + 200
    while not (here / f"go-{tag}").exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.05)
    print(f"{tag} sum {float((x @ x).sum()):.0f}", flush=True)
    if mode == "crash":
        raise ValueError(f"{tag} crashed on purpose")
"""


def test_two_half_slices_share_a_device_and_a_third_waits_its_turn(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "gated.py", GATED)
    modes = {"1": "ok", "2": "ok", "3": "crash"}
    runs = {
        tag: world.run(script, "--gpus", "0.5", "--node", "a", name=f"gated-{tag}", args=(tag, m))
        for tag, m in modes.items()
    }

    def started() -> set[str]:
        return {t for t in runs if (tmp_path / f"started-{t}").exists()}

    logs = lambda: "\n".join(r.describe() for r in runs.values()) + world.logs()  # noqa: E731
    first = wait_for("two sessions to start", lambda: len(started()) >= 2 and started(),
                     START_TIMEOUT_S, logs())  # fmt: skip
    (waiting,) = set(runs) - first
    queued = runs[waiting]
    wait_for("the queue position line", lambda: "position 1 in the queue" in queued.stderr(),
             30, logs())  # fmt: skip
    assert started() == first, "a third half slice started on a device already full"

    # Asked not to wait, a fourth is refused at once with the pool's reason.
    refused = world.run(script, "--gpus", "0.5", "--node", "a", "--no-wait", name="nowait",
                        args=("4", "ok"))  # fmt: skip
    assert refused.wait(60) == 1, refused.describe()
    assert "tether: error:" in refused.stderr() and not (tmp_path / "started-4").exists()

    # One finishes; the waiting one gets its slice and starts.
    done = sorted(first)[0]
    (tmp_path / f"go-{done}").write_text("1")
    assert runs[done].wait() == (1 if modes[done] == "crash" else 0), runs[done].describe()
    wait_for("the queued session to start", lambda: waiting in started(), START_TIMEOUT_S, logs())
    for tag in runs:
        (tmp_path / f"go-{tag}").write_text("1")
    for tag, run in runs.items():
        code = run.wait()
        assert code == (1 if modes[tag] == "crash" else 0), run.describe()
        assert f"{tag} sum 262144" in run.stdout(), run.describe()
    assert "ValueError: 3 crashed on purpose" in runs["3"].stderr()

    # Every lease was released (the crashed one too), and usage shows the three.
    ended = {s["id"]: s for s in world.admin.sessions(state="ended", team="ml")}
    mine = [s for s in ended.values() if s["request"].get("node") == "a"]
    # Closed by the client's release, or (first, or moved back to it) by the
    # acceptor's report of when the session ended.
    released = [s for s in mine if s["end_reason"] in ("released", "finished")]
    assert len(released) >= 3, mine
    metered = [s for s in released if (s.get("metering") or {}).get("memory_hwm")]
    assert metered, f"no acceptor metering reached the pool: {released}"
    rows = world.admin.usage(team="ml")
    ann = [r for r in rows if r["user"] == "ann"]
    assert ann and ann[0]["sessions"] >= 3, rows
    assert ann[0]["device_seconds"] > 0, rows


OOM = """\
    import sys, time
    from pathlib import Path
    import torch

    tag, other = sys.argv[1], sys.argv[2]
    here = Path(__file__).parent
    (here / f"ready-{tag}").write_text("1")
    deadline = time.monotonic() + 200
    while not (here / f"ready-{other}").exists():  # both sessions live at once
        if time.monotonic() > deadline:
            sys.exit("the other session never started")
        time.sleep(0.05)
    if tag == "hog":
        try:
            big = torch.ones(4 << 30, dtype=torch.uint8)  # 4 GiB against a 256 MiB slice
            print("hog got", big.numel(), flush=True)
        except RuntimeError as exc:
            print("hog caught out-of-memory:", "can't allocate memory" in str(exc), flush=True)
    small = torch.ones(8 << 20, dtype=torch.uint8)  # 8 MiB: well inside the slice
    print(tag, "still works:", int(small.sum()), flush=True)
"""


def test_a_session_over_its_memory_limit_gets_torchs_error_and_the_other_goes_on(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "oom.py", OOM)
    opts = ("--gpus", "0.5", "--gpu-memory", "256MiB", "--node", "b")
    hog = world.run(script, *opts, name="hog", args=("hog", "calm"))
    calm = world.run(script, *opts, name="calm", args=("calm", "hog"))
    assert hog.wait() == 0, hog.describe() + world.logs()
    assert calm.wait() == 0, calm.describe() + world.logs()
    assert "hog caught out-of-memory: True" in hog.stdout(), hog.describe()
    assert f"hog still works: {8 << 20}" in hog.stdout(), hog.describe()
    assert f"calm still works: {8 << 20}" in calm.stdout(), calm.describe()
    assert "hog got" not in hog.stdout()


def test_the_acceptor_admits_only_valid_tickets_for_itself(world: World) -> None:
    import tether
    from tether._errors import AuthenticationError

    with pytest.raises(AuthenticationError, match="not a Tether session ticket"):
        tether.connect(world.acceptors["a"], token="a plain acceptor token")
    lease = world.ann.request_slice(fraction=0.25, node="a", wait=False)
    try:
        ticket = lease["ticket"]
        head, body, _sig = ticket.split(".")
        forged = f"{head}.{body}.{'A' * 43}"
        with pytest.raises(AuthenticationError, match="signature does not match"):
            tether.connect(world.acceptors["a"], token=forged)
        with pytest.raises(AuthenticationError, match="this ticket is for node 'a'"):
            tether.connect(world.acceptors["b"], token=ticket)
        # A genuine ticket opens a session; replayed while it runs, it is refused.
        with (
            tether.connect(world.acceptors["a"], token=ticket, ordered_output=False),
            pytest.raises(AuthenticationError, match=r"already connected|used already"),
        ):
            tether.connect(world.acceptors["a"], token=ticket, ordered_output=False)
    finally:
        world.ann.release(lease["id"])


def test_a_killed_client_loses_its_lease_through_the_missing_heartbeat(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "gated.py", GATED)
    run = world.run(script, "--gpus", "0.5", "--node", "a", name="killed", args=("k", "ok"))
    wait_for("the session to start", (tmp_path / "started-k").exists, START_TIMEOUT_S,
             run.describe())  # fmt: skip
    live = [s for s in world.admin.sessions(state="placed", team="ml")]
    assert live, "no placed session"
    kill_group(run.popen)  # SIGKILL: nothing gets to release anything
    run.popen.wait(10)
    ids = {s["id"] for s in live}

    def all_ended() -> bool:
        now = {s["id"]: s for s in world.admin.sessions(state="ended", team="ml")}
        return ids <= set(now) and all(now[i]["end_reason"] != "released" for i in ids)

    wait_for("the pool to end the killed client's lease", all_ended, 60, world.logs())
