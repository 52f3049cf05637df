"""Answers to the worker's requests: the script's names, modules and files,
and the objects the session lends the worker.

The worker asks only for what it lacks. Modules are served only when they are
the user's own code: a module that lives in the standard library or in an
installed distribution is never shipped (the worker must have its own copy),
which also keeps optional-import probes of frameworks from pulling client code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import linecache
import os
import sys
from collections.abc import Callable
from typing import Any

from tether.client._kinds import _Shared, is_shared, pickles_as_own_global, share_global
from tether.client._namespace import ScriptNamespaces, is_user_file
from tether.wire._requests import (
    FlushOutput,
    IsDir,
    ListDir,
    ModuleSource,
    ObjectAttr,
    ObjectCall,
    ObjectSetAttr,
    ObjectSnapshot,
    ReadFile,
    ReadGlobal,
    Source,
    Stat,
    WorkerRequest,
    WriteFile,
    WriteGlobal,
)


def user_module_source(name: str, remote: frozenset[str]) -> tuple[str, str, bool, str] | None:
    """(filename, source, is_package, sha256) of one of the user's own modules."""
    if name.partition(".")[0] in remote:
        return None
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    origin = os.path.realpath(spec.origin)
    if not is_user_file(origin):
        return None
    if module is None:
        # The worker's mirror of the module is the client's module: import it
        # here, once, as the script's own import would have (the worker never
        # runs the script's module code itself).
        try:
            importlib.import_module(name)
        except Exception:
            return None
    try:
        with open(origin, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    source = raw.decode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    return spec.origin, source, spec.submodule_search_locations is not None, digest


def serve_request(
    request: WorkerRequest,
    remote: frozenset[str],
    exported: dict[int, Any],
    share: Callable[[Any], Any] | None = None,
) -> Any:
    """Answer one of the worker's requests about the client's objects, modules
    and files (the session answers those about the script's namespaces);
    exceptions go back to the worker."""
    match request:
        case ObjectAttr(oid, name):
            value = getattr(exported[oid], name)
            if callable(value) and not isinstance(value, type):
                return (True, None)
            return (False, share(value) if share is not None else value)
        case ObjectSetAttr(oid, name, value):
            setattr(exported[oid], name, value)
            return None
        case ObjectCall(oid, "__next__", ()):  # a lent iterator's next item
            it = exported.get(oid)
            if it is None:
                raise StopIteration  # lent, ran out and let go
            try:
                return next(it)
            except StopIteration:
                del exported[oid]  # nothing to lend any more
                raise
        case ObjectCall(oid, method, args, kwargs):
            return getattr(exported[oid], method)(*args, **(kwargs or {}))
        case ObjectSnapshot(oid):
            return list(exported[oid])
        case ModuleSource(name):
            return user_module_source(name, remote)
        case ListDir(path):
            return os.listdir(path)
        case Stat(path):
            return os.stat(path)
        case IsDir(path):
            return os.path.isdir(path)
        case ReadFile(path):
            with open(path, "rb") as f:
                return f.read()
        case WriteFile(path, data, append):
            with open(path, "ab" if append else "wb") as f:
                f.write(data)
            return None
        case FlushOutput():
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # (a closed or odd stream: nothing to do)
                    stream.flush()
            return None
    raise ValueError(f"unknown request {request!r}")


class Lender:
    """What one session lends its worker: local objects by id (open files,
    shared script state), the script's namespaces, the user's modules and
    files; answers the worker's requests about them."""

    def __init__(self, remote_modules: frozenset[str], namespaces: ScriptNamespaces) -> None:
        self.remote_modules = remote_modules
        self.namespaces = namespaces
        self.exported: dict[int, Any] = {}

    def export(self, obj: Any) -> int:
        """Lend a local object (an open file) to the worker for the session."""
        oid = id(obj)
        self.exported[oid] = obj
        return oid

    def share(self, value: Any) -> Any:
        """``value`` as the worker should see it: shared if it is script state."""
        return _Shared(self.export(value)) if is_shared(value) else value

    def serve(self, request: WorkerRequest) -> Any:
        """The answer to ``request``; its exceptions go back to the worker."""
        if type(request) is ReadGlobal:  # the worker reads a name of a script module
            found, value = self.namespaces.page(request.module, request.name)
            if not found:
                return (False, None)
            if pickles_as_own_global(value, request.module):
                return (True, _Shared(self.export(value)))  # UserId = NewType(...): lent
            return (True, share_global(value, self.export))
        if type(request) is WriteGlobal:  # shipped code rebound a name of a script module
            self.namespaces.wrote(request.module, request.name, request.value, request.present)
            return None
        if type(request) is Source:  # inspect, linecache and tracebacks in the worker
            filename = request.filename
            if not isinstance(filename, str) or not is_user_file(filename):
                return None
            lines = linecache.getlines(filename)
            return "".join(lines) if lines else None
        return serve_request(request, self.remote_modules, self.exported, self.share)
