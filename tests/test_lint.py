"""The codebase stays ruff-formatted, ruff- and mypy-clean (the standards in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_check() -> None:
    pytest.importorskip("ruff", reason="ruff is not installed (it is in the test extra)")
    out = _run("ruff", "check", "src", "tests", "bench", "examples")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    pytest.importorskip("ruff", reason="ruff is not installed (it is in the test extra)")
    out = _run("ruff", "format", "--check", "src", "tests", "bench", "examples")
    assert out.returncode == 0, "run `ruff format`:\n" + out.stdout + out.stderr


@pytest.mark.slow
def test_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    out = _run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr
