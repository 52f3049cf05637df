"""A worker's warnings and exceptions, raised here as the script would see them locally."""

from __future__ import annotations

import contextlib
import linecache
import os
import pickle
import sys
import warnings
from typing import Any

from tether._errors import ProtocolError, RemoteTraceback
from tether.client._proxy import RemoteModule, exception_class
from tether.wire._messages import decode_warning


class Warnings:
    """Re-issues the worker's warnings under the script's filters."""

    def __init__(self) -> None:
        # The "default"/"module" de-duplication of warnings from modules the
        # script does not have itself (torch's own): one registry per module.
        self._registries: dict[str, dict[Any, Any]] = {}

    def reissue(self, meta: bytes) -> Exception | None:
        """Re-issue a worker's warning here, so that the script's filters,
        ``catch_warnings`` and de-duplication decide what becomes of it.

        Returns the exception it turned into (``-W error``), which the session
        raises once the reply it is waiting for has arrived; a malformed
        warning raises ProtocolError.
        """
        w = decode_warning(meta)
        try:
            category = exception_class(w.category)
        except Exception as exc:
            raise ProtocolError(
                f"warning of an unusable category {w.category[0]}: {exc!r}"
            ) from exc
        if not issubclass(category, Warning):
            raise ProtocolError(f"warning of a category that is no Warning: {w.category[0]}")
        module_globals: dict[str, Any] | None = None
        if w.filename:
            filename, lineno, module = w.filename, w.lineno, w.module
            registry = self._warning_registry(module)
            if w.line and lineno and not linecache.getline(filename, lineno):
                module_globals = {"__name__": module, "__loader__": _SourceLine(lineno, w.line)}
        else:  # attributed to the caller of the remoted function: the script's line
            frame = _script_frame()
            if frame is None:
                where: dict[str, Any] = sys.__dict__
                filename, lineno = "sys", 0
            else:
                where = frame.f_globals
                filename, lineno = frame.f_code.co_filename, frame.f_lineno or 0
            module = str(where.get("__name__", "<string>"))
            registry = where.setdefault("__warningregistry__", {})
        try:
            warnings.warn_explicit(
                w.message, category, filename, lineno, module, registry, module_globals
            )
        except Exception as exc:
            return exc
        return None

    def _warning_registry(self, module: str) -> dict[Any, Any]:
        local = sys.modules.get(module)
        if local is not None and not isinstance(local, RemoteModule):
            namespace = getattr(local, "__dict__", None)
            if isinstance(namespace, dict):
                return namespace.setdefault("__warningregistry__", {})  # type: ignore[no-any-return]
        return self._registries.setdefault(module, {})


def rebuild_exception(meta: bytes) -> BaseException:
    """A worker's exception as the script should see it: its class (a mirror
    if the client lacks it), arguments and state, the remote traceback as its
    cause."""
    info = pickle.loads(meta)
    cls = exception_class(tuple(info["lineage"]))
    args: Any = (info["message"],)
    state: Any = None
    if info["args"] is not None:
        with contextlib.suppress(Exception):
            args, state = pickle.loads(info["args"])
    exc: BaseException
    try:
        exc = cls(*args)
    except Exception:
        # A constructor with other parameters (like pickle, rebuild without it).
        exc = cls.__new__(cls)
        exc.args = tuple(args)
    if isinstance(state, dict):
        with contextlib.suppress(Exception):
            exc.__dict__.update(state)
    exc.__cause__ = RemoteTraceback(info["traceback"])
    exc.__suppress_context__ = True
    return exc


_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _script_frame() -> Any:
    """The innermost frame outside Tether: the script's line that is syncing."""
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_TETHER_DIR):
        frame = frame.f_back
    return frame


class _SourceLine:
    """A stand-in loader that knows one line of a file the client does not have,
    so that a worker's warning shows its source line as it would locally."""

    def __init__(self, lineno: int, line: str) -> None:
        self._source = "\n" * (lineno - 1) + line

    def get_source(self, name: str) -> str:
        return self._source
