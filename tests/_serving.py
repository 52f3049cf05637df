"""The worker-sandbox flag for every test that starts ``tether serve``.

``tether serve`` sandboxes each worker with bubblewrap and refuses to start without it
unless told ``--no-sandbox``. CI installs bubblewrap (``.ci/run``, as root), so there the
tests run sandboxed, as production does; on a machine without it (a developer's laptop, a
fresh container) the same tests run unsandboxed instead of failing on a missing package.
The sandbox's own tests (``tests/acceptor/test_sandbox*.py``) skip there, saying why.
"""

from __future__ import annotations

import shutil


def sandbox_flags() -> list[str]:
    """``[]`` where bubblewrap is installed, else ``["--no-sandbox"]``."""
    return [] if shutil.which("bwrap") else ["--no-sandbox"]
