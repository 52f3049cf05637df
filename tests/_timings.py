"""The end-of-run table of e2e script wall times, whichever process ran the scripts.

tests/e2e records ``(label, script, seconds)`` rows as it runs scripts. In one
process (``-n 0``) tests/e2e/conftest.py writes the table itself. Under
pytest-xdist the rows are the workers': each hands its rows over at the end
(``workeroutput``), and tests/conftest.py, which the controlling process loads,
gathers them and writes the same table.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

#: The key of a worker's rows in its ``workeroutput``.
WORKER_KEY = "e2e_script_timings"


def write_table(
    terminalreporter: pytest.TerminalReporter, rows: Iterable[tuple[str, str, float]]
) -> None:
    """Wall time of every script run, local against remote (information, not a test)."""
    rows = list(rows)
    if not rows:
        return
    labels = sorted({label for label, _, _ in rows}, key=lambda x: (x != "local", x))
    by_script: dict[str, dict[str, float]] = {}
    for label, script, seconds in rows:
        by_script.setdefault(script, {})[label] = seconds
    terminalreporter.section("e2e script wall times (seconds)")
    terminalreporter.write_line(f"{'script':28s}" + "".join(f"{lb:>14s}" for lb in labels))
    for script, row in sorted(by_script.items()):
        cells = "".join(f"{row[lb]:14.2f}" if lb in row else f"{'-':>14s}" for lb in labels)
        terminalreporter.write_line(f"{script:28s}{cells}")
