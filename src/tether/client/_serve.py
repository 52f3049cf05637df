"""Answers to the worker's requests: the script's modules and the user's files.

The worker asks only for what it lacks. Modules are served only when they are
the user's own code: a module that lives in the standard library or in an
installed distribution is never shipped (the worker must have its own copy),
which also keeps optional-import probes of frameworks from pulling client code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from tether.client._namespace import is_user_file
from tether.wire._requests import (
    CALLABLE,
    IsDir,
    ListDir,
    ModuleSource,
    ObjectAttr,
    ObjectCall,
    ObjectSetAttr,
    ObjectSnapshot,
    ReadFile,
    Stat,
    WorkerRequest,
    WriteFile,
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
                return CALLABLE
            return share(value) if share is not None else value
        case ObjectSetAttr(oid, name, value):
            setattr(exported[oid], name, value)
            return None
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
    raise ValueError(f"unknown request {request!r}")
