"""``import torch`` yields the worker's torch when torch is remoted.

A finder first on ``sys.meta_path`` claims the remoted top-level names and all
their submodules, so the client never needs them installed; each module is a
:class:`~tether.client._proxy.RemoteModule` of the session, which connects on the
first such import.

Interchange modules (numpy) are the exception when the client has its own
copy: libraries that only exchange arrays through them (matplotlib, pandas,
scikit-learn when not remoted) keep importing the client's numpy, and only the
script's own modules get the remote one (an ``__import__`` hook tells them
apart). A remote array handed to such a library crosses at ``__array__`` as a
real local array, and no library class ever travels to the worker.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterable
from typing import Any

from tether.client._namespace import LOCAL_MODULES, is_script_module
from tether.client._session import Session

#: Modules other libraries only exchange data through (see the module docstring).
INTERCHANGE = frozenset({"numpy"})


class RemoteFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(
        self,
        names: Iterable[str],
        session: Callable[[], Session],
        local: Iterable[str] = (),
    ) -> None:
        self.names = frozenset(names)
        #: Remoted names the client's libraries import locally (interchange).
        self.local = frozenset(local)
        self._session = session

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        top = fullname.partition(".")[0]
        if top not in self.names or top in self.local:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> Any:
        return self._session().import_module(spec.name)

    def exec_module(self, module: Any) -> None:
        pass

    def remote_import(self, name: str, fromlist: Any) -> Any:
        """What ``import name`` / ``from name import ...`` gives the script's code."""
        session = self._session()
        module = session.import_module(name)
        if fromlist:
            return module
        return session.import_module(name.partition(".")[0])


def _import_hook(finder: RemoteFinder, original: Any) -> Any:
    def tether_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        if (
            level == 0
            and name.partition(".")[0] in finder.local
            and globals is not None
            and is_script_module(globals.get("__name__") or "")
        ):
            return finder.remote_import(name, fromlist)
        return original(name, globals, locals, fromlist, level)

    tether_import.__tether_original__ = original  # type: ignore[attr-defined]
    tether_import.__tether_finder__ = finder  # type: ignore[attr-defined]
    return tether_import


def _installed_here(name: str) -> bool:
    """True if the client has its own copy of top-level module ``name``."""
    try:
        return importlib.machinery.PathFinder.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def uninstall(finder: RemoteFinder) -> None:
    """Undo :func:`install`: the finder and the import hook go."""
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    current = builtins.__import__
    if getattr(current, "__tether_finder__", None) is finder:
        builtins.__import__ = current.__tether_original__  # type: ignore[attr-defined]
    LOCAL_MODULES.difference_update(finder.local)


def install(names: Iterable[str], session: Callable[[], Session]) -> RemoteFinder:
    names = frozenset(names)
    local = {n for n in names if n in INTERCHANGE and _installed_here(n)}
    finder = RemoteFinder(names, session, local)
    sys.meta_path.insert(0, finder)
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top in finder.names and top not in local:
            del sys.modules[name]  # a local copy imported before must not shadow the remote one
    if local:
        LOCAL_MODULES.update(local)
        builtins.__import__ = _import_hook(finder, builtins.__import__)
    return finder
