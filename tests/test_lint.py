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


#: A module may pass this many lines only if its docstring says why, near its top.
LONG_MODULE_LINES = 420


def test_every_long_module_says_why_at_its_top() -> None:
    """Modules stay small with one job; one that is long on purpose says so (issue 12)."""
    import ast
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "tether"
    silent = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > LONG_MODULE_LINES and not re.search(r"over (the house's )?400", doc, re.I):
            silent.append(f"{path.relative_to(src.parent)} ({lines} lines)")
    assert not silent, "long modules that do not say why at their top: " + ", ".join(silent)
