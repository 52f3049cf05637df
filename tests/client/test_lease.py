"""``tether run``'s slice options become the pool's request body."""

from __future__ import annotations

import pytest

from tether.client._lease import slice_request


def test_a_fraction_a_count_and_the_default() -> None:
    assert slice_request(gpus=0.5) == {"fraction": 0.5, "wait": True}
    assert slice_request(gpus=2) == {"count": 2, "wait": True}
    assert slice_request() == {"fraction": 1.0, "wait": True}
    assert slice_request(memory="8GiB") == {"memory": "8GiB", "wait": True}


def test_constraints_and_no_wait_are_passed_on() -> None:
    body = slice_request(
        gpus=0.25, memory="8GiB", vendor="nvidia", model="*H100*",
        frameworks=["torch>=2.4"], team="ml", wait=False, queue_timeout_s=60,
    )  # fmt: skip
    assert body == {
        "fraction": 0.25, "memory": "8GiB", "vendor": "nvidia", "model": "*H100*",
        "frameworks": ["torch>=2.4"], "team": "ml", "wait": False, "queue_timeout_s": 60,
    }  # fmt: skip


@pytest.mark.parametrize("gpus", [0, -1, 1.5])
def test_impossible_gpu_counts_are_refused(gpus: float) -> None:
    with pytest.raises(ValueError, match="--gpus"):
        slice_request(gpus=gpus)


def test_the_pool_pieces_of_client_and_acceptor_need_none_of_the_servers_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tether.client._lease, tether.cli._run, tether.cli._up, tether.cli._serve\n"
        "import tether.acceptor._poolagent, tether.poolapi\n"
        "heavy = ('fastapi', 'pydantic', 'uvicorn', 'psycopg', 'starlette', 'sqlite3', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
