"""The emulated datacenter link: two network namespaces, a veth pair, ``tbf`` and a delay relay.

Topology (everything lives in namespaces this module creates and deletes)::

    namespace A (client)                namespace B (servers)
    10.213.7.1/30  --- veth, tbf 10 Gbit ---  10.213.7.2/30 : relay ports
                                               relay --(+delay each way)--> 127.0.0.1:server

The kernel here has no ``netem`` qdisc, so the delay is made in user space: the relay
forwards every chunk it reads after a fixed delay, in both directions (``--delay-us`` per
direction, 50 us by default for a ~100 us round trip on top of the relay's own hop). The
rate cap is ``tc qdisc ... tbf`` on both veth ends. The /30 exists only inside the two
namespaces, so no packet can leave the machine.

``EmulatedLink`` is a context manager that builds all of it and always tears it down, also
when setup fails half-way; :class:`LinkUnavailable` says why a link cannot be built (not
root, no ``ip``/``tc``, namespaces refused), so the caller can skip that column.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SUBNET_A = "10.213.7.1"
SUBNET_B = "10.213.7.2"
PREFIX = 30
RATE = "10gbit"
DELAY_US = 50
_CHUNK = 256 * 1024
_SPIN_LIMIT = 0.001  # seconds: shorter waits are spun, not slept
_INFLIGHT_CHUNKS = 256  # backpressure: at most this many chunks held by the relay per direction


class LinkUnavailable(RuntimeError):
    """The emulated link cannot be built here; the message says why and what to do."""


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise LinkUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout}")


def check_prerequisites() -> None:
    """Raise :class:`LinkUnavailable` unless this process can build namespaces."""
    if sys.platform != "linux":
        raise LinkUnavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise LinkUnavailable("building network namespaces needs root (run the suite as root)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise LinkUnavailable(f"`{tool}` is not installed (package iproute2)")


@dataclass
class EmulatedLink:
    """Namespaces ``ns_client``/``ns_server`` joined by a rate-capped veth pair.

    Use as a context manager. ``exec_prefix(ns)`` gives the argv prefix that runs a command
    inside a namespace. ``notes`` collects what could not be emulated exactly (e.g. a
    kernel without ``tbf``), for the report.
    """

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")
    rate: str = RATE
    notes: list[str] = field(default_factory=list)

    @property
    def ns_client(self) -> str:
        return f"tbench{self.tag}a"

    @property
    def ns_server(self) -> str:
        return f"tbench{self.tag}b"

    @property
    def server_address(self) -> str:
        return SUBNET_B

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def __enter__(self) -> EmulatedLink:
        check_prerequisites()
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def _setup(self) -> None:
        a, b = self.ns_client, self.ns_server
        va, vb = f"tbv{self.tag}a", f"tbv{self.tag}b"  # at most 15 characters
        # Namespaces named after this pid can only be left over by a killed run whose pid
        # has been reused: nothing else can be using them.
        self.teardown()
        _run(["ip", "netns", "add", a])
        _run(["ip", "netns", "add", b])
        _run(["ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b])
        for ns, dev, addr in ((a, va, SUBNET_A), (b, vb, SUBNET_B)):
            _run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
            try:
                # burst must hold a GSO super-packet (64 KiB) and more: 4 MiB at 10 Gbit is
                # ~3 ms of line rate, the usual setting for a host-level cap.
                _run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        self.rate,
                        "burst",
                        "4mb",
                        "latency",
                        "10ms",
                    ]
                )
            except LinkUnavailable as exc:
                self.notes.append(f"no rate cap on {dev}: {exc}")

    def teardown(self) -> None:
        """Delete both namespaces (their veth ends go with them); safe to call twice."""
        for ns in (self.ns_client, self.ns_server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


# -- the delay relay ----------------------------------------------------------------------


def _tight_timer_slack() -> None:
    """Ask for 1 ns timer slack in this thread: the 50 us default would double a 50 us sleep."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy ``src`` to ``dst``, each chunk leaving ``delay`` seconds after it arrived."""
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
    room = threading.Semaphore(_INFLIGHT_CHUNKS)

    def reader() -> None:
        try:
            while True:
                room.acquire()
                data = src.recv(_CHUNK)
                chunks.put((time.perf_counter() + delay, data))
                if not data:
                    return
        except OSError:
            chunks.put((0.0, b""))

    threading.Thread(target=reader, daemon=True).start()
    _tight_timer_slack()
    # On a VM a 50 us sleep ends 50-150 us late (the vCPU idles and must be woken), which
    # would more than double the emulated delay. Waits this short are spun instead; with
    # the short GIL switch interval set in relay() the spinning thread still lets the
    # other direction through.
    now = time.perf_counter
    try:
        while True:
            deadline, data = chunks.get()
            wait = deadline - now()
            if wait > _SPIN_LIMIT:
                time.sleep(wait - _SPIN_LIMIT)
            while now() < deadline:
                pass
            room.release()
            if not data:
                dst.shutdown(socket.SHUT_WR)
                return
            dst.sendall(data)
    except OSError:
        return


def _relay_connection(client: socket.socket, backend: tuple[str, int], delay: float) -> None:
    try:
        server = socket.create_connection(backend, timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(server, client, delay), daemon=True)
    back.start()
    _pump(client, server, delay)
    back.join()
    client.close()
    server.close()


def relay(
    routes: Sequence[tuple[tuple[str, int], tuple[str, int]]], delay: float, ready_file: Path | None
) -> None:
    """Forward each ``listen -> backend`` route with ``delay`` seconds each way, forever."""
    sys.setswitchinterval(1e-5)  # a spinning pump must not hold the GIL for 5 ms
    listeners = []
    for listen, backend in routes:
        sock = socket.create_server(listen)
        listeners.append((sock, backend))
    for sock, backend in listeners:

        def accept_loop(sock: socket.socket = sock, backend: tuple[str, int] = backend) -> None:
            while True:
                conn, _ = sock.accept()
                threading.Thread(
                    target=_relay_connection, args=(conn, backend, delay), daemon=True
                ).start()

        threading.Thread(target=accept_loop, daemon=True).start()
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text("ready\n")
        tmp.replace(ready_file)
    threading.Event().wait()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netem")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay", help="run the delay relay (inside the server namespace)")
    r.add_argument(
        "--route",
        action="append",
        required=True,
        help="LISTEN_HOST:PORT=BACKEND_HOST:PORT (repeatable)",
    )
    r.add_argument("--delay-us", type=float, default=DELAY_US, help="delay per direction")
    r.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    routes = []
    for spec in args.route:
        listen, _, backend = spec.partition("=")
        routes.append((_address(listen), _address(backend)))
    relay(routes, args.delay_us / 1e6, args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
