"""A pytest plugin that fails a test which leaves threads, fds or processes behind.

Around every test it takes a snapshot before setup and after teardown: the live
threads, this process's open file descriptors (number and target), and the
processes that are this test run's (children of this process, and descendants
that carry :data:`TAG` in their environment, which catches orphans whose parent
was killed before them). What is new after teardown is a leak, with two
exceptions:

- what a fixture of a wider scope (module, session) made in its setup belongs
  to that fixture until its finaliser ran, and is not the test's;
- a thread listed in :data:`ALLOWED_THREADS`, with the reason there.

Before it reports, it gives things that are ending a short grace
(:data:`GRACE_S`: a thread finishing its last lines, a killed process being
reaped), with one ``gc.collect()`` for objects that only a collection closes.
A test that cannot be fixed yet carries ``@pytest.mark.allow_leaks("why")``;
the reason is required.

Cost: a clean test pays two snapshots (two directory listings of ``/proc`` and
``/proc/self/fd``, a readlink per fd, ``threading.enumerate()``); only new
process ids are read further. Every wait is bounded, nothing blocks on another
process, and on a system without ``/proc`` the fd and process checks are off.
Disable the plugin for one run with ``-p no:_leaks``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import pytest

#: Set in this process's environment at the start of the run, so every
#: descendant that keeps the environment can be recognised, orphaned or not.
TAG = "PYTEST_LEAKS_RUN"

#: How long ending threads and processes get before they count as leaked
#: (``PYTEST_LEAKS_GRACE_S`` overrides it: the plugin's own test shortens it).
GRACE_S = float(os.environ.get("PYTEST_LEAKS_GRACE_S") or 5.0)

#: Threads that outlive tests on purpose: name prefix -> why.
ALLOWED_THREADS: dict[str, str] = {}

_PROC = os.path.isdir("/proc/self/fd")


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[threading.Thread]
    fds: frozenset[tuple[int, str]]  # (fd, what it points to)
    pids: frozenset[int]  # every process id on the system

    @staticmethod
    def take() -> Snapshot:
        return Snapshot(frozenset(threading.enumerate()), _fds(), _pids())

    def since(self, before: Snapshot) -> Snapshot:
        return Snapshot(
            self.threads - before.threads, self.fds - before.fds, self.pids - before.pids
        )


def _fds() -> frozenset[tuple[int, str]]:
    if not _PROC:
        return frozenset()
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd, closed by now
            found.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
    return frozenset(found)


def _pids() -> frozenset[int]:
    if not _PROC:
        return frozenset()
    return frozenset(int(n) for n in os.listdir("/proc") if n.isdigit())


def _our_process(pid: int, tag: bytes) -> str | None:
    """A description of ``pid`` if it is a live process of this run, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2 :].split()
        state, ppid = fields[0], int(fields[1])
        if state in (b"Z", b"X"):  # exited; whoever started it has yet to reap it
            return None
        ours = ppid == os.getpid()
        if not ours:
            with open(f"/proc/{pid}/environ", "rb") as f:
                ours = tag in f.read().split(b"\0")
        if not ours:
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except (OSError, ValueError, IndexError):
        return None  # gone, or not ours to read
    return f"pid {pid}: {argv[:200]}"


@dataclass
class _Owned:
    """What the wider-scoped fixtures made, by fixture, until they are finalised."""

    by_fixture: dict[int, Snapshot] = field(default_factory=dict)

    def union(self) -> Snapshot:
        made = self.by_fixture.values()
        return Snapshot(
            frozenset(t for s in made for t in s.threads),
            frozenset(fd for s in made for fd in s.fds),
            frozenset(p for s in made for p in s.pids),
        )


_owned = _Owned()
_before = pytest.StashKey[Snapshot]()


def _allowed(thread: threading.Thread) -> bool:
    return any(thread.name.startswith(prefix) for prefix in ALLOWED_THREADS)


def _describe(new: Snapshot, tag: bytes) -> list[str]:
    threads = sorted(
        f"thread {t.name!r}{' (daemon)' if t.daemon else ''}"
        for t in new.threads
        if t.is_alive() and not _allowed(t)
    )
    fds = sorted(f"fd {fd} -> {target}" for fd, target in new.fds)
    procs = sorted(d for pid in new.pids if (d := _our_process(pid, tag)) is not None)
    return threads + fds + procs


def _settled(find: Callable[[], list[str]], grace: float) -> list[str]:
    """``find()`` until it finds nothing or ``grace`` seconds have passed."""
    deadline = time.monotonic() + grace
    collected = False
    while True:
        found = find()
        if not found or time.monotonic() >= deadline:
            return found
        if not collected:
            gc.collect()
            collected = True
        time.sleep(0.05)


def leaks(before: Snapshot, tag: bytes, grace: float = GRACE_S) -> list[str]:
    """What is new since ``before`` and still there after the grace; [] if nothing."""

    def find() -> list[str]:
        return _describe(Snapshot.take().since(before).since(_owned.union()), tag)

    return _settled(find, grace)


def _still_there(made: Snapshot, tag: bytes, grace: float = GRACE_S) -> list[str]:
    """What of ``made`` still exists after the grace; [] if nothing."""

    def find() -> list[str]:
        now = Snapshot.take()
        return _describe(
            Snapshot(made.threads & now.threads, made.fds & now.fds, made.pids & now.pids), tag
        )

    return _settled(find, grace)


def _tag() -> bytes:
    return f"{TAG}={os.environ.get(TAG, '')}".encode()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_leaks(reason): the test may leave threads, fds or processes behind "
        "(tests/_leaks.py); the reason says why and is required",
    )
    os.environ[TAG] = str(os.getpid())


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> Generator[None, object, object]:
    if fixturedef.scope == "function":
        return (yield)
    before = Snapshot.take()
    try:
        return (yield)
    finally:
        _owned.by_fixture[id(fixturedef)] = Snapshot.take().since(before)


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[object]) -> None:
    made = _owned.by_fixture.pop(id(fixturedef), None)
    if made is None:
        return
    # The fixture's teardown must end what its setup started.
    found = _still_there(made, _tag())
    if found:
        pytest.fail(
            f"fixture {fixturedef.argname!r} ({fixturedef.scope}) left behind "
            "(tests/_leaks.py):\n  " + "\n  ".join(found),
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    item.stash[_before] = Snapshot.take()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    result = yield  # an error of the teardown itself propagates and wins
    before = item.stash.get(_before, None)
    marker = item.get_closest_marker("allow_leaks")
    if marker is not None:
        if not (marker.args and isinstance(marker.args[0], str) and marker.args[0].strip()):
            pytest.fail("@pytest.mark.allow_leaks needs a reason", pytrace=False)
        return result
    if before is None:
        return result
    found = leaks(before, _tag())
    if found:
        pytest.fail(
            f"{item.nodeid} left behind (tests/_leaks.py):\n  " + "\n  ".join(found),
            pytrace=False,
        )
    return result
