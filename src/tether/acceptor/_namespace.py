"""The worker's side of the script's module namespaces.

Code of the script's own modules runs in the worker against one
:class:`ScriptNamespace` per module: a dict that starts nearly empty and pages
in, from the client, each name the code reads that it lacks (the protocol and
the coherence rule are in :mod:`tether.client._namespace`). Each namespace has a
:class:`ScriptModule` in ``sys.modules`` under the module's name (``__main__``
included), so that pickle finds the script's classes by name, ``inspect`` and
``linecache`` find their source (fetched from the client: the worker may have
no copy of the script's files), and tracebacks and warnings name the script's
files and lines.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any

from tether._errors import SessionError
from tether.wire._requests import ReadGlobal, RequestFn, Source

_MISSING: Any = object()


class NameUnavailable(SessionError, NameError):
    """A name of the script's could not be brought to the worker (it does not
    pickle, or the worker cannot import what it needs)."""


class ScriptNamespace(dict[str, Any]):
    """The globals of one of the script's modules in the worker.

    Reading a missing name (what ``LOAD_GLOBAL`` does when the globals are not
    an exact dict) asks the client for it. A name the script lacks resolves to
    the worker's builtin of that name, or raises ``KeyError`` (so Python raises
    ``NameError``, as locally).
    """

    __slots__ = ("_t_module", "_t_paging", "_t_request")

    def __init__(self, module: str, request: RequestFn) -> None:
        super().__init__()
        self._t_module = module
        self._t_request = request
        self._t_paging: set[str] = set()  # names being paged in now

    def __missing__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise KeyError(name)  # module dunders are set here, never paged
        paging = self._t_paging
        if name in paging:
            # Its value came as a reference to this very name (an object that
            # pickles by its module and name): paging it in again would never end.
            raise NameUnavailable(
                f"name {name!r} of the script's module {self._t_module} cannot be used by "
                "remote code: its value is sent as a reference to the name itself"
            )
        paging.add(name)
        try:
            found, value = self._t_request(ReadGlobal(self._t_module, name))
        except NameUnavailable:
            raise  # (said once, not once per level of what needed it)
        except Exception as exc:
            raise NameUnavailable(
                f"name {name!r} of the script's module {self._t_module} cannot be used by "
                f"remote code: {exc}"
            ) from exc
        finally:
            paging.discard(name)
        if found:
            self[name] = value
            return value
        value = getattr(builtins, name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        self[name] = value
        return value

    def __repr__(self) -> str:
        return f"<namespace of the script's module {self._t_module}>"

    def __reduce__(self) -> Any:
        raise TypeError("the namespace of a script module cannot be pickled")


class ClientSource:
    """A loader that only answers ``get_source``: the client's text of a file."""

    def __init__(self, request: RequestFn, filename: str) -> None:
        self._request = request
        self._filename = filename

    def get_source(self, name: str) -> str | None:
        try:
            text = self._request(Source(self._filename))
        except Exception:
            return None
        return text if isinstance(text, str) else None


class ScriptModule(types.ModuleType):
    """A script module as the worker sees it: attributes are its namespace's
    names, paged in on first use."""

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        namespace = self.__dict__["_t_namespace"]
        try:
            return namespace[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


class Namespaces:
    """The worker's namespaces, one per script module, made on first use."""

    def __init__(self, request: RequestFn) -> None:
        self._request = request
        self._namespaces: dict[str, ScriptNamespace] = {}

    def get(self, module: str) -> ScriptNamespace | None:
        return self._namespaces.get(module)

    def make(
        self,
        module: str,
        file: str | None = None,
        package: str | None = None,
        is_package: bool = False,
    ) -> ScriptNamespace:
        """The namespace of ``module`` (made, with its module, if new)."""
        namespace = self._namespaces.get(module)
        if namespace is not None:
            return namespace
        namespace = self._namespaces[module] = ScriptNamespace(module, self._request)
        mod = ScriptModule(module)
        seed: dict[str, Any] = {
            "__name__": module,
            "__builtins__": builtins,
            "__package__": package if package is not None else module.rpartition(".")[0],
            "__spec__": None,
            "__loader__": ClientSource(self._request, file) if file else None,
        }
        if file:
            seed["__file__"] = file
        if is_package:
            seed["__path__"] = []
        if module == "__main__":
            # multiprocessing's spawn re-runs the worker, not the script, in its
            # children: it reads the name of the main module from its spec.
            original = sys.modules.get("__main__")
            seed["__spec__"] = getattr(original, "__spec__", None)
        namespace.update(seed)
        mod.__dict__.update(seed)
        mod.__dict__["_t_namespace"] = namespace
        sys.modules[module] = mod
        return namespace

    def update(self, module: str, name: str, value: Any) -> None:
        namespace = self._namespaces.get(module)
        if namespace is not None:
            dict.__setitem__(namespace, name, value)

    def forget(self, module: str, name: str) -> None:
        namespace = self._namespaces.get(module)
        if namespace is not None:
            namespace.pop(name, None)
