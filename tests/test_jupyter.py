"""The IPython extension in a real Jupyter kernel, driven as a notebook drives it.

Each cell is an ``execute_request`` through jupyter_client; what the notebook
would show is collected from the iopub channel (streams, results, errors).
The kernel runs this environment's Python, which has torch, so its embedded
acceptor's workers can serve ``--remote torch``.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipykernel", reason="the Jupyter tests need ipykernel (the test extra)")
pytest.importorskip("torch", reason="the kernel's worker must have torch")

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_core.utils import ensure_event_loop

pytestmark = pytest.mark.slow

#: Seconds one cell may take (the first import of torch in a worker included).
CELL_TIMEOUT_S = 120


@dataclass
class Cell:
    """What a notebook shows for one executed cell."""

    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error(self) -> dict[str, Any]:
        assert len(self.errors) == 1, self
        return self.errors[0]


class Notebook:
    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client

    def run(self, code: str) -> Cell:
        msg_id = self.client.execute(code)
        while True:
            reply = self.client.get_shell_msg(timeout=CELL_TIMEOUT_S)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        cell = Cell(status=reply["content"]["status"])
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=CELL_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no idle status after {code!r}: {cell}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                return cell
            if kind == "stream":
                if content["name"] == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
            elif kind == "execute_result":
                cell.results.append(content["data"]["text/plain"])
            elif kind == "error":
                cell.errors.append(content)

    def ok(self, code: str) -> Cell:
        cell = self.run(code)
        assert cell.status == "ok" and not cell.errors, cell
        return cell


@pytest.fixture(scope="module", autouse=True)
def client_loop() -> Iterator[None]:
    """The event loop that jupyter_core keeps for this thread and the blocking
    clients run their calls on (an epoll fd and a socketpair): made first, so
    that it is this module's, and closed when the module is done."""
    loop = ensure_event_loop()
    yield
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that runs this environment's Python, whatever else is installed."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "tether-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "tether test", "language": "python"})
    )
    return root


def _start(spec_dir: Path, home: Path) -> Iterator[Notebook]:
    manager = KernelManager(
        kernel_name="tether-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)]),
        connection_file=str(home / "connection.json"),
    )
    env = dict(os.environ, IPYTHONDIR=str(home / "ipython"), JUPYTER_PLATFORM_DIRS="1")
    env.pop("TETHER_CONNECT", None)
    manager.start_kernel(env=env, cwd=str(home))
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=CELL_TIMEOUT_S)
        yield Notebook(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def nb(kernel_spec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    """A kernel with the extension loaded and torch remoted (embedded acceptor)."""
    for notebook in _start(kernel_spec_dir, tmp_path_factory.mktemp("nb")):
        assert notebook.ok("%load_ext tether").stdout == ""  # no "not an IPython extension"
        cell = notebook.ok("%tether connect --remote torch")
        assert "on loopback" in cell.stdout, cell
        notebook.ok("import torch")
        yield notebook


@pytest.fixture
def fresh(kernel_spec_dir: Path, tmp_path: Path) -> Iterator[Notebook]:
    """A kernel of its own, with the extension loaded."""
    for notebook in _start(kernel_spec_dir, tmp_path):
        assert notebook.ok("%load_ext tether").stdout == ""
        yield notebook


def test_import_yields_the_workers_module(nb: Notebook) -> None:
    cell = nb.ok("import sys\nprint(type(torch).__name__, 'torch' in sys.modules)")
    assert cell.stdout == "RemoteModule True\n"
    cell = nb.ok(
        "import os\n"
        "class Pid(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x + os.getpid()\n"
        "print(int(Pid()(torch.zeros(1)).item()) != os.getpid(), 'torch._C' in sys.modules)"
    )
    assert cell.stdout == "True False\n"  # forward ran in the worker; no local torch


def test_a_tensor_op_prints_and_displays(nb: Notebook) -> None:
    cell = nb.ok("x = torch.arange(6.0).reshape(2, 3)\nprint(x * 2)\n(x @ x.T).sum().item()")
    assert cell.stdout == "tensor([[ 0.,  2.,  4.],\n        [ 6.,  8., 10.]])\n"
    assert cell.results == ["83.0"]


def test_a_loop_of_pipelined_ops_then_item(nb: Notebook) -> None:
    before = _async_calls(nb)
    cell = nb.ok(
        "w = torch.ones(4)\n"
        "for _ in range(200):\n"
        "    w = w * 1.01 + 0.5\n"
        "print(round(w.sum().item(), 2))"
    )
    w = 1.0
    for _ in range(200):
        w = w * 1.01 + 0.5
    assert abs(float(cell.stdout) - 4 * w) < 1e-2 * 4 * w
    # Only the first call of each site waits: most of the 400 operations did not.
    assert _async_calls(nb) - before >= 300


def _async_calls(nb: Notebook) -> int:
    out = nb.ok("%tether status").stdout
    calls = next(line for line in out.splitlines() if line.startswith("calls"))
    return int(calls.split(",")[1].split()[0])


def test_a_remote_error_caught_by_the_cells_try(nb: Notebook) -> None:
    cell = nb.ok(
        "try:\n"
        "    torch.ones(2, 3) @ torch.ones(2, 3)\n"
        "except RuntimeError as e:\n"
        "    print('caught', type(e).__name__, 'mat1 and mat2' in str(e))\n"
        "print('after')"
    )
    assert cell.stdout == "caught RuntimeError True\nafter\n"


def test_an_uncaught_remote_error_is_the_cells_error(nb: Notebook) -> None:
    cell = nb.run("y = torch.ones(2, 3)\nz = y @ y\nprint('not reached')")
    assert cell.status == "error"
    assert cell.error["ename"] == "RuntimeError"
    assert "mat1 and mat2" in cell.error["evalue"]
    assert "not reached" not in cell.stdout
    tb = "\n".join(cell.error["traceback"])
    assert "RemoteTraceback" in tb  # the worker's frames come with it
    # The proxy's and the session's frames between the cell's line and the raise
    # are left out (__tracebackhide__), as IPython leaves out its own; IPython
    # always shows the frame that raised.
    assert "_proxy.py" not in tb and tb.count("_session.py") == 1, tb
    nb.ok("print(torch.ones(1).item())")  # the session goes on


def test_a_pipelined_error_at_the_end_of_a_cell_stays_in_that_cell(nb: Notebook) -> None:
    nb.ok("a = torch.ones(2, 3)\nb = torch.ones(3, 2)\nc = a @ b")  # learn the site
    cell = nb.run("c = a @ a")  # pipelined: fails in the worker after the cell's code ran
    assert cell.status == "error", cell
    assert cell.error["ename"] == "RuntimeError"
    assert "mat1 and mat2" in cell.error["evalue"]
    assert nb.ok("print(torch.ones(1).item())").stdout == "1.0\n"  # the session goes on


def test_prints_of_remote_code_appear_in_the_cell(nb: Notebook) -> None:
    nb.ok(
        "class Shout(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        print('in the worker', x.shape[0])\n"
        "        return x + 1\n"
        "m = Shout()"
    )
    cell = nb.ok("print('before')\nm(torch.ones(3))\nm(torch.ones(4))\nprint('after')")
    assert cell.stdout == "before\nin the worker 3\nin the worker 4\nafter\n"
    cell = nb.ok("out = m(torch.ones(5))")  # pipelined, nothing local after it
    assert cell.stdout == "in the worker 5\n"


def test_status_shows_the_session(nb: Notebook) -> None:
    out = nb.ok("%tether status").stdout
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["address"].startswith("tcp://127.0.0.1:")
    assert "loopback" in fields["address"]
    assert fields["state"] == "open"
    assert fields["remote"] == "torch"
    assert len(fields["session"]) > 4
    assert "sync" in fields["calls"] and "async" in fields["calls"]


def test_disconnect_removes_the_remote_modules(fresh: Notebook) -> None:
    fresh.ok("%tether connect --remote torch,numpy")
    fresh.ok("import torch, numpy\nt = torch.ones(2)")
    cell = fresh.ok(
        "import sys\nprint(sorted(k for k in sys.modules if k.startswith('torch'))[:1])"
    )
    assert cell.stdout == "['torch']\n"
    cell = fresh.ok("%tether disconnect")
    assert cell.stdout.startswith("tether: disconnected from tcp://127.0.0.1:")
    cell = fresh.ok(
        "print([k for k in sys.modules if k.split('.')[0] in ('torch', 'numpy')\n"
        "       and type(sys.modules[k]).__name__ == 'RemoteModule'])"
    )
    assert cell.stdout == "[]\n"
    assert fresh.ok("%tether status").stdout.startswith("tether: not connected")
    cell = fresh.run("t + 1")  # a proxy of the closed session
    assert cell.status == "error"
    assert cell.error["ename"] == "SessionClosed"
    assert cell.error["traceback"] == [f"SessionClosed: {cell.error['evalue']}"]
    # Names bound before stay the closed session's: import again after a new connect.
    cell = fresh.ok(
        "%tether connect --remote torch\nimport torch\nprint(torch.ones(2).sum().item())"
    )
    assert cell.stdout.endswith("2.0\n")


@pytest.mark.parametrize(
    ("line", "ename", "words"),
    [
        ("tcp://127.0.0.1:9 --token-file {token} --remote torch", "ConnectError", "127.0.0.1:9"),
        ("--remote no_such_module_here", "RemoteModuleNotFound", "no_such_module_here"),
        ("--remote torch --gpus 0.5 --pool http://127.0.0.1:9 --pool-token x", "ConnectError",
         "127.0.0.1:9"),
    ],
)  # fmt: skip
def test_errors_are_one_line(
    fresh: Notebook, tmp_path: Path, line: str, ename: str, words: str
) -> None:
    token = tmp_path / "token"
    token.write_text("not-the-token\n")
    cell = fresh.run("%tether connect " + line.format(token=token))
    assert cell.status == "error"
    assert cell.error["ename"] == ename, cell
    assert len(cell.error["traceback"]) == 1, cell.error["traceback"]
    assert words in cell.error["traceback"][0]
    assert fresh.ok("%tether status").stdout.startswith("tether: not connected")


def test_a_wrong_token_is_one_line(fresh: Notebook, tmp_path: Path) -> None:
    cell = fresh.ok(
        "from tether.acceptor._server import EmbeddedAcceptor\n"
        "acc = EmbeddedAcceptor()\nurl = str(acc.start())"
    )
    token = tmp_path / "token"
    token.write_text("not-the-token\n")
    cell = fresh.run(f"%tether connect $url --token-file {token} --remote torch")
    assert cell.status == "error"
    assert cell.error["ename"] == "AuthenticationError", cell
    assert len(cell.error["traceback"]) == 1
    fresh.ok("acc.stop()")


def test_usage_errors(fresh: Notebook) -> None:
    cell = fresh.run("%tether connect")
    assert cell.status == "error"
    assert "--remote" in cell.stderr + str(cell.errors)
    cell = fresh.ok("%tether -h")
    assert "connect" in cell.stdout
