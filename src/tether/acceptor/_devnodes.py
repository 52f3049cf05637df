"""The device nodes a worker's cell may open: the host's GPU nodes, cut to its slice.

A cell sees ``/dev`` without GPU nodes but for the ones :func:`slice_device_nodes`
hands it: all of the host's (no slice: a token session has the host), none (a CPU
slice), or, for an NVIDIA slice of whole GPUs, the driver's control nodes and the GPU's
own ``/dev/nvidiaN`` (as container runtimes do); the minor of each GPU comes from the
driver's ``/proc`` files (:func:`nvidia_minors`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["DEVICE_GLOBS", "device_nodes", "mps_dirs", "nvidia_minors", "slice_device_nodes"]

#: The host's GPU device nodes, under /dev: NVIDIA, its capabilities, DRM, AMD's KFD.
DEVICE_GLOBS = ("nvidia*", "nvidia-caps", "dri", "kfd")


def device_nodes(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The host's GPU device nodes (NVIDIA, DRM, AMD KFD) that exist."""
    found: set[str] = set()
    for pattern in DEVICE_GLOBS:
        found.update(str(p) for p in dev.glob(pattern))
    return tuple(sorted(found))


def nvidia_minors(gpus: Path = Path("/proc/driver/nvidia/gpus")) -> dict[str, int]:
    """GPU UUID -> minor number of its ``/dev/nvidiaN``, from the driver's /proc files."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for info in gpus.glob("*/information"):
            fields: dict[str, str] = {}
            with contextlib.suppress(OSError, ValueError, KeyError):
                for line in info.read_text().splitlines():
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
                out[fields["GPU UUID"]] = int(fields["Device Minor"])
    return out


_NVIDIA_GPU_NODE = re.compile(r"/dev/nvidia(\d+)")


def slice_device_nodes(
    slice_json: str | None, nodes: Sequence[str], minors: Mapping[str, int]
) -> tuple[str, ...]:
    """The device nodes a cell gets, of the host's ``nodes``.

    No slice (a token session has the host): all of them. A CPU slice: none,
    so no GPU can be opened whatever the session does to its environment. An
    NVIDIA slice of whole GPUs whose minors are known: the driver's control
    nodes and its own ``/dev/nvidiaN`` only (as container runtimes do: the
    driver cannot open a GPU without its node). Otherwise (MIG instances, AMD,
    Intel) all of the vendor's nodes, and visibility rests on the slice's
    environment variables (docs/devices.md says so).
    """
    if slice_json is None:
        return tuple(nodes)
    from tether.acceptor._limits import SliceLimits

    sl = SliceLimits.from_json(slice_json)
    if sl.vendor == "cpu":
        return ()
    if sl.vendor != "nvidia":
        return tuple(n for n in nodes if not n.startswith("/dev/nvidia"))
    nvidia = [n for n in nodes if n.startswith("/dev/nvidia")]
    if not all(p in minors for p in sl.pins):
        return tuple(nvidia)  # MIG, or a driver without the /proc files
    own = {minors[p] for p in sl.pins}
    return tuple(
        n for n in nvidia if (m := _NVIDIA_GPU_NODE.fullmatch(n)) is None or int(m[1]) in own
    )


def mps_dirs(env: Mapping[str, str]) -> tuple[str, ...]:
    """The CUDA MPS pipe directory when a daemon runs (it lives under /tmp by default)."""
    from tether.acceptor._devices import mps_pipe_directory

    pipe = mps_pipe_directory(env)
    return (str(pipe),) if pipe is not None else ()
