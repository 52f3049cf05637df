"""The GPU suite (issue 15): Tether's paths on a real CUDA device.

Every test here is marked ``gpu`` and skips, saying why, unless the test environment's
torch sees a CUDA device and NVML answers. On a machine that has one, run it alone::

    .venv/bin/python -m pytest tests/gpu -v

The suite reuses the end-to-end harness (``tests/e2e``): the differential oracle for
scripts, and the pool world for slices and metering.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

HERE = Path(__file__).resolve().parent


@functools.cache
def no_gpu_reason() -> str | None:
    """Why the suite cannot run here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed in the test environment"
    if not torch.cuda.is_available():
        return f"no CUDA device: torch {torch.__version__} sees none"
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:
        return f"NVML does not answer: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.gpu)
        item.add_marker(pytest.mark.slow)
        if reason is None:
            reason = no_gpu_reason() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
