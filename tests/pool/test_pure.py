"""The pool's policy is pure: no clock, no randomness, no I/O modules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tether.pool

PURE = (
    "_values",
    "_model",
    "_request",
    "_events",
    "_placement",
    "_quota",
    "_queue",
    "_state",
    "_roster",
    "_admission",
    "_leases",
    "_tables",
    "_node_events",
    "_lease_events",
    "_metering",
    "_books",
    "_deadlines",
    "_usage",
    "_groups",
    "_group_request",
)
SRC = Path(tether.pool.__file__).parent


def test_pure_modules_read_no_clock_and_draw_no_random_numbers() -> None:
    forbidden = re.compile(
        r"\b(time\.(time|monotonic|perf_counter)|datetime\.(now|utcnow|today)|import random"
        r"|import (socket|sqlite3|asyncio|threading|os)\b)"
    )
    for name in PURE:
        text = (SRC / f"{name}.py").read_text()
        assert not forbidden.search(text), f"{name}.py: {forbidden.search(text)}"


def test_importing_the_policy_loads_no_io_or_service_modules() -> None:
    code = (
        "import sys, tether.pool, tether.pool._state;"
        "bad = sorted(m for m in ('socket', 'sqlite3', 'asyncio', 'psycopg', 'http.server',"
        " 'tether.pool._store', 'tether.pool._service', 'torch') if m in sys.modules);"
        "print(','.join(bad))"
    )
    src = str(SRC.parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src},
    )
    assert out.stdout.strip() == ""


def test_public_surface_is_importable() -> None:
    for name in tether.pool.__all__:
        assert hasattr(tether.pool, name), name
    for name in ("PoolState", "SliceRequest", "Placed", "Refused", "compute_usage", "parse_memory"):
        assert name in tether.pool.__all__
