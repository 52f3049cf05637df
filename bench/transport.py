"""What the transport costs: ``python -m bench.transport [--tls] [--rounds N]``.

Starts ``tether serve`` on loopback (and, with ``--tls``, a second one on
``tls://`` with a throw-away CA made by the ``openssl`` command), then measures,
in rounds that alternate between the links so a busy machine hurts both alike:

- ``null``: seconds per synchronous round trip (``torch.is_grad_enabled()``);
- ``pipelined``: calls per second for calls whose results stay remote;
- ``bulk up`` / ``bulk down``: bytes per second moving a 64 MiB array each way.

Prints one line per link with the medians, and the TLS/TCP ratios. This is a
measurement, not a test: nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import tether
from bench.peers import sandbox_args


@contextlib.contextmanager
def _acceptor(work: Path, name: str, tls: tuple[Path, Path] | None) -> Iterator[str]:
    token, ready = work / f"{name}.token", work / f"{name}.addr"
    scheme = "tls" if tls else "tcp"
    argv = [sys.executable, "-m", "tether", "serve", "--listen", f"{scheme}://127.0.0.1:0"]
    argv += ["--token-file", str(token), "--ready-file", str(ready), "--log-level", "WARNING"]
    argv += sandbox_args()
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tether serve ({name}) did not start")
            time.sleep(0.05)
        yield ready.read_text().strip()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _round(url: str, token: str, array: Any, null_n: int, pipe_n: int) -> dict[str, float]:
    with tether.connect(url, token, remote=("torch",), ordered_output=False) as sess:
        torch = sess.import_module("torch")
        torch.is_grad_enabled()
        t0 = time.perf_counter()
        for _ in range(null_n):
            torch.is_grad_enabled()
        null = (time.perf_counter() - t0) / null_n
        acc = torch.zeros(())
        acc.item()
        t0 = time.perf_counter()
        for _ in range(pipe_n):
            acc.add_(1.0)
        acc.item()
        pipe = pipe_n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        remote = torch.from_numpy(array)
        remote.numel()
        t1 = time.perf_counter()
        back = remote.numpy()
        t2 = time.perf_counter()
        assert back.nbytes == array.nbytes
        del remote, back
    return {
        "null_us": null * 1e6,
        "pipelined_per_s": pipe,
        "bulk_up_MBps": array.nbytes / (t1 - t0) / 1e6,
        "bulk_down_MBps": array.nbytes / (t2 - t1) / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transport")
    p.add_argument("--tls", action="store_true", help="also measure a tls:// acceptor")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--null", type=int, default=2000)
    p.add_argument("--pipelined", type=int, default=10_000)
    p.add_argument("--bulk-mib", type=int, default=64)
    args = p.parse_args(argv)
    array = np.arange(args.bulk_mib * (1 << 20) // 8, dtype=np.int64)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp, contextlib.ExitStack() as st:
        work = Path(tmp)
        links = {"tcp": st.enter_context(_acceptor(work, "tcp", None))}
        if args.tls:
            from tether.transport._selfsigned import make_self_signed

            made = make_self_signed(work / "tls", hosts=("127.0.0.1", "localhost"))
            links["tls"] = st.enter_context(_acceptor(work, "tls", (made.cert, made.key)))
            os.environ["TETHER_TLS_CA"] = str(made.ca)
        for _ in range(args.rounds):
            for name, url in links.items():
                token = (work / f"{name}.token").read_text().strip()
                r = _round(url, token, array, args.null, args.pipelined)
                results.setdefault(name, []).append(r)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        for name, rs in results.items()
    }
    for name, m in medians.items():
        print(name, "  ".join(f"{k}={v:,.1f}" for k, v in m.items()))
    if "tls" in medians:
        tcp, tls = medians["tcp"], medians["tls"]
        print("tls/tcp", "  ".join(f"{k}={tls[k] / tcp[k]:.2f}" for k in tcp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
