"""Attacks from one session on another and on the acceptor, with real processes.

A real ``tether serve`` (root, so a uid per session) and two real sessions A
and B opened through the public client. A's remote code, which by design runs
whatever its client ships, tries what an attacker would; each attempt must
fail, and B must still work afterwards. Without the sandbox (the acceptor of
before issue 10) every attempt here succeeded.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_process import Served, sandbox_skip_reason, serving, worker_pid

import tether

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox_skip_reason() is not None, reason=str(sandbox_skip_reason())),
]

SECRET_ENV = "ACCEPTOR_API_TOKEN"

#: Runs in A's worker; ``T`` holds the targets; leaves ``RESULT`` (JSON).
ATTACKS = textwrap.dedent(
    r"""
    import ctypes, json, os, signal, socket

    libc = ctypes.CDLL(None, use_errno=True)

    def attempt(fn):
        try:
            return "ok: " + repr(fn())[:80]
        except BaseException as exc:
            return f"{type(exc).__name__}: {exc}"[:120]

    def check(r):
        if r == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return r

    def ptrace(pid):
        r = check(libc.ptrace(16, pid, 0, 0))  # PTRACE_ATTACH
        libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
        return r

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    def vm_readv(pid, address):
        buf = ctypes.create_string_buffer(16)
        local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 16)
        remote = IoVec(address, 16)
        libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                          ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
        return check(libc.process_vm_readv(pid, ctypes.byref(local), 1,
                                           ctypes.byref(remote), 1, 0))

    def read_mem(pid, address):
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.seek(address)
            return f.read(16)

    def read(path, n=64):
        with open(path, "rb") as f:
            return f.read(n)

    def cmdlines():
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    out.append(read(f"/proc/{p}/cmdline", 1 << 16))
                except OSError:
                    pass
        return out

    def clone_namespace():
        # clone(CLONE_NEWUSER | SIGCHLD): a child that got through leaves at once.
        pid = check(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return pid

    def clone3_namespace():
        args = (ctypes.c_uint64 * 11)(0x10000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0)
        pid = check(libc.syscall(435, ctypes.byref(args), ctypes.sizeof(args)))
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return pid

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"

    def append(path):
        with open(path, "ab"):
            return "opened for writing"

    b = T["b_pid"]
    R = {
        "see B's worker pid in /proc": b in [int(p) for p in os.listdir("/proc") if p.isdigit()],
        "find B's session in any /proc/*/cmdline": any(
            T["b_session"].encode() in c for c in cmdlines()),
        "read B's /proc/PID/mem": attempt(lambda: read_mem(b, T["b_address"])),
        "read B's /proc/PID/environ": attempt(lambda: read(f"/proc/{b}/environ")),
        "read B's /proc/PID/cmdline": attempt(lambda: read(f"/proc/{b}/cmdline")),
        "ptrace B": attempt(lambda: ptrace(b)),
        "process_vm_readv B": attempt(lambda: vm_readv(b, T["b_address"])),
        "read B's temp file": attempt(lambda: read(T["b_tmp_file"])),
        "read the acceptor's token file": attempt(lambda: read(T["token_file"])),
        "open the acceptor's token file for writing": attempt(lambda: append(T["token_file"])),
        "read the acceptor's /proc/PID/environ": attempt(
            lambda: read(f"/proc/{T['acceptor_pid']}/environ")),
        "ptrace the acceptor": attempt(lambda: ptrace(T["acceptor_pid"])),
        "signal the acceptor (signal 0)": attempt(lambda: os.kill(T["acceptor_pid"], 0)),
        "connect to the acceptor's port": attempt(lambda: connect(T["acceptor_port"])),
        "find the acceptor's secret in own environment": any(
            T["secret"] in v for v in os.environ.values()),
        "ptrace anything (PTRACE_TRACEME)": attempt(lambda: check(libc.ptrace(0, 0, 0, 0))),
        "process_vm_readv of its own memory": attempt(
            lambda: vm_readv(os.getpid(), ctypes.addressof(ctypes.create_string_buffer(16)))),
        "unshare a user namespace": attempt(lambda: check(libc.unshare(0x10000000))),
        "clone into a user namespace": attempt(clone_namespace),
        "clone3 into a user namespace": attempt(clone3_namespace),
        "kill B": attempt(lambda: os.kill(b, signal.SIGKILL)),
    }
    RESULT = json.dumps(R)
    """
)


def run_remote(session: Any, code: str, targets: dict[str, Any]) -> dict[str, Any]:
    """Executes ``code`` in the session's worker; returns its JSON ``RESULT``."""
    full = f"import json\nT = json.loads({json.dumps(targets)!r})\n{code}"
    # eval of an expression that execs the code in a fresh namespace: the
    # result string comes back by value.
    out = session.import_module("builtins").eval(
        f"(lambda ns: (exec({full!r}, ns), ns)[1])({{}})['RESULT']"
    )
    result: dict[str, Any] = json.loads(str(out))
    return result


SECRET = "acceptor-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A sandboxed acceptor with a credential in its environment."""
    with serving(tmp_path_factory.mktemp("attacks"), env={**os.environ, SECRET_ENV: SECRET}) as s:
        yield s


def _first_mapping(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        return int(f.readline().split("-")[0], 16)


def attack(served: Served) -> tuple[dict[str, Any], Any]:
    """Sessions A and B; A attacks B and the acceptor. Returns A's results and B."""
    a = tether.connect(served.url, token=served.token)
    b = tether.connect(served.url, token=served.token)
    try:
        b_tmp = f"/tmp/b-secret-{secrets.token_hex(4)}.txt"
        run_remote(
            b, f"with open({b_tmp!r}, 'w') as f:\n    f.write('B private')\nRESULT='{{}}'", {}
        )
        b_pid = worker_pid(b.session_id)
        targets = {
            "b_pid": b_pid,
            "b_session": b.session_id,
            "b_address": _first_mapping(b_pid),
            "b_tmp_file": b_tmp,
            "token_file": str(served.token_file),
            "acceptor_pid": served.proc.pid,
            "acceptor_port": int(served.url.rsplit(":", 1)[1]),
            "secret": SECRET,
        }
        results = run_remote(a, ATTACKS, targets)
    except BaseException:
        b.close()
        raise
    finally:
        a.close()
    return results, b


def test_session_a_cannot_reach_b_or_the_acceptor(served: Served) -> None:
    results, b = attack(served)
    try:
        failed_as_they_should = {
            name: outcome
            for name, outcome in results.items()
            if outcome is False or (isinstance(outcome, str) and not outcome.startswith("ok"))
        }
        succeeded = {k: v for k, v in results.items() if k not in failed_as_they_should}
        assert not succeeded, f"attacks that worked: {succeeded}"
        # B is unharmed: alive, and its private file intact.
        read_back = (
            "import glob\nwith open(glob.glob('/tmp/b-secret-*')[0]) as f:\n    R = f.read()"
        )
        assert run_remote(b, read_back + "\nRESULT = json.dumps(R)", {}) == "B private"
        assert b.import_module("math").factorial(5) == 120
    finally:
        b.close()
    print(json.dumps(results, indent=1))  # the attack table, shown with -s


def test_each_session_has_its_own_uid_and_private_tmp(served: Served) -> None:
    probe = textwrap.dedent(
        """
        import os, stat, subprocess, sys
        from tether.acceptor._files import scratch_dir
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f)
        st = os.stat("/tmp")
        with open("/dev/shm/probe", "w") as f:  # torch's shared memory lives here
            f.write("x")
        RESULT = json.dumps({
            "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "tmp_owner": st.st_uid, "tmp_mode": stat.S_IMODE(st.st_mode),
            "tmpdir": os.environ.get("TMPDIR"), "cwd": os.getcwd(),
            "nnp": status["NoNewPrivs"].strip(), "capeff": status["CapEff"].strip(),
            "scratch": scratch_dir(),
            "base_prefix": sys.base_prefix,
            "child": subprocess.run(  # multiprocessing's spawn, DataLoader workers
                [sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True
            ).stdout.strip(),
        })
        """
    )
    a = tether.connect(served.url, token=served.token)
    b = tether.connect(served.url, token=served.token)
    try:
        ra, rb = run_remote(a, probe, {}), run_remote(b, probe, {})
    finally:
        a.close()
        b.close()
    assert ra["uid"] != rb["uid"]
    for r in (ra, rb):
        assert r["uid"] != 0 and r["uid"] == r["gid"] == r["tmp_owner"]
        assert r["groups"] == []
        assert r["tmp_mode"] == 0o700 and r["tmpdir"] == "/tmp" and r["cwd"] == "/tmp"
        assert r["nnp"] == "1" and r["capeff"] == "0000000000000000"
        assert r["scratch"].startswith("/tmp/")  # the worker's scratch is in its cell
        assert r["base_prefix"] == sys.base_prefix  # its own Python install, not another
        assert r["child"] == "42"


def test_a_cell_is_removed_when_its_session_ends(served: Served) -> None:
    s = tether.connect(served.url, token=served.token)
    cells = [p for p in Path("/tmp").glob(f"tether-cells-*/{s.session_id}") if p.is_dir()]
    assert len(cells) == 1 and cells[0].stat().st_mode & 0o777 == 0o700
    s.close()
    deadline = time.monotonic() + 30  # the acceptor removes it once it has reaped the worker
    while cells[0].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cells[0].exists(), "the session's private directory outlived it"
