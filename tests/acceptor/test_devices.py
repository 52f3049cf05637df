"""Device discovery: the CPU for real, NVML through a real import of pynvml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether.acceptor import _devices
from tether.acceptor._devices import (
    Device,
    DeviceFilterError,
    _amd,
    _cpu,
    _host,
    _intel,
    _nvidia,
    discover,
    discover_devices,
    discover_frameworks,
    filter_devices,
    parse_device_filter,
)

SRC = str(Path(_devices.__file__).resolve().parents[3])


def _gpu(vendor: str, index: int, ident: str) -> Device:
    return Device(
        id=f"{vendor}:{ident}",
        vendor=vendor,
        model="test",
        index=index,
        pin=ident if vendor == "nvidia" else str(index),
        memory_total=8 << 30,
        memory_free=8 << 30,
    )


HOST = [
    _cpu.probe_cpu().devices[0],
    _gpu("nvidia", 0, "GPU-aaaa"),
    _gpu("nvidia", 1, "GPU-bbbb"),
    _gpu("amd", 0, "0x1234"),
]


# ----------------------------------------------------------------------------- CPU


def test_cpu_device_is_real() -> None:
    probe = _cpu.probe_cpu()
    assert probe.available
    (cpu,) = probe.devices
    assert cpu.id == "cpu:0" and cpu.vendor == "cpu" and cpu.index == 0
    assert cpu.cores == len(os.sched_getaffinity(0))
    assert 0 < cpu.memory_free <= cpu.memory_total
    meminfo = _cpu.parse_meminfo(Path("/proc/meminfo").read_text())
    assert cpu.memory_total <= meminfo["MemTotal"]
    assert cpu.model == _cpu.parse_cpu_model(Path("/proc/cpuinfo").read_text())
    assert cpu.compute_share_supported


def test_parse_meminfo_in_bytes() -> None:
    text = "MemTotal:       24684084 kB\nMemAvailable:   23921732 kB\nHugePages_Total:       0\n"
    assert _cpu.parse_meminfo(text) == {
        "MemTotal": 24684084 * 1024,
        "MemAvailable": 23921732 * 1024,
        "HugePages_Total": 0,
    }


@pytest.mark.parametrize(
    ("cpuinfo", "model"),
    [
        (
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n",
            "Intel(R) Xeon(R) Processor",
        ),
        ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\nHardware\t: BCM2835\n", "BCM2835"),
        ("processor\t: 0\n", ""),
    ],
)
def test_parse_cpu_model(cpuinfo: str, model: str) -> None:
    assert _cpu.parse_cpu_model(cpuinfo) == model


# -------------------------------------------------------------------------- NVIDIA


def _nvml_state() -> str:
    """What NVML itself says on this host, asked directly through pynvml."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return "no library"
    except pynvml.NVMLError:
        return "no driver"
    pynvml.nvmlShutdown()
    return "ok"


def test_nvidia_probe_through_real_pynvml() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    state = _nvml_state()
    probe = _nvidia.probe_nvidia()
    if state == "no library":
        # This machine: no NVIDIA driver. The probe says so and offers nothing.
        assert not probe.available
        assert probe.devices == ()
        assert probe.note.startswith("no NVIDIA driver:"), probe.note
    elif state == "no driver":
        assert not probe.available and probe.devices == ()
        assert "driver" in probe.note or "NVML" in probe.note
    else:
        assert probe.available and probe.driver
        for device in probe.devices:
            assert device.id.startswith(("nvidia:GPU-", "nvidia:MIG-"))
            assert device.pin == device.id.removeprefix("nvidia:")
            assert device.arch.startswith("sm_")
            assert device.memory_total > 0


def test_mps_pipe_directory(tmp_path: Path) -> None:
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    assert _nvidia.mps_pipe_directory(env) is None
    (tmp_path / "control").touch()
    assert _nvidia.mps_pipe_directory(env) == tmp_path


# ----------------------------------------------------------------------- AMD/Intel

ROCM_SMI = json.dumps(
    {
        "card0": {
            "Card Series": "AMD Instinct MI300X",
            "VRAM Total Memory (B)": "206141652992",
            "VRAM Total Used Memory (B)": "299024384",
            "Unique ID": "0x18f68e602b8a790f",
            "GFX Version": "gfx942",
        },
        "card1": {"Card series": "Radeon", "VRAM Total Memory (B)": "N/A", "Unique ID": "N/A"},
        "system": {"Driver version": "6.8.5"},
    }
)


def test_parse_rocm_smi_json() -> None:
    first, second = _amd.parse_rocm_smi_json(ROCM_SMI)
    assert first.id == "amd:0x18f68e602b8a790f" and first.pin == "0"
    assert first.model == "AMD Instinct MI300X" and first.arch == "gfx942"
    assert first.memory_total == 206141652992
    assert first.memory_free == 206141652992 - 299024384
    assert not first.compute_share_supported and first.compute_share_reason
    assert second.id == "amd:1" and second.memory_total == 0


@pytest.mark.parametrize("garbage", ["", "not json", "[1, 2]", '"card0"'])
def test_parse_rocm_smi_json_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        _amd.parse_rocm_smi_json(garbage)


def test_amd_and_intel_probes_never_raise() -> None:
    for probe in (_amd.probe_amd(), _intel.probe_intel()):
        assert probe.available or (probe.devices == () and probe.note)


# ------------------------------------------------------------------------ discover


def test_discover_reports_every_vendor() -> None:
    found = discover()
    assert [p.vendor for p in found.probes] == ["cpu", "nvidia", "amd", "intel"]
    assert found.devices[0].id == "cpu:0"
    assert len({d.id for d in found.devices}) == len(found.devices)
    assert found.probe("cpu").available
    json.dumps(found.to_dict())  # what the acceptor registers must serialise
    assert [d.id for d in discover_devices(vendors=["cpu"])] == ["cpu:0"]
    with pytest.raises(ValueError, match="unknown vendor"):
        discover(vendors=["tpu"])


def test_device_round_trips_through_dict() -> None:
    for device in HOST:
        assert Device.from_dict(json.loads(json.dumps(device.to_dict()))) == device


def test_discovery_does_not_import_torch() -> None:
    code = (
        "import sys; from tether.acceptor._devices import discover;"
        "d = discover(frameworks=True); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.stdout.strip() == "False"


def test_frameworks_report_numpy_with_version_and_build() -> None:
    import numpy

    found = {f.name: f for f in discover_frameworks()}
    assert found["numpy"].version == numpy.__version__
    assert found["numpy"].build == "cpu"
    assert discover_frameworks() is discover_frameworks()  # cached


@pytest.mark.torch
def test_frameworks_report_torch_build() -> None:
    torch = pytest.importorskip("torch")
    (fw,) = discover_frameworks(names=("torch",))
    # The distribution's version; torch.__version__ may add the build's local
    # label (PyPI's CUDA build: metadata 2.13.0, torch.__version__ 2.13.0+cu130).
    assert fw.version.split("+")[0] == torch.__version__.split("+")[0]
    if torch.version.cuda:
        assert fw.build == f"cuda {torch.version.cuda}"
    elif torch.version.hip:
        assert fw.build.startswith("rocm")
    else:
        assert fw.build == "cpu" or fw.build.startswith("xpu")


def test_framework_probe_timeout_is_reported() -> None:
    rc, _out, err = _host._run_python(sys.executable, "import time; time.sleep(30)", 0.5)
    assert rc == 124 and "timed out" in err


# -------------------------------------------------------------------------- filter


def test_filter_by_index_id_and_vendor() -> None:
    assert [d.id for d in filter_devices(HOST, "cpu:0,nvidia:1")] == ["cpu:0", "nvidia:GPU-bbbb"]
    assert [d.id for d in filter_devices(HOST, "nvidia")] == ["nvidia:GPU-aaaa", "nvidia:GPU-bbbb"]
    assert [d.id for d in filter_devices(HOST, "nvidia:GPU-aaaa")] == ["nvidia:GPU-aaaa"]
    assert [d.id for d in filter_devices(HOST, " amd:0 , cpu ")] == ["cpu:0", "amd:0x1234"]
    assert filter_devices(HOST, "all") == HOST
    assert filter_devices(HOST, "") == HOST


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tpu:0", "unknown vendor 'tpu'"),
        ("cpu:0,,nvidia", "empty item"),
        ("nvidia:", "no index or id"),
        ("nvidia:7", "matches no device here (have: cpu:0, nvidia:GPU-aaaa"),
        ("intel", "matches no device"),
    ],
)
def test_filter_errors_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(DeviceFilterError, match=message.replace("(", r"\(")):
        filter_devices(HOST, spec)


def test_parse_device_filter_is_case_insensitive_on_vendor() -> None:
    (sel,) = parse_device_filter("NVIDIA:0")
    assert (sel.vendor, sel.key) == ("nvidia", "0")
