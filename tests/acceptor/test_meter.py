"""Metering: the pure aggregator with chosen timestamps, the sampler on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from tether.acceptor._meter import (
    Meter,
    NvmlReader,
    Sample,
    UsageAggregator,
    process_tree,
    read_host_memory,
)

MiB = 1 << 20

# ------------------------------------------------------------------- aggregator


def test_aggregator_wall_time_high_water_and_integrals() -> None:
    agg = UsageAggregator(started_at=100.0)
    agg.add(Sample(at=101.0, rss=10 * MiB, rss_peak=12 * MiB))
    agg.add(Sample(at=103.0, rss=50 * MiB, rss_peak=50 * MiB, device_memory=2 * MiB))
    agg.add(Sample(at=104.0, rss=20 * MiB, rss_peak=60 * MiB, device_memory=1 * MiB))
    usage = agg.usage(now=110.0)
    assert usage.wall_seconds == 10.0
    assert usage.memory_hwm == 60 * MiB  # the kernel's peak beats the sampled RSS
    assert usage.memory_byte_seconds == 10 * MiB * 1 + 50 * MiB * 2 + 20 * MiB * 1
    assert usage.device_memory_hwm == 2 * MiB
    assert usage.device_memory_byte_seconds == 2 * MiB * 2 + 1 * MiB * 1
    assert usage.samples == 3
    assert usage.device_util_mean is None and usage.device_util_max is None


def test_aggregator_reports_the_last_sample_as_now() -> None:
    agg = UsageAggregator(started_at=0.0)
    before = agg.usage(now=1.0)
    assert (before.memory_now, before.device_memory_now, before.device_util_now) == (None,) * 3
    agg.add(Sample(at=1.0, rss=30 * MiB, device_memory=8 * MiB, device_util=250.0))
    agg.add(Sample(at=2.0, rss=20 * MiB, device_memory=None, device_util=None))
    agg.add(Sample(at=1.5, rss=99 * MiB))  # older than the last: ignored
    usage = agg.usage(now=3.0)
    assert usage.memory_now == 20 * MiB and usage.memory_hwm == 30 * MiB
    assert usage.device_memory_now is None  # the device stopped reporting
    assert usage.device_util_max == 100.0  # clamped
    agg.add(Sample(at=3.0, rss=1 * MiB, device_memory=4 * MiB, device_util=-5.0))
    assert agg.usage(now=3.0).device_util_now == 0.0
    assert agg.usage(now=3.0).device_memory_now == 4 * MiB


def test_aggregator_time_weights_utilisation_and_clamps_it() -> None:
    agg = UsageAggregator(started_at=0.0)
    agg.add(Sample(at=1.0, rss=1, device_util=100.0))
    agg.add(Sample(at=4.0, rss=1, device_util=0.0))
    agg.add(Sample(at=5.0, rss=1, device_util=250.0))  # clamped to 100
    usage = agg.usage(now=5.0)
    assert usage.device_util_mean == pytest.approx((100 * 1 + 0 * 3 + 100 * 1) / 5)
    assert usage.device_util_max == 100.0


def test_aggregator_ignores_samples_from_the_past_and_never_goes_negative() -> None:
    agg = UsageAggregator(started_at=10.0)
    agg.add(Sample(at=12.0, rss=5))
    agg.add(Sample(at=11.0, rss=500))
    usage = agg.usage(now=9.0)
    assert usage.samples == 1 and usage.memory_hwm == 5
    assert usage.wall_seconds == 0.0
    assert set(usage.to_dict()) >= {"wall_seconds", "memory_hwm", "device_memory_hwm"}


def test_empty_session_has_zero_usage() -> None:
    usage = UsageAggregator(started_at=0.0).usage(now=2.5)
    assert (usage.samples, usage.memory_hwm, usage.device_memory_hwm) == (0, 0, None)
    assert usage.wall_seconds == 2.5


# --------------------------------------------------------------- real processes

HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    block = bytearray({size})          # touched: bytearray zero-fills
    child = None
    if {spawn}:
        code = "import sys; b = bytearray({size}); sys.stdin.read()"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    print(child.pid if child else 0, flush=True)
    sys.stdin.readline()               # wait for the test to sample
    if child:
        child.stdin.close(); child.wait()
    """
)


def _holder(size: int, spawn: bool) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(size=size, spawn=spawn)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    child = int(line)
    if child:  # wait until the grandchild has allocated too (bounded: never hang)
        deadline = time.monotonic() + 60
        while (read_host_memory(child) or (0, 0))[0] < size:
            assert time.monotonic() < deadline, "the grandchild never allocated"
            time.sleep(0.01)
    return proc, child


def _finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()


def test_host_memory_of_a_real_process_tree() -> None:
    size = 64 * MiB
    proc, child = _holder(size, spawn=True)
    try:
        assert process_tree(proc.pid) == [proc.pid, child]
        rss, peak = read_host_memory(proc.pid) or (0, 0)
        assert rss >= 2 * size  # the worker and its child
        assert peak >= size
    finally:
        _finish(proc)
    assert read_host_memory(proc.pid) is None
    assert process_tree(proc.pid) == []


def test_meter_follows_a_session_from_start_to_stop() -> None:
    size = 96 * MiB
    meter = Meter(nvml=False)
    assert meter.device_metering == "disabled"
    proc, _ = _holder(size, spawn=False)
    try:
        meter.start("s1", proc.pid)
        with pytest.raises(ValueError, match="already metered"):
            meter.start("s1", proc.pid)
        first = meter.sample("s1")
        assert first is not None and first.rss >= size and first.device_memory is None
        meter.sample_all()
        live = meter.snapshot()["s1"]
        assert live.samples == 2 and live.memory_hwm >= size
    finally:
        _finish(proc)
    assert meter.sample("s1") is None  # the worker is gone; metering stops quietly
    usage = meter.stop("s1")
    assert usage.samples == 2 and usage.memory_hwm >= size and usage.wall_seconds >= 0
    assert meter.snapshot() == {}
    with pytest.raises(KeyError):
        meter.stop("s1")
    meter.close()


def test_meter_with_nvml_reports_why_device_figures_are_missing() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    reader = NvmlReader.open()
    if reader is not None:  # a GPU host: device figures are read for GPU sessions
        reader.close()
        pytest.skip("NVML works here; the no-driver path cannot be exercised")
    meter = Meter()
    assert "NVML unavailable" in meter.device_metering
    meter.start("gpu", os.getpid(), device_id="nvidia:GPU-0000")
    sample = meter.sample("gpu")
    assert sample is not None and sample.device_memory is None and sample.device_util is None
    meter.stop("gpu")
    meter.close()
