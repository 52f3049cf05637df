"""The script's modules that the worker lacks, imported from the client on demand.

:class:`ClientModuleFinder` sits last on the worker's ``sys.meta_path``: it is asked only
when nothing local has the module, and asks the client for its source (one
``ModuleSource`` request). The module it makes is the worker's lazy mirror of the
client's (:mod:`tether.acceptor._namespace`), whose names are paged in when read, or,
without namespaces, the source compiled once per content hash and run here. The files it
names are the client's: remote code that opens them reads the client's copy
(:mod:`tether.acceptor._files`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

from tether.wire._requests import ModuleSource, RequestFn

__all__ = ["ClientModuleFinder"]


class ClientModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the script's modules that the worker lacks, on demand.

    Last on ``sys.meta_path``: only asked when nothing local has the module.
    With ``namespaces`` (the session's, see :mod:`tether.acceptor._namespace`)
    the module is the worker's lazy mirror of the client's: its code is not run
    here, its names are paged in from the client's module when read, so both
    halves share one module. Without, the source is compiled (once per content
    hash) and run here.
    """

    def __init__(self, request: RequestFn, client_files: set[str], namespaces: Any = None) -> None:
        self._request = request
        self._client_files = client_files
        self._namespaces = namespaces
        self._missing: set[str] = set()
        self._sources: dict[str, tuple[str, str, bool]] = {}
        self._code: dict[str, Any] = {}
        self.active = True

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not self.active or fullname in self._missing:
            return None
        try:
            found = self._request(ModuleSource(fullname))
        except Exception:
            return None
        if found is None:
            self._missing.add(fullname)
            return None
        filename, source, is_package, digest = found
        self._sources[fullname] = (filename, source, is_package)
        self._client_files.add(filename)
        spec = importlib.machinery.ModuleSpec(
            fullname, self, origin=filename, is_package=is_package
        )
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = []
        spec.loader_state = digest
        return spec

    def get_source(self, fullname: str) -> str | None:
        found = self._sources.get(fullname)
        return found[1] if found is not None else None

    def create_module(self, spec: Any) -> Any:
        if self._namespaces is None:
            return None
        filename, _, is_package = self._sources[spec.name]
        package = spec.name if is_package else spec.name.rpartition(".")[0]
        self._namespaces.make(spec.name, filename, package, is_package)
        return sys.modules[spec.name]

    def exec_module(self, module: Any) -> None:
        if self._namespaces is not None:
            return  # a mirror: its names come from the client's module
        filename, source, _ = self._sources[module.__name__]
        digest = module.__spec__.loader_state
        code = self._code.get(digest)
        if code is None:
            code = self._code[digest] = compile(source, filename, "exec", dont_inherit=True)
        module.__file__ = filename
        exec(code, module.__dict__)
