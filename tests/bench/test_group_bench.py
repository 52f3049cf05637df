"""bench/group_scale.py runs end to end at a small size (its figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_group_scale_runs_and_places_every_member() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "group_scale.py"), "--nodes", "20",
         "--members", "40", "--warm", "0.5"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    # "empty group SECONDS PLACED ...", and "warm 50% group ...": the PLACED column.
    placed = [r[-4] for r in rows if "group" in r[:3] or "singles" in r[:3] if len(r) >= 7]
    assert placed == ["40"] * 4, done.stdout  # group and singles, on an empty and a warm pool
    assert done.stdout.count("singles/group time") == 2
