"""GPU scripts run locally and under ``tether run --remote torch``: the same output."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_harness import (
    REMOTE_TIMEOUT_S,
    assert_same_run,
    parse_spec,
    run_local,
    run_script,
    tether_run_argv,
)

SCRIPTS = sorted((Path(__file__).resolve().parent / "scripts").glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_gpu_script_prints_what_it_prints_locally(path: Path, tmp_path: Path) -> None:
    import sys

    spec = parse_spec(path)
    local = run_local(spec, tmp_path)
    remote = run_script(
        spec,
        tmp_path,
        label="embedded",
        launcher=tether_run_argv(sys.executable, spec),
        timeout=REMOTE_TIMEOUT_S,
    )
    assert_same_run(local, remote, spec)
