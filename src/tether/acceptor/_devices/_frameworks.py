"""The frameworks importable on this host, and which devices each can drive.

Versions come from ``importlib.metadata`` (no import); builds (CUDA / ROCm / XPU
/ CPU) from one subprocess per framework under a timeout, run side by side; the
result is cached per interpreter. The acceptor itself never imports torch here.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import sys
from collections.abc import Iterable

from tether.acceptor._devices._host import _run_python
from tether.acceptor._devices._model import PROBE_TIMEOUT_S, Device, Framework

# name shown -> distributions that provide it (first installed wins).
_FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-rocm", "tf-nightly"),
    "numpy": ("numpy",),
    "cupy": ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-rocm-5-0"),
}

# Each prints one JSON object {"build": ..., "detail": ...}. They import the
# framework but touch no device (JAX would pre-allocate GPU memory if asked for
# its backend, so its build is read from its plugin packages instead).
_BUILD_PROBES: dict[str, str] = {
    "torch": """
import json, torch
v = torch.version
if getattr(v, "hip", None): b = "rocm " + v.hip
elif getattr(v, "cuda", None): b = "cuda " + v.cuda
elif getattr(v, "xpu", None): b = "xpu " + str(v.xpu)
else: b = "cpu"
print(json.dumps({"build": b, "detail": ""}))
""",
    "tensorflow": """
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
i = tf.sysconfig.get_build_info()
if i.get("is_rocm_build"): b = "rocm " + str(i.get("rocm_version", ""))
elif i.get("is_cuda_build"): b = "cuda " + str(i.get("cuda_version", ""))
else: b = "cpu"
print(json.dumps({"build": b.strip(), "detail": ""}))
""",
    "numpy": """
import json, numpy
try:
    blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
except Exception:
    blas = ""
print(json.dumps({"build": "cpu", "detail": ("blas " + blas) if blas else ""}))
""",
    "cupy": """
import json, cupy
v = cupy.cuda.runtime.runtimeGetVersion()
b = ("rocm " if cupy.cuda.runtime.is_hip else "cuda ") + str(v)
print(json.dumps({"build": b, "detail": ""}))
""",
}


def _distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _jax_build() -> tuple[str, str]:
    plugins = [
        d
        for d in ("jax-cuda13-plugin", "jax-cuda12-plugin", "jax-rocm7-plugin", "jax-rocm60-plugin")
        if _distribution_version(d) is not None
    ]
    if not plugins:
        return "cpu", "no accelerator plugin installed"
    return plugins[0].removeprefix("jax-").removesuffix("-plugin"), ", ".join(plugins)


def _probe_build(python: str, name: str, timeout: float) -> tuple[str, str]:
    if name == "jax":
        return _jax_build()
    code = _BUILD_PROBES.get(name)
    if code is None:
        return "", ""
    rc, out, err = _run_python(python, code, timeout)
    if rc != 0:
        return "", f"build probe failed: {err or f'exit {rc}'}"
    try:
        row = json.loads(out.splitlines()[-1])
        return str(row.get("build", "")), str(row.get("detail", ""))
    except (json.JSONDecodeError, IndexError, AttributeError):
        return "", "build probe printed no JSON"


@functools.lru_cache(maxsize=8)
def discover_frameworks(
    python: str | None = None,
    *,
    names: tuple[str, ...] | None = None,
    timeout: float = PROBE_TIMEOUT_S,
) -> tuple[Framework, ...]:
    """The frameworks importable by ``python`` (default: this interpreter).

    Versions come from package metadata (no import). Builds come from one short
    subprocess per framework, started together and each bounded by
    ``timeout`` seconds; a probe that fails or times out leaves ``build`` empty
    and says why in ``detail``. Cached per argument set: call
    ``discover_frameworks.cache_clear()`` after installing packages.

    Versions are read from *this* interpreter's metadata; pass ``python`` only
    for the interpreter the acceptor itself runs (the worker's).
    """
    python = python or sys.executable
    wanted = names or tuple(_FRAMEWORKS)
    found = [(n, _distribution_version(*_FRAMEWORKS.get(n, (n,)))) for n in wanted]
    installed = [(n, v) for n, v in found if v is not None]
    # Thread per probe: the subprocesses run side by side, so the slowest
    # framework import bounds the total instead of the sum of them.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(installed))) as pool:
        builds = list(pool.map(lambda nv: _probe_build(python, nv[0], timeout), installed))
    return tuple(
        Framework(name=n, version=v, build=b, detail=d)
        for (n, v), (b, d) in zip(installed, builds, strict=True)
    )


def frameworks_for(device: Device, frameworks: Iterable[Framework]) -> tuple[Framework, ...]:
    """The frameworks whose build can drive ``device``.

    Every framework runs on the CPU; a GPU needs a matching build: ``cuda`` for
    NVIDIA, ``rocm`` for AMD, ``xpu`` for Intel. A framework whose build could
    not be probed is listed for the CPU only.
    """
    prefix = {"nvidia": "cuda", "amd": "rocm", "intel": "xpu"}.get(device.vendor)
    if prefix is None:
        return tuple(frameworks)
    return tuple(f for f in frameworks if f.build.startswith(prefix))
