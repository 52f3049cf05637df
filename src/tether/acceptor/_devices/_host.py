"""Reading the host for the probes: kernel files, and short Python subprocesses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tether.acceptor._devices._model import PROBE_TIMEOUT_S


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _run_python(python: str, code: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[int, str, str]:
    """Run ``python -c code``: (exit code, stdout, last line of stderr)."""
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # A build probe must not grab GPUs the host's sessions are using.
            env={**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")},
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:g} s"
    except OSError as exc:
        return 127, "", str(exc)
    lines = done.stderr.strip().splitlines()
    return done.returncode, done.stdout.strip(), lines[-1] if lines else ""
