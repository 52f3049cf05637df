"""Slice enforcement, in real worker-like subprocesses.

Each child applies a slice with :func:`apply_slice` (taken from ``TETHER_SLICE``,
as a worker does), then allocates past it and prints what it caught as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tether.acceptor import _enforce, _limits
from tether.acceptor._devices import Device
from tether.acceptor._limits import SLICE_ENV, SliceError, SliceLimits

SRC = str(Path(_limits.__file__).resolve().parents[2])
MiB = 1 << 20

# Prologue of every child: apply the slice from the environment, as a worker does.
PROLOGUE = """
import json, sys
from tether.acceptor._limits import SliceLimits
from tether.acceptor._enforce import apply_slice
enforcement = apply_slice(SliceLimits.from_env())
report = {"rlimit": enforcement.rlimit, "memory": enforcement.memory}
def done():
    print(json.dumps(report), flush=True)
"""


def _env(slice: SliceLimits | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != SLICE_ENV}
    env["PYTHONPATH"] = SRC
    if slice is not None:
        env.update(slice.to_env())
    return env


def _start(body: str, slice: SliceLimits | None) -> subprocess.Popen[str]:
    code = (
        PROLOGUE
        if slice is not None
        else "import json\nreport = {}\ndef done():\n    print(json.dumps(report), flush=True)\n"
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(slice),
    )


def _run(body: str, slice: SliceLimits | None) -> dict[str, Any]:
    proc = _start(body, slice)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


CPU_SLICE = SliceLimits(memory_limit=64 * MiB)

# ------------------------------------------------------------------ the record


def test_slice_round_trips_through_one_environment_variable() -> None:
    device = Device(
        id="nvidia:GPU-1",
        vendor="nvidia",
        model="H100",
        index=3,
        pin="GPU-1",
        memory_total=80 << 30,
        memory_free=80 << 30,
    )
    slice = SliceLimits.for_device(device, memory_limit=8 << 30, compute_share=0.25, cpus=[2, 3])
    env = slice.to_env()
    assert list(env) == [SLICE_ENV]
    assert SliceLimits.from_env(env) == slice
    assert SliceLimits.from_env({}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"vendor": "tpu"}', "vendor"),
        ('{"vendor": "nvidia"}', "pin"),
        ('{"memory_limit": -1}', "positive"),
        ('{"memory_limit": 1.5}', "positive"),
        ('{"memory_limit": true}', "positive"),
        ('{"compute_share": "half"}', "compute_share must be a number"),
        ('{"compute_share": 0}', "compute_share"),
        ('{"compute_share": 1.5}', "compute_share"),
        ('{"cpus": 3}', "cpus"),
        ('{"cpus": [-1]}', "cpus"),
        ('{"colour": "red"}', "unknown field"),
    ],
)
def test_malformed_slices_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(SliceError, match=message):
        SliceLimits.from_json(text)


def test_visibility_per_vendor() -> None:
    nv = SliceLimits(vendor="nvidia", pins=("GPU-1",))
    assert _limits.visibility_env(nv) == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "GPU-1",
    }
    amd = _limits.visibility_env(SliceLimits(vendor="amd", pins=("2",)))
    assert amd == {"HIP_VISIBLE_DEVICES": "2", "CUDA_VISIBLE_DEVICES": None}
    intel = _limits.visibility_env(SliceLimits(vendor="intel", pins=("1",)))
    assert intel["ZE_AFFINITY_MASK"] == "1" and intel["CUDA_VISIBLE_DEVICES"] == "-1"
    cpu = _limits.visibility_env(SliceLimits())
    assert cpu == {"CUDA_VISIBLE_DEVICES": "-1", "HIP_VISIBLE_DEVICES": "-1"}


def test_small_pure_rules() -> None:
    assert _limits.mps_thread_percentage(0.25) == "25"
    assert _limits.mps_thread_percentage(0.001) == "1"
    assert _limits.mps_thread_percentage(1.0) == "100"
    assert _limits.kernel_counts_mmap_in_rlimit_data("6.18.44-fc")
    assert _limits.kernel_counts_mmap_in_rlimit_data("4.7.0")
    assert not _limits.kernel_counts_mmap_in_rlimit_data("4.4.0-210-generic")
    assert not _limits.kernel_counts_mmap_in_rlimit_data("weird")
    assert _limits.cpu_headroom(32) > _limits.cpu_headroom(2) > _limits.BASE_HEADROOM
    assert _limits.threads_for(SliceLimits(compute_share=0.5), 16) == 8
    assert _limits.threads_for(SliceLimits(cpus=(1, 2, 3)), 16) == 3
    assert _limits.threads_for(SliceLimits(), 16) == 16


# ------------------------------------------------------------------- CPU memory

NUMPY_OVER = """
import numpy as np
limit = enforcement.rlimit[1]
try:
    np.ones(limit, dtype=np.uint8)
except MemoryError as exc:  # numpy's _ArrayMemoryError, which calls itself MemoryError
    report["caught"] = [type(exc).__module__, type(exc).__name__, str(exc)]
within = np.ones(SliceLimits.from_env().memory_limit, dtype=np.uint8)
report["within"] = int(within.sum())
done()
sys.stdin.read()  # stay alive until the test says so: a session beside the others
"""


def test_numpy_over_the_cpu_limit_gets_memoryerror_and_neighbour_is_unaffected() -> None:
    limited = _start(NUMPY_OVER, CPU_SLICE)
    assert limited.stdout is not None and limited.stdin is not None
    report = json.loads(limited.stdout.readline())
    try:
        name, limit = report["rlimit"]
        assert name == "RLIMIT_DATA"
        module, cls, text = report["caught"]
        assert cls == "MemoryError" and module.startswith("numpy")
        assert "Unable to allocate" in text
        assert report["within"] == CPU_SLICE.memory_limit  # the slice itself is usable

        # A second session alongside, while the first is alive: its own larger
        # slice, and it allocates (and touches) more than the first one may.
        neighbour = _run(
            f"""
            import numpy as np
            a = np.ones({limit} + 64 * 2**20, dtype=np.uint8)
            report["sum"] = int(a.sum())
            done()
            """,
            SliceLimits(memory_limit=limit + 256 * MiB),
        )
        assert neighbour["sum"] == limit + 64 * MiB
    finally:
        limited.stdin.close()
        limited.wait(timeout=60)
        assert limited.stderr is not None
        err = limited.stderr.read()
        limited.stdout.close()
        limited.stderr.close()
    assert limited.returncode == 0, err


def test_python_objects_over_the_limit_get_memoryerror() -> None:
    report = _run(
        """
        try:
            b = bytearray(enforcement.rlimit[1])
        except MemoryError:
            report["caught"] = True
        report["after"] = len(bytearray(1 << 20))
        done()
        """,
        CPU_SLICE,
    )
    assert report == {**report, "caught": True, "after": 1 << 20}


def test_headroom_override_and_thread_variables() -> None:
    report = _run(
        """
        import os, resource
        report["data"] = resource.getrlimit(resource.RLIMIT_DATA)
        report["omp"] = os.environ["OMP_NUM_THREADS"]
        report["cuda"] = os.environ["CUDA_VISIBLE_DEVICES"]
        report["affinity"] = sorted(os.sched_getaffinity(0))
        done()
        """,
        SliceLimits(memory_limit=64 * MiB, headroom=100 * MiB, cpus=(0,)),
    )
    soft, hard = report["data"]
    assert soft == hard == report["rlimit"][1]
    assert 164 * MiB < soft < 164 * MiB + 64 * MiB  # + what the interpreter already held
    assert report["omp"] == "1" and report["cuda"] == "-1" and report["affinity"] == [0]


def test_a_second_different_slice_is_refused() -> None:
    report = _run(
        """
        from tether.acceptor._limits import SliceError
        again = apply_slice(SliceLimits.from_env())
        report["same"] = again is enforcement
        try:
            apply_slice(SliceLimits(memory_limit=1 << 40))
        except SliceError as exc:
            report["refused"] = str(exc)
        done()
        """,
        CPU_SLICE,
    )
    assert report["same"] and "different slice" in report["refused"]


# ------------------------------------------------------------------------- torch

TORCH_OVER = """
import torch
torch.set_num_threads(4)  # thread start-up must survive the limit
x = torch.randn(256, 256)
report["matmul"] = float((x @ x).sum()) == float((x @ x).sum())
try:
    torch.empty(enforcement.rlimit[1], dtype=torch.uint8)
except RuntimeError as exc:
    report["caught"] = [type(exc).__name__, str(exc)]
t = torch.ones(SliceLimits.from_env().memory_limit, dtype=torch.uint8)
report["within"] = int(t[-1]) * t.numel()  # t.sum() would upcast to int64: 8x the memory
done()
"""


@pytest.mark.torch
def test_torch_over_the_cpu_limit_gets_its_normal_error() -> None:
    pytest.importorskip("torch")
    report = _run(TORCH_OVER, CPU_SLICE)
    assert report["matmul"]
    cls, text = report["caught"]
    assert cls == "RuntimeError"
    assert "DefaultCPUAllocator: can't allocate memory" in text
    assert report["within"] == CPU_SLICE.memory_limit


@pytest.mark.torch
def test_torch_gpu_limit_is_queued_at_import_without_touching_the_device() -> None:
    pytest.importorskip("torch")
    slice = SliceLimits(
        device_ids=("nvidia:GPU-test",), vendor="nvidia", pins=("GPU-test",), memory_limit=1 << 30
    )
    report = _run(
        """
        import os
        from tether.acceptor._enforce import limit_torch
        assert "torch" not in sys.modules
        import torch
        report["state"] = limit_torch()
        report["initialised"] = torch.cuda.is_initialized()
        report["visible"] = os.environ["CUDA_VISIBLE_DEVICES"]
        report["order"] = os.environ["CUDA_DEVICE_ORDER"]
        report["loader_is_real"] = "tether" not in type(torch.__loader__).__module__
        report["hook_gone"] = not any(
            type(f).__module__ == "tether.acceptor._limits" for f in sys.meta_path
        )
        done()
        """,
        slice,
    )
    assert report["state"] == "queued"
    assert report["initialised"] is False
    assert report["visible"] == "GPU-test" and report["order"] == "PCI_BUS_ID"
    assert report["loader_is_real"] and report["hook_gone"]
    assert report["rlimit"] is None


@pytest.mark.torch
def test_torch_already_imported_is_limited_by_apply_slice_itself() -> None:
    pytest.importorskip("torch")
    slice = SliceLimits(vendor="amd", pins=("0",), memory_limit=1 << 30)
    env = _env(slice)
    code = textwrap.dedent(
        """
        import torch, json
        from tether.acceptor._limits import SliceLimits
        from tether.acceptor._enforce import apply_slice, limit_torch
        apply_slice(SliceLimits.from_env())
        print(json.dumps({"state": limit_torch()}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"state": "queued"}


def test_gpu_compute_share_without_mps_is_reported_not_enforced(tmp_path: Path) -> None:
    slice = SliceLimits(vendor="nvidia", pins=("GPU-1",), compute_share=0.5)
    env: dict[str, str] = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    enforced, why = _enforce._compute_share(slice, {}, env)
    assert not enforced and "no CUDA MPS daemon" in why
    (tmp_path / "control").touch()
    changes: dict[str, str | None] = {}
    enforced, why = _enforce._compute_share(slice, changes, env)
    assert enforced and changes["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"


def test_apply_slice_env_is_what_the_worker_calls() -> None:
    report = _run(
        """
        import os, resource
        from tether.acceptor._enforce import apply_slice_env
        from tether.acceptor._limits import SliceError
        report["again"] = apply_slice_env() is enforcement
        report["none"] = apply_slice_env("") is None
        try:
            apply_slice_env("{not json")
        except SliceError as exc:
            report["bad"] = str(exc)
        done()
        """,
        CPU_SLICE,
    )
    assert report["again"] and report["none"] and "not JSON" in report["bad"]
