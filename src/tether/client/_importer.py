"""``import torch`` yields the worker's torch when torch is remoted.

A finder first on ``sys.meta_path`` claims the remoted top-level names and all
their submodules, so the client never needs them installed; each module is a
:class:`~tether.client._proxy.RemoteModule` of the session, which connects on the
first such import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterable
from typing import Any

from tether.client._session import Session


class RemoteFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: Iterable[str], session: Callable[[], Session]) -> None:
        self.names = frozenset(names)
        self._session = session

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.partition(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> Any:
        return self._session().import_module(spec.name)

    def exec_module(self, module: Any) -> None:
        pass


def install(names: Iterable[str], session: Callable[[], Session]) -> RemoteFinder:
    finder = RemoteFinder(names, session)
    sys.meta_path.insert(0, finder)
    for name in list(sys.modules):
        if name.partition(".")[0] in finder.names:
            del sys.modules[name]  # a local copy imported before must not shadow the remote one
    return finder
