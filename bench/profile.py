"""Where does Tether's time go? Sample the client and the worker with py-spy during one case.

``python -m bench.profile --case small --seconds 10`` starts ``tether serve`` on loopback,
opens a session, runs the case in a loop for the given time while ``py-spy record`` samples
the client (this process) and the session's worker (CPU samples; ``--idle`` adds waiting
threads), then prints each side's CPU time per round and the functions with the most
samples, inclusive and self, with their source lines. Collapsed stacks are kept in
``--out`` for flame graphs. The worker is found below the acceptor at any depth (a
sandboxed one is bubblewrap's child); of it, only the main thread is summarized, and its
waits count as samples (py-spy cannot tell a sandboxed process's blocked threads from
running ones).
py-spy must be installed (``pip install py-spy``); it needs ptrace rights (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import cases
from bench.cases import Peer
from bench.peers import Servers, free_port, tether_server
from bench.runner import make_tether_peer

WORKLOADS: dict[str, Callable[[Peer], object]] = {
    "null": lambda p: cases.null_call(p, 500),
    "pipelined": lambda p: cases.pipelined(p, 5000),
    "fine": lambda p: cases.fine_grained(p, 500),
    "small": lambda p: cases.small_training(p, 100, 50),
    "large": lambda p: cases.large_training(p, 10),
    "bulk": lambda p: cases.bulk(p, _bulk_array()),
}


def _bulk_array() -> object:
    global _BULK
    if _BULK is None:
        _BULK = cases.make_bulk_array(64)
    return _BULK


_BULK: object = None


def _source(frame: str) -> str:
    """The source line a py-spy frame ``func (path:line)`` points at, if it can be found."""
    import linecache
    import re

    m = re.search(r"\((.+):(\d+)\)$", frame)
    if m is None:
        return ""
    rel, line = m.group(1), int(m.group(2))
    for base in ["", *sys.path]:
        path = os.path.join(base, rel) if base else rel
        if os.path.isfile(path):
            return linecache.getline(path, line).strip()
    return ""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _workers(pid: int) -> list[int]:
    """The session workers below process ``pid``, at any depth: a sandboxed worker
    is bubblewrap's child, not the acceptor's."""
    found, todo = [], _children(pid)
    while todo:
        child = todo.pop(0)
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tether.acceptor._worker" in cmdline and b"bwrap" not in cmdline.split(b"\0")[0]:
            found.append(child)
        else:
            todo += _children(child)
    return found


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The root frame of a thread other than the main one, in py-spy's collapsed stacks.
_THREAD_ROOT = "Thread._bootstrap (threading.py:"


def summarize(path: Path, top: int, *, main_only: bool = False) -> str:
    """Top functions by inclusive and by self samples from a py-spy raw (collapsed) file;
    ``main_only``: the main thread's samples only."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or (main_only and stack.startswith(_THREAD_ROOT)):
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";")]
        total += n
        leaf = frames[-1]
        own[leaf] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples", "  inclusive:"]
    lines += [f"    {100 * n / total:5.1f} %  {f[:110]}" for f, n in inclusive.most_common(top)]
    lines.append("  self:")
    for f, n in own.most_common(top):
        lines.append(f"    {100 * n / total:5.1f} %  {f[:90]}  | {_source(f)[:70]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--case", choices=sorted(WORKLOADS), default="small")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=int, default=400, help="samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=Path("/tmp/tether-profile"))
    p.add_argument("--native", action="store_true", help="also sample native frames")
    p.add_argument(
        "--idle",
        action="store_true",
        help="sample waiting threads too (wall clock). Misleading when client "
        "and worker share a vCPU: a sender preempted by the peer it woke "
        "is charged to sendmsg",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the worker (OMP_NUM_THREADS; 0 = default), as bench.run",
    )
    args = p.parse_args(argv)
    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = WORKLOADS[args.case]
    # Not `with Servers()`: Tether sends every call made inside a with-block of a local
    # context manager (or a try) synchronously, which is not what a script sees.
    servers = Servers()
    atexit.register(servers.stop_all)
    token = servers.workdir / "token"
    url = servers.start("tether", tether_server("127.0.0.1", free_port(), token))
    peer = make_tether_peer(url.splitlines()[0], token.read_text().strip())
    work(peer)  # warm: imports, learned call sites, first-call costs
    serve_pid = servers._procs[0][1].pid
    workers = _workers(serve_pid)
    if not workers:
        print("could not find the session's worker process", file=sys.stderr)
        return 1
    procs = []
    for side, pid in (("client", os.getpid()), ("worker", workers[-1])):
        cmd = [
            spy,
            "record",
            "-p",
            str(pid),
            "-r",
            str(args.rate),
            "-d",
            str(int(args.seconds) + 1),
            "-f",
            "raw",
            "-o",
            str(args.out / f"{args.case}-{side}.txt"),
        ]
        if args.native:
            cmd.append("--native")
        if args.idle:
            cmd.append("--idle")
        procs.append(
            (side, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    time.sleep(0.5)
    cpu0 = (_cpu_seconds(os.getpid()), _cpu_seconds(workers[-1]))
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline:
        work(peer)
        rounds += 1
    cpu1 = (_cpu_seconds(os.getpid()), _cpu_seconds(workers[-1]))
    for _, proc in procs:
        proc.wait(timeout=60)
    peer.close()
    servers.stop_all()
    print(
        f"case {args.case}: {rounds} rounds in {args.seconds:.0f} s; CPU per round: "
        + ", ".join(
            f"{side} {1e3 * (b - a) / max(rounds, 1):.2f} ms"
            for side, a, b in zip(("client", "worker"), cpu0, cpu1, strict=True)
        )
    )
    for side, proc in procs:
        path = args.out / f"{args.case}-{side}.txt"
        print(f"\n{side} ({path}):")
        if proc.returncode != 0 or not path.exists():
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            print(f"  py-spy failed: {err.strip()[:500]}")
            continue
        if side == "worker":
            # py-spy cannot tell a sandboxed worker's blocked threads (the watchdog,
            # the stop reader) from running ones: its main thread does the work.
            print("  (the main thread only; a sandboxed worker's waits are samples too:")
            print("   read Channel.recv's poll as idle time)")
        print(summarize(path, args.top, main_only=side == "worker"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
