"""The client side of one link: run every case against every peer and write JSON.

``python -m bench.runner --out FILE ...`` runs in the client's network namespace (for the
emulated link, ``bench.run`` starts it with ``ip netns exec``). Repetitions interleave the
peers (rep 1: local, Tether, RPyC; rep 2: ...), so drift from a noisy machine hits all of
them alike. A peer that is slow on a case stops repeating once it has used that case's time
budget (it always gets at least one repetition); a peer that fails a case gets the error
recorded and the suite goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from bench import cases, floors
from bench.cases import Outcome, Peer, Sizes
from bench.peers import child_env, split_address

CASE_KEYS = ("null", "pipelined", "fine", "small", "large", "bulk", "startup")


def make_local_peer() -> Peer:
    import torch

    return Peer(name="local", torch=torch)


def make_tether_peer(url: str, token: str) -> Peer:
    """A :class:`Peer` over a Tether session, using only the public API."""
    import tether

    # tether.connect is loaded lazily by a module __getattr__ typed as returning object.
    connect = cast("Callable[..., Any]", tether.connect)
    sess = connect(url, token=token, remote=("torch",))
    try:
        torch = sess.import_module("torch")
    except BaseException:
        sess.close()
        raise
    stats = getattr(sess, "stats", None)
    return Peer(
        name="tether",
        torch=torch,
        close=sess.close,
        stats=(lambda: dict(stats)) if isinstance(stats, dict) else None,
    )


def _record() -> dict[str, Any]:
    return {"values": [], "outputs": [], "error": None, "seconds": 0.0}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Runner:
    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.result: dict[str, Any] = {
            "link": args.link,
            "floors": {},
            "cases": {},
            "errors": {},
            "sizes": sizes.__dict__,
        }
        self.factories: dict[str, Callable[[], Peer]] = {}
        self.peers: dict[str, Peer] = {}
        if args.resume and Path(args.out).exists():
            self.result = json.loads(Path(args.out).read_text())
            self.result.pop("current", None)

    # -- peers --------------------------------------------------------------------------

    def open_peers(self) -> None:
        a = self.args
        if "local" in a.peers:
            self.factories["local"] = make_local_peer
        if "tether" in a.peers and a.tether_url:
            token = Path(a.tether_token_file).read_text().strip()
            self.factories["tether"] = lambda: make_tether_peer(a.tether_url, token)
        if "rpyc" in a.peers and a.rpyc:
            from bench import rpyc_peer

            host, port = split_address(a.rpyc)
            self.factories["rpyc"] = lambda: rpyc_peer.make_peer(host, port, a.rpyc_stock)
        for name, factory in list(self.factories.items()):
            try:
                self.peers[name] = factory()
                self.peers[name].device = a.device
            except Exception as exc:
                self.result["errors"][name] = _describe(exc)
                del self.factories[name]
        self.result["device"] = a.device
        # Recorded so the report can show that every peer computed with the same pool.
        self.result["threads"] = {
            name: int(peer.torch.get_num_threads()) for name, peer in self.peers.items()
        }

    def close_peers(self) -> None:
        for peer in self.peers.values():
            with contextlib.suppress(Exception):
                peer.close()

    # -- measuring ----------------------------------------------------------------------

    def run_case(
        self, key: str, fn: Callable[[Peer], Outcome], extra_keys: tuple[str, ...] = ()
    ) -> None:
        if key in self.result["cases"] and not self.result["cases"][key].get("_partial"):
            return  # done before a resume
        failed = self.result["cases"].get(key, {})  # peers that crashed on this case
        records = {name: failed.get(name) or _record() for name in self.peers}
        extras = {k: {name: _record() for name in self.peers} for k in extra_keys}
        for k in extra_keys:
            for name, rec in records.items():
                extras[k][name]["error"] = rec["error"]
        for rep in range(self.sizes.reps):
            for name in list(self.peers):
                rec = records[name]
                if rec["error"] is not None:
                    continue
                if rep > 0 and rec["seconds"] > self.args.budget:
                    continue
                self.result["current"] = [key, name, list(extra_keys)]
                self._save()
                peer = self.peers[name]
                if os.environ.get("TETHER_BENCH_FAIL") == f"{key}:{name}":
                    # For the smoke test of the crash-and-resume path.
                    raise RuntimeError(f"injected failure (TETHER_BENCH_FAIL={key}:{name})")
                before = peer.stats() if peer.stats else None
                t0 = time.perf_counter()
                out = fn(peer)  # no try around this: see the module docstring
                rec["seconds"] += time.perf_counter() - t0
                if before is not None and peer.stats is not None:
                    after = peer.stats()
                    rec["calls"] = {k: after.get(k, 0) - v for k, v in before.items()}
                rec["values"].append(out.value)
                rec["outputs"].append(out.output)
                for k in extra_keys:
                    extras[k][name]["values"].append(out.extra[k])
                    extras[k][name]["outputs"].append(out.output)
        self.result.pop("current", None)
        self.result["cases"][key] = records
        done = ", ".join(
            f"{n} {_median(r['values']) or float('nan'):.4g}" + (" (error)" if r["error"] else "")
            for n, r in records.items()
        )
        print(f"[bench] {self.args.link}: {key}: {done}", file=sys.stderr, flush=True)
        for k in extra_keys:
            self.result["cases"][f"{key}_{k}"] = extras[k]
        self._save()

    def run_floors(self) -> None:
        if not self.args.floor:
            return
        addr = split_address(self.args.floor)
        s = self.sizes
        fl = self.result["floors"]
        fl["ping_s"] = _median([floors.ping_pong(addr, s.ping_pongs) for _ in range(3)])
        fl["echo_fps"] = _median([floors.frame_echo(addr, s.echo_frames) for _ in range(3)])
        for mib in s.bulk_mib:
            buf = memoryview(bytearray(mib << 20))
            reps = 3 if mib <= 64 else 2
            fl[f"up_{mib}_Bps"] = _median([floors.upload(addr, buf) for _ in range(reps)])
            fl[f"down_{mib}_Bps"] = _median([floors.download(addr, buf) for _ in range(reps)])
        self._save()

    def run_all(self) -> None:
        s = self.sizes
        wanted = set(self.args.cases)
        if not self.result["floors"]:
            self.run_floors()
        self.open_peers()
        # No try/finally either: Tether syncs every call inside one (see the docstring).
        if "null" in wanted:
            self.run_case("null", lambda p: cases.null_call(p, s.null_calls))
        if "pipelined" in wanted:
            self.run_case("pipelined", lambda p: cases.pipelined(p, s.pipelined_calls))
        if "fine" in wanted:
            self.run_case("fine", lambda p: cases.fine_grained(p, s.fine_iters))
        if "small" in wanted:
            self.run_case(
                "small", lambda p: cases.small_training(p, s.small_steps, s.small_read_every)
            )
        if "large" in wanted:
            self.run_case("large", lambda p: cases.large_training(p, s.large_steps))
        if "bulk" in wanted:
            for mib in s.bulk_mib:
                array = cases.make_bulk_array(mib)
                self.run_case(
                    f"bulk{mib}", functools.partial(cases.bulk, array=array), extra_keys=("down",)
                )
                del array
        self.close_peers()
        if "startup" in wanted:
            self.run_startup()

    # -- start-up -----------------------------------------------------------------------

    def run_startup(self) -> None:
        a = self.args
        records: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="tether-bench-startup-") as tmp:
            script = Path(tmp) / "first_result.py"
            script.write_text(cases.STARTUP_SCRIPT)
            commands: dict[str, list[str]] = {}
            if "local" in a.peers:
                commands["local"] = [sys.executable, str(script)]
            if "tether" in a.peers and a.startup != "none":
                cmd = [sys.executable, "-m", "tether", "run"]
                if a.startup == "connect":
                    cmd += ["--connect", a.tether_url, "--token-file", a.tether_token_file]
                commands["tether"] = [*cmd, "--remote", "torch", "--", sys.executable, str(script)]
            for name in commands:
                records[name] = _record()
            if "rpyc" in a.peers and a.rpyc_startup:
                records["rpyc"] = _record()
            reps = max(1, min(self.sizes.reps, 3))
            for _ in range(reps):
                for name, cmd in commands.items():
                    rec = records[name]
                    if rec["error"] is None:
                        _startup_once(rec, cmd, tmp)
                if "rpyc" in records and records["rpyc"]["error"] is None:
                    _rpyc_startup_once(records["rpyc"], tmp, a.rpyc_stock)
        self.result["cases"]["startup"] = records
        done = ", ".join(
            f"{n} {_median(r['values']) or float('nan'):.3g}" for n, r in records.items()
        )
        print(f"[bench] {a.link}: startup: {done}", file=sys.stderr, flush=True)
        self._save()

    def _save(self) -> None:
        tmp = Path(f"{self.args.out}.tmp")
        tmp.write_text(json.dumps(self.result, indent=1))
        tmp.replace(self.args.out)

    def record_crash(self, exc: BaseException) -> None:
        """Charge ``exc`` to the case and peer that were running (see the module docstring)."""
        current = self.result.pop("current", None)
        if current is None:
            self.result["errors"]["runner"] = _describe(exc)
        else:
            key, peer, extra_keys = current
            recs = self.result["cases"].setdefault(key, {"_partial": True})
            recs[peer] = {**_record(), "error": _describe(exc)}
            for k in extra_keys:
                self.result["cases"].setdefault(f"{key}_{k}", {})[peer] = recs[peer]
        self._save()


def _startup_once(rec: dict[str, Any], cmd: list[str], cwd: str) -> None:
    t0 = time.time()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=180, cwd=cwd, env=child_env(), check=False
        )
        stamp, value = cases.parse_first_result(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}: {proc.stderr[-2000:]}")
    except (subprocess.TimeoutExpired, ValueError, RuntimeError) as exc:
        extra = ""
        if isinstance(exc, ValueError):
            extra = f"\nstderr:\n{proc.stderr[-2000:]}"
        rec["error"] = f"{type(exc).__name__}: {exc}{extra}"
        return
    rec["values"].append(stamp - t0)
    rec["outputs"].append(value)


def _rpyc_startup_once(rec: dict[str, Any], tmp: str, stock: bool) -> None:
    """Spawn a fresh RPyC classic server, connect, import torch there, get a first result."""
    from bench import rpyc_peer
    from bench.peers import Servers, rpyc_server

    t0 = time.time()
    try:
        with Servers(Path(tmp)) as servers:
            ready = servers.start("rpyc-startup", rpyc_server("127.0.0.1", stock=stock))
            host, port = split_address(ready)
            conn = rpyc_peer.connect(host, port, stock=stock)
            value = conn.modules.torch.ones(4).sum().item()
            t1 = time.time()
            conn.close()
    except Exception as exc:
        rec["error"] = _describe(exc)
        return
    rec["values"].append(t1 - t0)
    rec["outputs"].append(float(value))


def _describe(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runner")
    p.add_argument("--out", required=True, help="JSON file to write (rewritten after each case)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after a crash (bench.run does this)",
    )
    p.add_argument("--link", default="loopback")
    p.add_argument("--device", default="cpu", help="where the cases compute: cpu or cuda")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="seconds a peer may spend on one case before it stops repeating",
    )
    p.add_argument("--peers", default="local,tether,rpyc", type=lambda s: s.split(","))
    p.add_argument("--cases", default=",".join(CASE_KEYS), type=lambda s: s.split(","))
    p.add_argument("--floor", help="HOST:PORT of the raw floor server")
    p.add_argument("--rpyc", help="HOST:PORT of the RPyC classic server")
    p.add_argument(
        "--rpyc-startup",
        action="store_true",
        help="also time RPyC from a fresh server to a first result",
    )
    p.add_argument("--rpyc-stock", action="store_true", help="RPyC with Nagle on, as shipped")
    p.add_argument("--tether-url")
    p.add_argument("--tether-token-file")
    p.add_argument("--startup", choices=("embedded", "connect", "none"), default="embedded")
    args = p.parse_args(argv)
    sizes = cases.QUICK if args.quick else cases.FULL
    if args.reps:
        sizes = Sizes(**{**sizes.__dict__, "reps": args.reps})
    runner = Runner(args, sizes)

    def on_crash(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        runner.record_crash(exc)
        sys.__excepthook__(exc_type, exc, tb)
        os._exit(3)  # skip interpreter teardown: peers may be in any state

    sys.excepthook = on_crash
    runner.run_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
