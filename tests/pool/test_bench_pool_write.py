"""bench/pool_write.py still runs: a real pool, real clients, a second of load.

It asserts only that the benchmark completes and that its clients placed and
released without errors; never a speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ._pooltest import repo_env

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pool_write.py"


@pytest.mark.parametrize(
    "clients",
    [[], ["--no-keep"], ["--keep-alive"]],
    ids=["PoolClient", "PoolClient-no-keep", "keep-alive"],
)
def test_pool_write_bench_runs_and_its_clients_see_no_errors(clients: list[str]) -> None:
    pytest.importorskip("uvicorn", reason="the pool service needs pip install 'tether[pool]'")
    argv = [sys.executable, str(BENCH), "--clients", "4", "--procs", "2", "--seconds", "1",
            "--backends", "sqlite", *clients]  # fmt: skip
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env=repo_env(), check=False
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("sqlite ")]
    assert len(rows) == 1, out.stdout
    placed, errors = int(rows[0][-2]), int(rows[0][-1])
    assert placed > 0 and errors == 0, out.stdout
