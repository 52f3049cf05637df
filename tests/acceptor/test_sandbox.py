"""The sandbox's command line and environment (pure), and its limits with real cells."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from acceptor_thread import running_acceptor
from serve_process import SRC, sandbox_skip_reason

import tether
from tether._errors import ConnectError
from tether.acceptor._devnodes import nvidia_minors, slice_device_nodes
from tether.acceptor._sandbox import (
    CellPlan,
    Mode,
    Sandbox,
    cell_argv,
    cell_env,
    minimal_paths,
    parse_uid_range,
)
from tether.acceptor._server import token_authorizer

needs_sandbox = pytest.mark.skipif(
    sandbox_skip_reason() is not None, reason=str(sandbox_skip_reason())
)


def plan(mode: Mode, **kw: object) -> CellPlan:
    base: dict[str, object] = dict(
        mode=mode, uid=61007, cell_dir="/var/cells/s1", masked_dirs=("/root", "/run", "/tmp"),
        exposed=("/root/.pyenv/versions/3.11.7",), secret_files=("/etc/tether/node-token",),
        devices=("/dev/nvidia0", "/dev/nvidiactl"),
    )  # fmt: skip
    base.update(kw)
    return CellPlan(**base)  # type: ignore[arg-type]


def test_a_root_cell_drops_to_its_uid_inside_the_namespaces() -> None:
    argv = cell_argv(plan(Mode.UIDS), ["python", "-m", "w"])
    sep = argv.index("--")
    bwrap, inner = argv[:sep], argv[sep + 1 :]
    # No user namespace made by root: its uid 0 inside would be root outside.
    assert "--unshare-user" not in bwrap
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent"):
        assert flag in bwrap
    assert inner[:8] == [
        "setpriv", "--reuid=61007", "--regid=61007", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip
    assert inner[8:] == ["python", "-m", "w"]


def test_mounts_come_in_an_order_that_keeps_secrets_hidden() -> None:
    argv = cell_argv(plan(Mode.UIDS), ["true"])
    pos = {a: i for i, a in enumerate(argv)}
    root = argv.index("/")  # --ro-bind / /
    assert root < pos["/root"] < pos["/var/cells/s1"] < pos["/root/.pyenv/versions/3.11.7"]
    assert pos["/root/.pyenv/versions/3.11.7"] < pos["/etc/tether/node-token"]
    # Parents of a re-exposed path are made reachable (bwrap would make them 700).
    for parent in ("/root/.pyenv", "/root/.pyenv/versions"):
        assert argv[pos[parent] - 3 : pos[parent]] == ["--perms", "0755", "--dir"]
        assert pos["/var/cells/s1"] < pos[parent] < pos["/root/.pyenv/versions/3.11.7"]
    assert argv[pos["/etc/tether/node-token"] - 2 : pos["/etc/tether/node-token"]] == [
        "--ro-bind", "/dev/null"
    ]  # fmt: skip
    assert argv[pos["/var/cells/s1"] - 1 :][:3] == ["--bind", "/var/cells/s1", "/tmp"]
    assert "--tmpfs" in argv and argv[argv.index("--tmpfs") + 1] != "/tmp"
    assert argv[argv.index("/dev/nvidia0") - 1 :][:3] == [
        "--dev-bind-try",
        "/dev/nvidia0",
        "/dev/nvidia0",
    ]


def test_an_unprivileged_cell_uses_a_user_namespace_without_caps() -> None:
    argv = cell_argv(plan(Mode.USERNS), ["true"])
    assert "setpriv" not in argv
    for flag in ("--unshare-user", "--disable-userns", "--cap-drop"):
        assert flag in argv


def test_the_worker_env_loses_credentials_and_gets_the_cell() -> None:
    env = cell_env(
        {
            "PATH": "/usr/bin", "TETHER_NODE_TOKEN": "n", "TETHER_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "k", "PGPASSWORD": "p", "HF_TOKEN": "h",
            "TETHER_SLICE": "{}", "TETHER_POOL_SESSION": "s", "HOME": "/root",
        }
    )  # fmt: skip
    assert env == {
        "PATH": "/usr/bin", "TETHER_SLICE": "{}", "TETHER_POOL_SESSION": "s",
        "HOME": "/tmp", "TMPDIR": "/tmp", "TMP": "/tmp", "TEMP": "/tmp",
    }  # fmt: skip


def test_uid_ranges_parse_or_say_what_is_wrong() -> None:
    assert parse_uid_range("61000-61999") == range(61000, 62000)
    for bad in ("61000", "0-10", "62000-61000", "a-b"):
        with pytest.raises(ValueError, match=r"uid range|FIRST-LAST"):
            parse_uid_range(bad)


def test_minimal_paths_drops_paths_inside_others() -> None:
    assert minimal_paths(["/a/b", "/a", "/ab", "/c/d/", "/c/d/e"]) == ("/a", "/ab", "/c/d")


def test_serve_says_what_to_do_with_a_bad_uid_range(tmp_path: Path) -> None:
    for args, says in (
        (["--worker-uids", "nonsense"], "FIRST-LAST"),
        (["--worker-uids", "61000-61001", "--no-sandbox"], "contradict"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
             "--token-file", str(tmp_path / "token"), *args],
            capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(SRC),
                                                             "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert says in out.stderr and "Traceback" not in out.stderr


def test_serve_without_bubblewrap_refuses_and_says_what_to_do(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
         "--token-file", str(tmp_path / "token")],
        capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": str(tmp_path)},  # no bwrap on this PATH
    )  # fmt: skip
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert "apt-get install bubblewrap" in last and "--no-sandbox" in last, out.stderr


@needs_sandbox
def test_when_every_uid_is_taken_a_new_session_is_refused_clearly() -> None:
    sandbox = Sandbox.create(uids=range(61990, 61991), probe=False)
    try:
        with running_acceptor(token_authorizer("t"), sandbox=sandbox) as url:
            first = tether.connect(url, token="t")
            try:
                with pytest.raises(ConnectError, match=r"worker uids .* are in use"):
                    tether.connect(url, token="t")
                assert first.import_module("os").getuid() == 61990
            finally:
                first.close()
    finally:
        sandbox.close()
    assert not sandbox.state_dir.exists()


NODES = (
    "/dev/dri", "/dev/kfd", "/dev/nvidia-caps", "/dev/nvidia-uvm", "/dev/nvidia0",
    "/dev/nvidia1", "/dev/nvidia10", "/dev/nvidiactl",
)  # fmt: skip
MINORS = {"GPU-aaa": 0, "GPU-bbb": 1, "GPU-ccc": 10}


def _slice(vendor: str, pins: tuple[str, ...]) -> str:
    from tether.acceptor._limits import SliceLimits

    ids = tuple(f"{vendor}:{i}" for i in range(len(pins))) if pins else ("cpu:0",)
    return SliceLimits(device_ids=ids, vendor=vendor, pins=pins).to_json()


def test_a_cell_gets_the_device_nodes_of_its_slice_only() -> None:
    assert slice_device_nodes(None, NODES, MINORS) == NODES
    assert slice_device_nodes(_slice("cpu", ()), NODES, MINORS) == ()
    assert slice_device_nodes(_slice("nvidia", ("GPU-bbb",)), NODES, MINORS) == (
        "/dev/nvidia-caps", "/dev/nvidia-uvm", "/dev/nvidia1", "/dev/nvidiactl",
    )  # fmt: skip
    two = slice_device_nodes(_slice("nvidia", ("GPU-ccc", "GPU-aaa")), NODES, MINORS)
    assert "/dev/nvidia0" in two and "/dev/nvidia10" in two and "/dev/nvidia1" not in two
    # MIG (or no minor known): every NVIDIA node; the environment selects.
    mig = slice_device_nodes(_slice("nvidia", ("MIG-xyz",)), NODES, MINORS)
    assert mig == tuple(n for n in NODES if n.startswith("/dev/nvidia"))
    assert "/dev/nvidia0" not in slice_device_nodes(_slice("amd", ("0",)), NODES, MINORS)


def test_nvidia_minors_come_from_the_drivers_proc_files(tmp_path: Path) -> None:
    for bus, uuid, minor in (("0000:18:00.0", "GPU-aaa", 3), ("0000:2a:00.0", "GPU-bbb", 0)):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(
            f"Model: \t\t NVIDIA H100\nGPU UUID: \t {uuid}\nBus Location: \t {bus}\n"
            f"Device Minor: \t {minor}\n"
        )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "information").write_text("Model: x\n")
    assert nvidia_minors(tmp_path) == {"GPU-aaa": 3, "GPU-bbb": 0}
    assert nvidia_minors(tmp_path / "absent") == {}


@needs_sandbox
def test_an_unprivileged_acceptors_cell_runs(tmp_path: Path) -> None:
    """The user-namespace cell's argv is one bwrap accepts (run here by root, so
    this checks the command, not the isolation of a non-root acceptor)."""
    code = (
        "import os, ctypes\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(os.getuid(), os.getpid(), status['CapEff'].strip(), libc.unshare(0x10000000))\n"
    )
    from tether.acceptor._sandbox import _python_paths

    cell = tmp_path / "cell"
    cell.mkdir()
    # The interpreter's own paths, as the acceptor exposes them: a checkout (and
    # its venv) may itself live under a masked directory such as /tmp.
    exposed, _base = _python_paths(sys.executable, os.environ)
    argv = cell_argv(
        CellPlan(
            mode=Mode.USERNS, uid=1000, cell_dir=str(cell), masked_dirs=("/run", "/tmp"),
            exposed=exposed, secret_files=(), devices=(),
        ),
        [sys.executable, "-c", code],
    )  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1000", "2", "0000000000000000", "-1"]


def test_a_dead_acceptors_state_directory_is_swept(tmp_path: Path) -> None:
    from tether.acceptor._sandbox import _sweep_stale_state

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    stale = tmp_path / f"tether-cells-{int(dead.stdout)}-abc"
    (stale / "session").mkdir(parents=True)
    live = tmp_path / f"tether-cells-{os.getppid()}-def"  # pytest's parent: alive
    live.mkdir()
    other = tmp_path / "tether-cells-notapid-x"
    other.mkdir()
    assert _sweep_stale_state(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
