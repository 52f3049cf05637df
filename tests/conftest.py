"""Plugins and process settings for the whole suite: tests/_leaks.py fails a test
that leaks threads, file descriptors or child processes.

A suite started in the background by a shell without job control (``cmd &`` in a
CI script) inherits SIGINT ignored, and so would every process the tests start:
tests that press Ctrl-C on ``tether run``, ``tether submit`` or ``tether top``
would then wait in vain. A Python handler here is reset to the default at each
child's exec, so the children get Ctrl-C as in a terminal.

The suite runs in pytest-xdist workers (``-n 2 --dist loadgroup``, pyproject.toml):
most tests wait on processes they started, so two workers use a two-core machine's
second core. :func:`pytest_collection_modifyitems` keeps a module's tests in one
worker (its module-scoped servers start once); tests/e2e/conftest.py groups the
script matrix by script instead. The workers' e2e script timings come back here
for the end-of-run table (tests/_timings.py).
"""

import signal

import pytest

from _timings import WORKER_KEY, write_table

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["_leaks"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group each test with its module for ``--dist loadgroup``, unless a conftest
    or the test itself put it in a group already (pytest-xdist reads the marks
    after this hook: its own runs last)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


_worker_timings: list[tuple[str, str, float]] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist: a worker ended; keep the e2e script timings it handed over."""
    rows = getattr(node, "workeroutput", {}).get(WORKER_KEY, [])
    _worker_timings.extend((label, script, seconds) for label, script, seconds in rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_table(terminalreporter, _worker_timings)
