"""Per-session metering: what each worker actually used.

Theory of operation
-------------------
The acceptor starts a :class:`Meter` once and tells it about each worker it
spawns (:meth:`Meter.start`). On every tick (the acceptor's heartbeat loop, a
second or so apart) it calls :meth:`Meter.sample_all`; each session's sample
is read from the OS and the vendor library and folded into that session's pure
:class:`UsageAggregator`. :meth:`Meter.snapshot` gives the usage so far of
every live session for the pool heartbeat, and :meth:`Meter.stop` the final
record of one session when its worker ends.

What a sample holds, and where it comes from:

* host memory -- RSS of the worker and its descendants (``/proc/PID/status``
  ``VmRSS``, children from ``/proc/PID/task/*/children``); the high-water mark
  is the larger of the kernel's own peak for the worker (``VmHWM``, which a
  short spike between samples cannot escape) and the largest sampled tree sum;
* device memory -- NVML's per-process used memory on the session's GPU
  (``nvmlDeviceGetComputeRunningProcesses``), summed over the tree;
* device utilisation -- NVML's per-process SM utilisation
  (``nvmlDeviceGetProcessUtilization``) since the previous sample.

NVML reports host PIDs: an acceptor in a container must share the host's PID
namespace for the device figures to match its workers (else they read None).
The aggregator is pure: samples in, a :class:`SessionUsage` out; tests feed it
samples with chosen timestamps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Meter",
    "NvmlReader",
    "Sample",
    "SessionUsage",
    "UsageAggregator",
    "process_tree",
    "read_host_memory",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One reading of one session at monotonic time ``at`` (seconds).

    ``rss`` is the tree's resident memory and ``rss_peak`` the kernel's peak for
    the worker, both in bytes. Device fields are None where the vendor library
    does not report them.
    """

    at: float
    rss: int
    rss_peak: int = 0
    device_memory: int | None = None
    device_util: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUsage:
    """A session's usage so far: what the acceptor sends with its heartbeats.

    ``memory_hwm`` is host memory (RSS) and ``device_memory_hwm`` device memory,
    in bytes. ``*_byte_seconds`` integrate the sampled memory over time (for
    GiB-seconds accounting). ``device_util_mean`` is time-weighted, in percent.
    ``*_now`` are the last sample's figures (what ``tether top`` shows); None
    before the first sample or where the device does not report them.
    """

    wall_seconds: float
    memory_hwm: int
    memory_byte_seconds: float
    device_memory_hwm: int | None
    device_memory_byte_seconds: float | None
    device_util_mean: float | None
    device_util_max: float | None
    samples: int
    memory_now: int | None = None
    device_memory_now: int | None = None
    device_util_now: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class UsageAggregator:
    """Folds samples into a :class:`SessionUsage`. Pure: no clock, no I/O.

    Each sample stands for the interval since the previous one (or since
    ``started_at`` for the first): memory is integrated and utilisation
    averaged over those intervals. Samples older than the last one are ignored.
    """

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._last_at = started_at
        self._samples = 0
        self._mem_hwm = 0
        self._mem_integral = 0.0
        self._dev_hwm: int | None = None
        self._dev_integral: float | None = None
        self._util_weighted = 0.0
        self._util_time = 0.0
        self._util_max: float | None = None
        self._last: Sample | None = None

    def add(self, sample: Sample) -> None:
        if sample.at < self._last_at:
            return
        span = sample.at - self._last_at
        self._last_at = sample.at
        self._last = sample
        self._samples += 1
        self._mem_hwm = max(self._mem_hwm, sample.rss, sample.rss_peak)
        self._mem_integral += sample.rss * span
        if sample.device_memory is not None:
            self._dev_hwm = max(self._dev_hwm or 0, sample.device_memory)
            self._dev_integral = (self._dev_integral or 0.0) + sample.device_memory * span
        if sample.device_util is not None:
            util = min(100.0, max(0.0, sample.device_util))
            self._util_weighted += util * span
            self._util_time += span
            self._util_max = util if self._util_max is None else max(self._util_max, util)

    def usage(self, now: float) -> SessionUsage:
        """Usage from ``started_at`` to ``now`` (wall time never goes negative)."""
        mean: float | None = None
        if self._util_max is not None:
            mean = self._util_weighted / self._util_time if self._util_time > 0 else self._util_max
        return SessionUsage(
            wall_seconds=max(0.0, now - self.started_at),
            memory_hwm=self._mem_hwm,
            memory_byte_seconds=self._mem_integral,
            device_memory_hwm=self._dev_hwm,
            device_memory_byte_seconds=self._dev_integral,
            device_util_mean=mean,
            device_util_max=self._util_max,
            samples=self._samples,
            memory_now=last.rss if (last := self._last) is not None else None,
            device_memory_now=last.device_memory if last is not None else None,
            device_util_now=(
                min(100.0, max(0.0, last.device_util))
                if last is not None and last.device_util is not None
                else None
            ),
        )


# ------------------------------------------------------------------- host (/proc)


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (empty if ``pid`` is gone)."""
    if not Path(f"/proc/{pid}").exists():
        return []
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in children.read_text().split())
    return seen


def read_host_memory(pid: int) -> tuple[int, int] | None:
    """``(tree RSS, worker VmHWM)`` in bytes, or None if the worker is gone.

    A descendant that exits mid-read is skipped, not an error.
    """
    try:
        own = _status(pid)
    except OSError:  # FileNotFoundError, ProcessLookupError: it has exited
        return None
    if "VmRSS" not in own:
        return None  # a zombie, waiting for the acceptor to reap it
    rss = own["VmRSS"]
    for child in process_tree(pid)[1:]:
        with contextlib.suppress(OSError):
            rss += _status(child).get("VmRSS", 0)
    return rss, own.get("VmHWM", 0)


# ------------------------------------------------------------------------- NVML


class NvmlReader:
    """Per-process device memory and utilisation from NVML.

    :meth:`open` returns None (and sets :attr:`why_not`) when NVML cannot be
    started, so callers meter host memory alone. Not thread-safe: the
    :class:`Meter` serialises its use.
    """

    why_not: str = ""

    def __init__(self, pynvml: Any) -> None:
        self._nvml = pynvml
        self._handles: dict[str, Any] = {}
        self._last_seen: dict[str, int] = {}

    @classmethod
    def open(cls) -> NvmlReader | None:
        try:
            import pynvml
        except ImportError:
            cls.why_not = "nvidia-ml-py is not installed"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            cls.why_not = f"NVML unavailable: {exc}"
            return None
        return cls(pynvml)

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def _handle(self, uuid: str) -> Any:
        if uuid not in self._handles:
            self._handles[uuid] = self._nvml.nvmlDeviceGetHandleByUUID(uuid)
        return self._handles[uuid]

    def device_memory(self, uuid: str, pids: Iterable[int]) -> int | None:
        """Bytes the given processes hold on the device, None if not reported."""
        wanted = set(pids)
        try:
            handle = self._handle(uuid)
            procs = list(self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        except self._nvml.NVMLError:
            return None
        total = 0
        for proc in procs:
            if proc.pid in wanted:
                used = getattr(proc, "usedGpuMemory", None)
                if used is None:  # NVML withholds it (no permission, some MIG setups)
                    return None
                total += int(used)
        return total

    def utilisation(self, uuid: str, pids: Iterable[int]) -> float | None:
        """SM utilisation (percent) of the processes since the last call."""
        wanted = set(pids)
        try:
            handle = self._handle(uuid)
            since = self._last_seen.get(uuid, 0)
            samples = self._nvml.nvmlDeviceGetProcessUtilization(handle, since)
        except self._nvml.NVMLError_NotFound:
            return 0.0  # no samples since the last call: the process was idle
        except self._nvml.NVMLError:
            return None
        per_pid: dict[int, float] = {}
        for s in samples:
            self._last_seen[uuid] = max(self._last_seen.get(uuid, 0), int(s.timeStamp))
            if s.pid in wanted:
                per_pid[s.pid] = max(per_pid.get(s.pid, 0.0), float(s.smUtil))
        return min(100.0, sum(per_pid.values()))


# ------------------------------------------------------------------------ Meter


@dataclass(slots=True)
class _Session:
    pid: int
    device_id: str
    gpu_uuid: str | None
    aggregator: UsageAggregator
    alive: bool = True


class Meter:
    """Meters every live session of an acceptor. Thread-safe.

    ``nvml`` is an open :class:`NvmlReader` or None (host memory only); by
    default one is opened if NVML is available. ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        *,
        nvml: NvmlReader | bool | None = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = NvmlReader.open() if nvml is True else (nvml or None)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    @property
    def device_metering(self) -> str:
        """ "NVML" when device figures are read, else why not."""
        return "NVML" if self._nvml is not None else (NvmlReader.why_not or "disabled")

    def start(self, session_id: str, pid: int, *, device_id: str = "cpu:0") -> None:
        """Begin metering ``pid`` (the session's worker) now.

        ``device_id`` is the slice's device; ``nvidia:<uuid>`` devices get device
        memory and utilisation. Raises ValueError if the session is known.
        """
        uuid = device_id.removeprefix("nvidia:") if device_id.startswith("nvidia:") else None
        with self._lock:
            if session_id in self._sessions:
                raise ValueError(f"session {session_id!r} is already metered")
            self._sessions[session_id] = _Session(
                pid, device_id, uuid, UsageAggregator(self._clock())
            )

    def sample(self, session_id: str) -> Sample | None:
        """Take one sample of a session; None if its worker is gone."""
        with self._lock:
            return self._sample(self._sessions[session_id])

    def sample_all(self) -> None:
        """Take one sample of every live session (the acceptor's tick)."""
        with self._lock:
            for session in self._sessions.values():
                self._sample(session)

    def snapshot(self) -> dict[str, SessionUsage]:
        """Usage so far of every metered session, for the pool heartbeat."""
        now = self._clock()
        with self._lock:
            return {sid: s.aggregator.usage(now) for sid, s in self._sessions.items()}

    def devices(self) -> dict[str, str]:
        """The device of every metered session (``{session: device id}``)."""
        with self._lock:
            return {sid: s.device_id for sid, s in self._sessions.items()}

    def stop(self, session_id: str) -> SessionUsage:
        """A last sample if the worker is still there, then its final usage.

        Wall time is counted up to now: the session held its slice until the
        acceptor let it go. Raises KeyError for an unknown session.
        """
        with self._lock:
            session = self._sessions.pop(session_id)
            self._sample(session)
            return session.aggregator.usage(self._clock())

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def _sample(self, session: _Session) -> Sample | None:
        if not session.alive:
            return None
        host = read_host_memory(session.pid)
        if host is None:
            session.alive = False
            return None
        rss, peak = host
        dev_mem = util = None
        if self._nvml is not None and session.gpu_uuid is not None:
            pids = process_tree(session.pid)
            dev_mem = self._nvml.device_memory(session.gpu_uuid, pids)
            util = self._nvml.utilisation(session.gpu_uuid, pids)
        sample = Sample(
            at=self._clock(), rss=rss, rss_peak=peak, device_memory=dev_mem, device_util=util
        )
        session.aggregator.add(sample)
        return sample
