"""``tether devices``: the table, the JSON, and the --devices filter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tether.cli import main

SRC = str(Path(tether.__file__).resolve().parents[1])


def test_json_lists_the_cpu_and_every_probe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--json", "--no-frameworks"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["devices"][0]["id"] == "cpu:0"
    assert data["devices"][0]["memory_total"] > 0
    assert [p["vendor"] for p in data["probes"]] == ["cpu", "nvidia", "amd", "intel"]
    assert data["frameworks"] == []


def test_table_shows_frameworks_per_device_and_compute_share() -> None:
    # A real process, as a user runs it.
    out = subprocess.run(
        [sys.executable, "-m", "tether", "devices"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    ).stdout
    header, cpu_row = out.splitlines()[:2]
    for column in ("ID", "VENDOR", "MODEL", "MEMORY", "FRAMEWORKS", "COMPUTE SHARE"):
        assert column in header
    assert cpu_row.startswith("cpu:0") and "numpy" in cpu_row and "enforced" in cpu_row
    assert "\nprobes:\n" in out and "\nframeworks:\n" in out
    nvidia_note = next(line for line in out.splitlines() if line.strip().startswith("nvidia "))
    assert nvidia_note.split(None, 1)[1]  # says what NVML found, or why nothing


def test_devices_filter_restricts_and_explains_typos(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["devices", "--json", "--no-frameworks", "--devices", "cpu:0"]) == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)["devices"]] == ["cpu:0"]
    assert main(["devices", "--no-frameworks", "--devices", "cpu:9"]) == 1
    err = capsys.readouterr().err
    assert "matches no device here" in err and "cpu:0" in err
    assert main(["devices", "--devices", "tpu"]) == 1
    assert "unknown vendor 'tpu'" in capsys.readouterr().err
