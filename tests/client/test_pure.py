"""The client's protocol and prediction are pure: no clock, no thread, no socket."""

from __future__ import annotations

import re
from pathlib import Path

import tether.client

PURE = ("_protocol", "_events", "_predict")
SRC = Path(tether.client.__file__).parent


def test_pure_modules_touch_no_clock_thread_or_socket() -> None:
    forbidden = re.compile(
        r"\b(time\.(time|monotonic|perf_counter)|datetime\.|import (random|socket|select"
        r"|ssl|asyncio|threading|os|sys|time)\b"
        r"|(from|import) tether\.(transport|client\._(session|proxy|codec|trycheck)))"
    )
    for name in PURE:
        text = (SRC / f"{name}.py").read_text()
        assert not forbidden.search(text), f"{name}.py: {forbidden.search(text)}"
