"""A worker's own child processes end with it (``tether.acceptor._descendants``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# A process that starts a child which starts a grandchild (as a DataLoader's spawn
# workers and multiprocessing's tracker hang below a worker), then ends them all.
TREE = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from tether.acceptor._descendants import descendants, end_descendants

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    inner = f"import subprocess, time; subprocess.Popen({sleeper!r}); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", inner])
    deadline = time.monotonic() + 60
    while len(descendants()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    found = descendants()
    end_descendants()
    child.wait(30)
    print(json.dumps(found))
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def test_the_whole_tree_below_a_process_is_found_and_killed() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TREE], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(out.stdout)
    assert len(found) == 2, out  # the child and the grandchild
    for _ in range(200):
        if not any(_alive(pid) for pid in found):
            break
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in found), found


def test_a_process_without_children_has_no_descendants() -> None:
    from tether.acceptor._descendants import descendants

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert descendants(proc.pid) == []
    finally:
        proc.kill()
        proc.wait(10)
