"""Plugins and process settings for the whole suite: tests/_leaks.py fails a test
that leaks threads, file descriptors or child processes.

A suite started in the background by a shell without job control (``cmd &`` in a
CI script) inherits SIGINT ignored, and so would every process the tests start:
tests that press Ctrl-C on ``tether run``, ``tether submit`` or ``tether top``
would then wait in vain. A Python handler here is reset to the default at each
child's exec, so the children get Ctrl-C as in a terminal.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["_leaks"]
