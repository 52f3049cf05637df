"""The script's module namespaces as the worker sees them: paged in, kept coherent.

Theory of operation
-------------------
Code of the script's own modules (``__main__`` and the user's packages: any
module whose file is not in the standard library or an installed distribution)
runs in the worker against **one namespace per module**, not against a snapshot
of the globals it needed when it was shipped. The worker starts with an empty
namespace for each module; a name its code reads that it lacks is *paged in*
from the client (a ``global`` request) and the client remembers what the
worker now holds (:attr:`_Module.seen`).

Coherence rule: **write-update, one message per change.** Before each call the
session sends, it asks :meth:`ScriptNamespaces.changes` whether any name the
worker holds was rebound or deleted here since; if so, the new values travel
in the call stream, ahead of the call (a namespace entry of the batch, see
:data:`tether.wire._ops.NAMESPACE_TAG`). So the worker's next read sees what
the script assigned, in program order, and a name the worker never read costs
nothing. Names the worker rebinds itself (``global n; n += 1`` in shipped
code) are written back to the client after the call (``setglobal``) and
recorded here, so they are not sent back.

Reads the script's run-ahead could overtake. A pipelined call may page a name in
after the script has run ahead and rebound it (``OFFSET = 100.0`` between
``y = model(x)`` and the next wait): the page-in must answer with the value the
call was made under. So for the names the shipped code reads that the worker
does not hold yet (:attr:`_Module.late`, from the code's loads of globals) the
client keeps their values as of the last call sent; when one of them changes
while calls are in flight, its new value is put in the call stream like any
rebind, and the calls sent before it that page it in get the value they were
made under (:attr:`ScriptNamespaces.before`) until the session next hears the
worker has run everything sent (:meth:`ScriptNamespaces.settled`). A read
through another module's attribute (``config.LR``) is not covered.

Finding the changes must cost almost nothing per call, since most calls change
nothing. CPython bumps a dict's private version tag on every mutation (PEP 509;
``ma_version_tag``); where a self-test shows that the tag can be read and
behaves so, only a module whose tag moved is scanned, and the scan compares
only the names the worker holds, by identity. Elsewhere every tracked module
is scanned per call (correct, slower).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import itertools
import operator
import os
import site
import sys
import sysconfig
from collections.abc import Callable
from functools import cache
from typing import Any

#: The worker holds the builtin of this name (the script has no global of it).
_ABSENT: Any = object()
_NONE: Any = object()
_ABSENTS = itertools.repeat(_ABSENT)
_is_not = operator.is_not

#: Rebinds to send: [(module, [(name, present, value)])].
Changes = list[tuple[str, list[tuple[str, bool, Any]]]]

#: Remoted modules that the client's libraries import from the client's own copy
#: (see tether.client._importer); their remote proxies stay out of sys.modules.
LOCAL_MODULES: set[str] = set()


@cache
def _system_dirs() -> tuple[str, ...]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            dirs.add(sysconfig.get_path(key))
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:
        pass
    dirs.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tether itself
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def is_user_file(path: str) -> bool:
    """True for a source file of the user's own (not the stdlib, not installed)."""
    return not os.path.realpath(path).startswith(_system_dirs())


_script_modules: dict[str, bool] = {}


def is_script_module(name: str) -> bool:
    """True for ``__main__`` and modules loaded from the user's own files.

    Cached per name: a module does not move. Remote modules (proxies) have no
    file and are never script modules.
    """
    known = _script_modules.get(name)
    if known is not None:
        return known
    if name == "__main__":
        answer = True
    else:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        answer = (
            isinstance(path, str)
            and path.endswith(".py")
            and not name.startswith("tether.")
            and is_user_file(path)
        )
    if name in sys.modules:  # an unknown name may still be imported later
        _script_modules[name] = answer
    return answer


def module_namespace(name: str | None) -> dict[str, Any] | None:
    """The globals dict of script module ``name``, if it is one and is loaded."""
    if not name or not is_script_module(name):
        return None
    module = sys.modules.get(name)
    namespace = getattr(module, "__dict__", None)
    return namespace if isinstance(namespace, dict) else None


def module_info(name: str, namespace: dict[str, Any]) -> tuple[str, str | None, str | None, bool]:
    """What the worker needs to make the module's namespace: (name, file,
    package, is a package)."""
    file = namespace.get("__file__")
    package = namespace.get("__package__")
    return (
        name,
        file if isinstance(file, str) else None,
        package if isinstance(package, str) else None,
        "__path__" in namespace,
    )


def _tag_reader() -> Callable[[dict[str, Any]], Any] | None:
    """A reader of a dict's version tag, or None where it cannot be trusted."""
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        offset = 3 * ctypes.sizeof(ctypes.c_ssize_t)  # refcnt, type, ma_used

        def reader(d: dict[str, Any]) -> Any:
            return ctypes.c_uint64.from_address(id(d) + offset)

        probe: dict[str, Any] = {}
        tag = reader(probe)
        seen = [tag.value]
        for step in range(4):
            if step == 3:
                del probe["x"]
            else:
                probe["x"] = step
            seen.append(tag.value)
        if len(set(seen)) != len(seen):
            return None
        other: dict[str, Any] = {}
        before = tag.value
        other["y"] = 1  # another dict's change must not move this one's tag
        if tag.value != before:
            return None
        return reader
    except Exception:  # pragma: no cover - no ctypes, or an unusual build
        return None


_READ_TAG = _tag_reader()


class _Module:
    __slots__ = ("globals", "last", "late", "name", "seen", "tag", "tracked")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self.name = name
        self.globals = namespace
        #: What the worker holds: name -> value (``_ABSENT``: its builtin).
        self.seen: dict[str, Any] = {}
        #: Names shipped code reads that the worker does not hold: name -> value
        #: as of the last call sent (``_ABSENT``: not a global here).
        self.late: dict[str, Any] = {}
        self.tracked = False
        self.tag = _READ_TAG(namespace) if _READ_TAG is not None else None
        self.last = self.tag.value if self.tag is not None else 0


class ScriptNamespaces:
    """What the worker holds of each script module's namespace; see the module
    docstring. One per session."""

    def __init__(self) -> None:
        self._modules: dict[str, _Module] = {}
        #: The modules the worker holds names of or may page names in from;
        #: empty for most of a session's life, so the per-call check is one
        #: truth test.
        self.tracked: list[_Module] = []
        #: (module, name) -> the value calls in flight were made under, for
        #: names rebound since and sent ahead of the later calls.
        self.before: dict[tuple[str, str], Any] = {}

    def _entry(self, module: str) -> _Module | None:
        entry = self._modules.get(module)
        if entry is None:
            if module not in sys.modules:
                # The worker met the module first (unpickling a file that names
                # it): import it here, as a local pickle.load would.
                with contextlib.suppress(Exception):
                    importlib.import_module(module)
            namespace = module_namespace(module)
            if namespace is None:
                return None
            entry = self._modules[module] = _Module(module, namespace)
        return entry

    def _track(self, entry: _Module) -> None:
        if not entry.tracked:
            entry.tracked = True
            self.tracked.append(entry)

    def watch(self, module: str, names: frozenset[str]) -> None:
        """Shipped code of ``module`` may read ``names``: note, for those the
        worker does not hold, their values now (the call being sent is made
        under them)."""
        entry = self._entry(module)
        if entry is None:
            return
        seen, late, namespace = entry.seen, entry.late, entry.globals
        for name in names:
            if name not in seen and name not in late:
                late[name] = namespace.get(name, _ABSENT)
        if late:
            self._track(entry)

    def settled(self) -> None:
        """The worker has run every call sent: no page-in can come from a call
        made before a rebind any more."""
        self.before.clear()

    def page(self, module: str, name: str) -> tuple[bool, Any]:
        """The worker reads ``name`` of ``module``: (found, value).

        A name the script lacks but the builtins have is recorded as absent:
        the worker uses its own builtin until the script defines the name.
        """
        entry = self._entry(module)
        if entry is None:
            return False, None
        if self.before:
            old = self.before.get((module, name), _NONE)
            if old is not _NONE:  # a call made before the script rebound it
                return (False, None) if old is _ABSENT else (True, old)
        entry.late.pop(name, None)
        try:
            value = entry.globals[name]
        except KeyError:
            if hasattr(builtins, name):
                entry.seen[name] = _ABSENT
                self._track(entry)
            return False, None
        entry.seen[name] = value
        self._track(entry)
        return True, value

    def wrote(self, module: str, name: str, value: Any, present: bool) -> None:
        """The worker rebound ``name`` (written back here): set it, and record
        that the worker already has it."""
        entry = self._entry(module)
        if entry is None:
            return
        if present:
            entry.globals[name] = value
        else:
            entry.globals.pop(name, None)
        entry.seen[name] = value if present else _ABSENT
        entry.late.pop(name, None)
        self.before.pop((module, name), None)
        self._track(entry)
        if entry.tag is not None:
            entry.last = entry.tag.value

    def changes(self, inflight: bool = False) -> Changes | None:
        """The rebinds since the last call: [(module, [(name, present, value)])].

        Records them as sent. None (the common case) when nothing changed.
        ``inflight``: calls sent before may not have run yet, so a name they
        may still page in that changed is sent too (see the module docstring).
        """
        out = None
        for entry in self.tracked:
            tag = entry.tag
            if tag is not None:
                version = tag.value
                if version == entry.last:
                    continue
                entry.last = version
            namespace = entry.globals
            changed: list[tuple[str, bool, Any]] | None = None
            seen = entry.seen
            for name, old in seen.items():
                new = namespace.get(name, _ABSENT)
                if new is not old:
                    if changed is None:
                        changed = []
                    changed.append((name, new is not _ABSENT, new))
            late = entry.late
            # (the any() of maps runs in C: the common answer is "none moved")
            if late and any(map(_is_not, map(namespace.get, late, _ABSENTS), late.values())):
                for name, old in list(late.items()):
                    new = namespace.get(name, _ABSENT)
                    if new is old:
                        continue
                    if not inflight:
                        late[name] = new
                        continue
                    del late[name]  # sent below like a rebind; the worker holds it
                    self.before.setdefault((entry.name, name), old)
                    if changed is None:
                        changed = []
                    changed.append((name, new is not _ABSENT, new))
            if changed:
                for name, present, new in changed:
                    seen[name] = new if present else _ABSENT
                if out is None:
                    out = []
                out.append((entry.name, changed))
        return out
