"""The acceptor's ``/metrics``: Prometheus text format on an opt-in HTTP port.

``tether serve --metrics-listen HOST:PORT`` serves it. What it reports:

* sessions open now, started and ended since the acceptor started;
* connections refused before a session began, by the code the client was told
  (``auth``, ``protocol``, ``version``, ``worker``);
* per live session, on its device: the worker's memory now and its peak, the
  device memory it holds and its compute utilisation where the device reports
  them (:mod:`tether.acceptor._meter`), and the bytes it moved
  and the CALL frames it served (:mod:`tether.acceptor._traffic`); per device,
  the sums over its sessions;
* bytes moved by sessions that ended (so ``rate()`` over the node is right).

Figures are sampled at scrape time, so a scrape is as fresh as it can be.
Calls are counted by each worker in memory it shares with the acceptor
(:mod:`tether.acceptor._traffic`): a session's frames go from its client to its
worker without passing the acceptor.

Access: a loopback address needs nothing; any other address needs a bearer
token (``--metrics-token-file``) or an explicit ``--metrics-public``. Session
ids are lease ids, which open nothing by themselves (tickets do).

The HTTP server is deliberately tiny: one GET per connection, a bounded head,
a deadline on each read, and nothing but ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tether._prometheus import TextWriter
from tether.acceptor._meter import Meter

if TYPE_CHECKING:
    from tether.acceptor._server import Acceptor

__all__ = [
    "CONTENT_TYPE",
    "AcceptorMetrics",
    "MeteringObserver",
    "check_exposure",
    "serve_metrics",
    "start_metrics",
]

log = logging.getLogger("tether.acceptor.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Longest request head read from a scraper.
MAX_HEAD = 8192
#: Seconds a scraper has to send its request.
READ_TIMEOUT_S = 5.0


class MeteringObserver:
    """Meters each session of an acceptor that has no pool agent to do it."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def session_started(self, session: str, pid: int, env: Mapping[str, str]) -> None:
        from tether.acceptor._limits import SliceLimits

        limits = SliceLimits.from_env(dict(env))
        device = limits.device_id if limits is not None else "cpu:0"
        self.meter.start(session, pid, device_id=device)

    def session_ended(self, session: str) -> None:
        with contextlib.suppress(KeyError):
            self.meter.stop(session)


class AcceptorMetrics:
    """Renders one acceptor's figures. ``meter`` is the one its sessions are
    metered in (the pool agent's, or a :class:`MeteringObserver`'s)."""

    def __init__(self, acceptor: Acceptor, meter: Meter, *, clock: Callable[[], float] = time.time):
        self.acceptor = acceptor
        self.meter = meter
        self._clock = clock

    def render(self) -> str:
        """The text for one scrape. Call it off the event loop: it reads /proc
        and the vendor library (the acceptor's own tables are copied first)."""
        a = self.acceptor
        records = dict(a.sessions)
        dropped = dict(a.dropped)
        self.meter.sample_all()
        usage = self.meter.snapshot()
        devices = self.meter.devices()
        figures = a.traffic.snapshot()
        traffic, calls = figures.sessions, figures.calls
        w = TextWriter()
        w.family(
            "tether_acceptor_sessions_open",
            "gauge",
            "Sessions whose worker runs.",
            [({}, sum(1 for r in records.values() if r.pid))],
        )
        w.family(
            "tether_acceptor_sessions_started_total",
            "counter",
            "Sessions whose worker started.",
            [({}, a.sessions_started)],
        )
        w.family(
            "tether_acceptor_sessions_ended_total",
            "counter",
            "Sessions whose worker ended.",
            [({}, a.sessions_ended)],
        )
        w.family(
            "tether_acceptor_connections_dropped_total",
            "counter",
            "Connections refused before a session began, by the code the client was told.",
            (({"reason": k}, v) for k, v in sorted(dropped.items())),
        )
        w.family(
            "tether_acceptor_session_start_time_seconds",
            "gauge",
            "When each open session's worker started (unix time).",
            (({"session": s}, r.started) for s, r in sorted(records.items()) if r.pid),
        )

        def per_session(field: str, scale: float = 1.0) -> list[tuple[dict[str, str], float]]:
            out = []
            for sid, u in sorted(usage.items()):
                value = getattr(u, field)
                if value is not None:
                    out.append(({"session": sid, "device": devices.get(sid, "")}, value * scale))
            return out

        w.family(
            "tether_acceptor_session_memory_bytes",
            "gauge",
            "Host memory (RSS) of each session's worker and its children, at the last sample.",
            per_session("memory_now"),
        )
        w.family(
            "tether_acceptor_session_memory_peak_bytes",
            "gauge",
            "Peak host memory of each session's worker.",
            per_session("memory_hwm"),
        )
        w.family(
            "tether_acceptor_session_device_memory_bytes",
            "gauge",
            "Device memory each session's worker holds, where the device reports it.",
            per_session("device_memory_now"),
        )
        w.family(
            "tether_acceptor_session_device_utilisation_ratio",
            "gauge",
            "Compute utilisation of the device by each session (0-1), where reported.",
            per_session("device_util_now", 0.01),
        )
        w.family(
            "tether_acceptor_session_memory_byte_seconds_total",
            "counter",
            "Host memory of each session integrated over time.",
            per_session("memory_byte_seconds"),
        )

        by_device: dict[str, list[float]] = {}
        for sid, u in usage.items():
            dev = devices.get(sid, "")
            row = by_device.setdefault(dev, [0.0, 0.0, 0.0, 0.0])
            row[0] += u.memory_now or 0
            row[1] += u.device_memory_now or 0
            row[2] += (u.device_util_now or 0.0) / 100.0
            row[3] += 1
        w.family(
            "tether_acceptor_device_sessions",
            "gauge",
            "Open metered sessions on each device.",
            (({"device": d}, r[3]) for d, r in sorted(by_device.items())),
        )
        w.family(
            "tether_acceptor_device_worker_memory_bytes",
            "gauge",
            "Host memory of the workers of each device's sessions.",
            (({"device": d}, r[0]) for d, r in sorted(by_device.items())),
        )
        w.family(
            "tether_acceptor_device_memory_used_bytes",
            "gauge",
            "Device memory held by the workers of each device's sessions, where reported.",
            (({"device": d}, r[1]) for d, r in sorted(by_device.items())),
        )
        w.family(
            "tether_acceptor_device_utilisation_ratio",
            "gauge",
            "Compute utilisation of each device by its sessions (0-1), where reported.",
            (({"device": d}, min(1.0, r[2])) for d, r in sorted(by_device.items())),
        )

        w.family(
            "tether_acceptor_session_sent_bytes_total",
            "counter",
            "Bytes each open session sent its client (acknowledged).",
            (({"session": s}, t[0]) for s, t in sorted(traffic.items())),
        )
        w.family(
            "tether_acceptor_session_received_bytes_total",
            "counter",
            "Bytes each open session received from its client.",
            (({"session": s}, t[1]) for s, t in sorted(traffic.items())),
        )
        w.family(
            "tether_acceptor_session_call_frames_total",
            "counter",
            "CALL frames each open session's worker served (a batch of pipelined calls is one).",
            (({"session": s}, n) for s, n in sorted(calls.items())),
        )
        w.family(
            "tether_acceptor_call_frames_total",
            "counter",
            "CALL frames all sessions' workers served, ended ones included.",
            [({}, figures.total_calls)],
        )
        w.family(
            "tether_acceptor_sent_bytes_total",
            "counter",
            "Bytes all sessions sent their clients, ended ones included.",
            [({}, figures.sent)],
        )
        w.family(
            "tether_acceptor_received_bytes_total",
            "counter",
            "Bytes all sessions received from their clients, ended ones included.",
            [({}, figures.received)],
        )
        w.family(
            "tether_acceptor_device_metering_info",
            "gauge",
            "How device figures are read (NVML) or why they are not.",
            [({"source": self.meter.device_metering}, 1)],
        )
        return "\n".join(w.lines) + "\n"


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, public: bool) -> str | None:
    """Why serving metrics on ``host`` this way is refused, or None if it is fine."""
    if token is None and not public and not _is_loopback(host):
        return (
            f"--metrics-listen {host} is not loopback: give --metrics-token-file PATH "
            "(scrapers send it as a bearer token) or --metrics-public"
        )
    return None


async def serve_metrics(
    metrics: AcceptorMetrics,
    host: str,
    port: int,
    *,
    token: str | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until cancelled (``port`` 0 picks one)."""
    server = await start_metrics(metrics, host, port, token=token, ready=ready)
    async with server:
        await server.serve_forever()


async def start_metrics(
    metrics: AcceptorMetrics,
    host: str,
    port: int,
    *,
    token: str | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> asyncio.Server:
    """The listening ``/metrics`` server (not yet serving); OSError if it cannot bind."""
    expected = f"Bearer {token}".encode() if token is not None else None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, body, ctype = 400, b"bad request\n", "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            lines = head.decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            auth = b""
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "authorization":
                    auth = value.strip().encode("latin-1")
            if expected is not None and not hmac.compare_digest(auth, expected):
                status, body = 401, b"unauthorized: send Authorization: Bearer <metrics token>\n"
            elif method not in ("GET", "HEAD") or path != "/metrics":
                status, body = 404, b"not found: only GET /metrics is served here\n"
            else:
                text = await asyncio.to_thread(metrics.render)
                status, body, ctype = 200, text.encode(), CONTENT_TYPE
                if method == "HEAD":
                    body = b""
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:
            log.exception("metrics scrape failed")
            status, body = 500, b"internal error\n"
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
            status, "Internal Server Error"
        )
        head_out = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(head_out + body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)

    server = await asyncio.start_server(handle, host, port, limit=MAX_HEAD)
    bound = server.sockets[0].getsockname()
    log.info("metrics on http://%s:%d/metrics", host, bound[1])
    if ready is not None:
        ready(host, int(bound[1]))
    return server
