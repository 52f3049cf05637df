"""Pool write throughput: many real clients placing and releasing over HTTP.

Starts a real pool (``python -m tether pool serve``) as a process, on SQLite and
then on PostgreSQL, registers a few nodes with many devices (so that capacity is
never what limits), and runs ``--clients`` concurrent clients -- threads spread
over ``--procs`` processes, each using the project's own
:class:`tether.pool.PoolClient` -- that loop *place a slice, release it* for
``--seconds``. Prints, per backend:

- placements per second (placements acknowledged to a client over wall time);
- p50 / p99 latency of a placement (``POST /v1/sessions``) and of a release
  (``DELETE /v1/sessions/ID``), as the client saw them;
- the CPU time per place+release cycle of the pool process and of the client
  processes (they share the machine: together they bound what it can do);
- the 1-minute load average at the end of the window (other jobs count);
- errors (anything but a placement or a release).

``--baseline PATH`` runs the same against another checkout (its ``src`` on
``PYTHONPATH``, for the pool and for its clients: each side runs its own
``PoolClient``), in the same run, and prints the ratios. PostgreSQL is the one at ``--pg`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each run gets a fresh schema,
dropped afterwards. A backend that cannot be had is skipped with the reason.

Usage::

    python bench/pool_write.py                           # 200 clients, 10 s, both backends
    python bench/pool_write.py --clients 1000 --seconds 20
    python bench/pool_write.py --baseline /path/to/older/checkout --backends sqlite
    python bench/pool_write.py --baseline /path/to/older/checkout --repeat 3
    python bench/pool_write.py --keep-alive     # bare http.client clients, one connection each
    python bench/pool_write.py --no-keep        # PoolClient opening a connection a request

Timings on a shared machine move from run to run: compare a baseline and the
subject from the same invocation only, and use ``--repeat`` (the two alternate,
and the runs of each are pooled).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import inspect
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# The checkout whose client a worker process runs (the baseline's, for its runs).
sys.path.insert(0, os.environ.get("POOL_WRITE_SRC") or str(ROOT / "src"))

from tether.poolapi._client import PoolClient  # noqa: E402

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
CLIENTS = {
    "pool": "PoolClient (kept connections)",
    "close": "PoolClient, a connection a request",
    "keep-alive": "bare http.client keep-alive clients",
}
NODES = 4
DEVICES_PER_NODE = 64
FRACTION = 0.25


@dataclass
class Figures:
    label: str
    backend: str
    placements: int
    releases: int
    errors: int
    seconds: float
    place_ms: list[float]
    release_ms: list[float]
    first_error: str
    server_cpu_s: float  # the pool process's CPU time over the window (user + system)
    client_cpu_s: float = 0.0  # the client processes' CPU time, all of their run
    db_cpu_s: float = 0.0  # every PostgreSQL server process's CPU time over the window
    load: float = 0.0  # 1-minute load average at the end of the window

    @property
    def rate(self) -> float:
        return self.placements / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_cycle(self) -> float:
        """Pool CPU per place+release: the figure a busy machine moves least."""
        return 1e3 * self.server_cpu_s / self.placements if self.placements else float("nan")

    @property
    def client_ms_per_cycle(self) -> float:
        return 1e3 * self.client_cpu_s / self.placements if self.placements else float("nan")

    @property
    def db_ms_per_cycle(self) -> float:
        return 1e3 * self.db_cpu_s / self.placements if self.placements else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User + system CPU seconds of every ``postgres`` process on this machine (its
    server's share of the work; whoever else uses that server counts too)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ------------------------------------------------------------------ the pool process


@contextlib.contextmanager
def pool_process(checkout: Path, db: str, workdir: Path) -> Iterator[tuple[str, str, int]]:
    """``tether pool serve`` from ``checkout`` on ``db``; yields (url, admin token, pid)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready, token_file, log = workdir / "ready", workdir / "admin-token", workdir / "pool.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout / "src")
    for key in ("TETHER_POOL", "TETHER_POOL_TOKEN", "TETHER_CONFIG"):
        env.pop(key, None)
    argv = [
        sys.executable, "-m", "tether", "pool", "serve",
        "--listen", "127.0.0.1:0", "--db", db,
        "--bootstrap-token-file", str(token_file), "--ready-file", str(ready),
        "--secret-file", str(workdir / "pool-secret"),
        "--lease-timeout", "600", "--node-timeout", "600",
    ]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the pool did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield ready.read_text().strip(), token_file.read_text().strip(), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def pg_schema(base: str) -> Iterator[str]:
    import psycopg

    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def prepare(url: str, admin_token: str) -> tuple[str, list[tuple[str, str]]]:
    """A team, a user token, and NODES registered nodes: (user token, [(node, reg)])."""
    admin = PoolClient(url, admin_token)
    admin.create_team("bench")
    admin.create_user("bench", teams=["bench"])
    user_token = admin.create_token(kind="user", user="bench")["token"]
    node_token = admin.create_token(kind="node")["token"]
    node = PoolClient(url, node_token)
    nodes = []
    for i in range(NODES):
        devices: list[Mapping[str, Any]] = [
            {"id": f"gpu{j}", "vendor": "nvidia", "model": "H100", "memory": "80GiB"}
            for j in range(DEVICES_PER_NODE)
        ]
        out = node.register_node(f"node{i}", f"tcp://10.0.0.{i}:7447", devices)
        nodes.append((f"node{i}", str(out.get("registration") or "")))
    return user_token, nodes


# ------------------------------------------------------------------ the clients


class KeepAliveClient:
    """Place and release over one persistent HTTP/1.1 connection per thread.

    Not the project's client: ``--keep-alive`` measures what the bare minimum of
    a client (``http.client``, no error mapping) would give (plain HTTP only).
    """

    def __init__(self, url: str, token: str) -> None:
        where = urlsplit(url)
        self._host, self._port = where.hostname or "127.0.0.1", where.port or 80
        self._token = token
        self._local = threading.local()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        headers = {"Authorization": f"Bearer {self._token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except Exception:
            conn.close()
            self._local.conn = None
            raise
        if resp.status >= 300:
            raise RuntimeError(f"HTTP {resp.status}: {payload[:200]!r}")
        return json.loads(payload)

    def request_slice(self, *, fraction: float, wait: bool) -> Any:
        return self._call("POST", "/v1/sessions", {"fraction": fraction, "wait": wait})

    def release(self, session_id: str) -> Any:
        return self._call("DELETE", f"/v1/sessions/{session_id}")


def worker_main(
    url: str, token: str, threads: int, start_at: float, seconds: float, connection: str
) -> None:
    """One client process: ``threads`` clients looping place+release; JSON to stdout.

    ``connection``: ``keep-alive`` (:class:`KeepAliveClient`), ``pool`` (one
    shared :class:`PoolClient`, keeping a connection a thread) or ``close`` (a
    PoolClient that keeps none: a connection a request)."""
    client: KeepAliveClient | PoolClient
    if connection == "keep-alive":
        client = KeepAliveClient(url, token)
    elif "max_idle" in inspect.signature(PoolClient).parameters:
        client = PoolClient(url, token, timeout=60, max_idle=threads if connection == "pool" else 0)
    else:  # a checkout from before kept connections: a connection a request
        client = PoolClient(url, token, timeout=60)
    lock = threading.Lock()
    out: dict[str, Any] = {"place": [], "release": [], "errors": 0, "first_error": ""}
    cpu0 = time.process_time()

    def loop() -> None:
        place: list[float] = []
        release: list[float] = []
        errors = 0
        first = ""
        end = start_at + seconds
        while time.time() < start_at:
            time.sleep(0.005)
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                session = client.request_slice(fraction=FRACTION, wait=False)
                t1 = time.perf_counter()
                place.append((t1 - t0) * 1e3)
                client.release(session["id"])
                release.append((time.perf_counter() - t1) * 1e3)
            except Exception as exc:  # counted, and the first one shown
                errors += 1
                first = first or f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        with lock:
            out["place"] += place
            out["release"] += release
            out["errors"] += errors
            out["first_error"] = out["first_error"] or first

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if isinstance(client, PoolClient) and hasattr(client, "close"):
        client.close()
    out["cpu_s"] = time.process_time() - cpu0
    json.dump(out, sys.stdout)


def connection_mode(args: argparse.Namespace) -> str:
    return "keep-alive" if args.keep_alive else "close" if args.no_keep else "pool"


def drive(
    url: str,
    admin_token: str,
    args: argparse.Namespace,
    label: str,
    backend: str,
    pid: int,
    checkout: Path,
) -> Figures:
    user_token, _nodes = prepare(url, admin_token)
    procs = max(1, min(args.procs, args.clients))
    per = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
    start_at = time.time() + 2.0 + 0.05 * args.clients / procs
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--_worker",
                url,
                user_token,
                str(n),
                repr(start_at),
                repr(args.seconds),
                connection_mode(args),
            ],
            stdout=subprocess.PIPE,
            env={
                **os.environ,
                "PYTHONPATH": str(checkout / "src"),
                "POOL_WRITE_SRC": str(checkout / "src"),
            },
        )
        for n in per
        if n
    ]
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = cpu_seconds(pid)
    db0 = postgres_cpu_seconds() if backend == "postgres" else 0.0
    results = []
    for child in children:
        stdout, _ = child.communicate(timeout=args.seconds + 300)
        results.append(json.loads(stdout))
    server_cpu = cpu_seconds(pid) - cpu0
    db_cpu = postgres_cpu_seconds() - db0 if backend == "postgres" else 0.0
    load = os.getloadavg()[0]
    elapsed = max(time.time() - start_at, args.seconds)  # the last cycles end after the window
    place = [x for r in results for x in r["place"]]
    release = [x for r in results for x in r["release"]]
    return Figures(
        label=label,
        backend=backend,
        placements=len(place),
        releases=len(release),
        errors=sum(r["errors"] for r in results),
        seconds=elapsed,
        place_ms=place,
        release_ms=release,
        first_error=next((r["first_error"] for r in results if r["first_error"]), ""),
        server_cpu_s=server_cpu,
        client_cpu_s=sum(r["cpu_s"] for r in results),
        db_cpu_s=db_cpu,
        load=load,
    )


def run_one(checkout: Path, label: str, backend: str, args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory(prefix="pool-write-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            db = (
                str(work / "pool.db")
                if backend == "sqlite"
                else stack.enter_context(pg_schema(args.pg))
            )
            url, admin, pid = stack.enter_context(pool_process(checkout, db, work / "pool"))
            return drive(url, admin, args, label, backend, pid, checkout)


def merged(runs: list[Figures]) -> Figures:
    """Several runs as one: counts and times added, latencies pooled."""
    first = runs[0]
    return Figures(
        label=f"{first.label} x{len(runs)}" if len(runs) > 1 else first.label,
        backend=first.backend,
        placements=sum(f.placements for f in runs),
        releases=sum(f.releases for f in runs),
        errors=sum(f.errors for f in runs),
        seconds=sum(f.seconds for f in runs),
        place_ms=[x for f in runs for x in f.place_ms],
        release_ms=[x for f in runs for x in f.release_ms],
        first_error=next((f.first_error for f in runs if f.first_error), ""),
        server_cpu_s=sum(f.server_cpu_s for f in runs),
        client_cpu_s=sum(f.client_cpu_s for f in runs),
        db_cpu_s=sum(f.db_cpu_s for f in runs),
        load=max(f.load for f in runs),
    )


def backend_reason(backend: str, pg: str) -> str | None:
    """None if ``backend`` can be had; else why not. A local PostgreSQL that is
    down is started once (``pg_ctlcluster``), as ``tests/pool`` do."""
    if backend == "sqlite":
        return None
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'tether[pool]')"

    def answers() -> str | None:
        try:
            with psycopg.connect(pg, connect_timeout=3):
                return None
        except Exception as exc:
            return str(exc).strip()

    reason = answers()
    if reason is not None and Path("/etc/postgresql").is_dir():
        for version in os.listdir("/etc/postgresql"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
        for _ in range(20):
            reason = answers()
            if reason is None:
                break
            time.sleep(0.5)
    return None if reason is None else f"PostgreSQL at {pg} unavailable: {reason}"


def report(f: Figures) -> str:
    return (
        f"{f.backend:<10} {f.label:<11} {f.rate:>8.0f} {pct(f.place_ms, 50):>8.1f} "
        f"{pct(f.place_ms, 99):>8.1f} {pct(f.release_ms, 50):>8.1f} {pct(f.release_ms, 99):>8.1f} "
        f"{f.cpu_ms_per_cycle:>8.2f} {f.client_ms_per_cycle:>8.2f} {f.db_ms_per_cycle:>7.2f} "
        f"{f.load:>5.1f} "
        f"{f.placements:>7} {f.errors:>6}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_worker":
        url, token, threads, start_at, seconds, connection = argv[1:7]
        worker_main(url, token, int(threads), float(start_at), float(seconds), connection)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg", default=os.environ.get("TETHER_TEST_PG", PG_DEFAULT))
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="bare http.client clients keeping one connection each, not PoolClient",
    )
    parser.add_argument(
        "--no-keep",
        action="store_true",
        help="PoolClient keeping no connection (one a request, as it was before keep-alive)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per checkout, alternated; then all pooled"
    )
    args = parser.parse_args(argv)

    print(
        f"pool_write: {args.clients} clients in {args.procs} processes, place+release for "
        f"{args.seconds:g} s; {NODES} nodes x {DEVICES_PER_NODE} devices, fraction {FRACTION}; "
        f"{CLIENTS[connection_mode(args)]}; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'backend':<10} {'checkout':<11} {'place/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rel p50':>8} {'rel p99':>8} {'cpu ms':>8} {'cli ms':>8} {'db ms':>7} {'load':>5} "
        f"{'placed':>7} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        reason = backend_reason(backend, args.pg)
        if reason is not None:
            print(f"{backend:<10} skipped: {reason}")
            continue
        bases: list[Figures] = []
        these: list[Figures] = []
        for _ in range(args.repeat):  # alternated, so both see the same load
            if args.baseline is not None:
                bases.append(run_one(args.baseline.resolve(), "baseline", backend, args))
                print(report(bases[-1]), flush=True)
            these.append(run_one(ROOT, "this", backend, args))
            print(report(these[-1]), flush=True)
        base = merged(bases) if bases else None
        this = merged(these)
        if args.repeat > 1:
            for f in (base, this):
                if f is not None:
                    print(report(f), flush=True)
        for f in (base, this):
            if f is not None and f.first_error:
                print(f"           {f.label} first error: {f.first_error[:200]}")
        if base is not None and base.rate:
            ratios.append(
                f"{backend}: {this.rate / base.rate:.2f}x placements/s, p99 "
                f"{pct(base.place_ms, 99):.0f} -> {pct(this.place_ms, 99):.0f} ms, pool CPU "
                f"per cycle {base.cpu_ms_per_cycle:.2f} -> {this.cpu_ms_per_cycle:.2f} ms"
            )
    print()
    print("place/s: placements acknowledged over the wall time of the window; p50/p99: one")
    print("POST /v1/sessions as a client saw it; rel: one DELETE /v1/sessions/ID; cpu ms: the")
    print("pool process's CPU time per place+release cycle (least moved by a busy machine);")
    print("cli ms: the client processes' CPU time per cycle; db ms: the PostgreSQL server's")
    print("(all its processes, 0 for SQLite, which runs in the pool); load: 1-minute load")
    print("average at the end of the window (a repeat shows the highest).")
    for line in ratios:
        print(f"this vs baseline, {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
