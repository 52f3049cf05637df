"""The script's code as the worker holds it: its modules' namespaces, and the
functions and classes the client shipped, by the client's id.

A function of the script's is built against its module's namespace in the
worker (:mod:`tether.acceptor._namespace`: names paged in from the client), so
that it reads the script's globals as it would locally. Each function and class
is kept both ways, by the client's id (later calls name it by that id) and by
identity (the worker's pickler sends it back as that id), and is registered to
travel by value to the processes the worker spawns (:mod:`._spawn`).
"""

from __future__ import annotations

import functools
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

from tether._errors import ProtocolError
from tether.acceptor._clientobj import ClientObject
from tether.acceptor._namespace import Namespaces
from tether.acceptor._spawn import spawn_by_value
from tether.wire._requests import RequestFn, WriteGlobal

#: Where a module of the script's comes from: (name, file, package, is package).
ModuleInfo = tuple[str, str | None, str | None, bool]


class ScriptCode:
    """The script's modules, functions and classes in one worker (see the module
    docstring). ``client_object`` gives the worker's view of an object the
    client lends (a ``nonlocal`` variable's cell)."""

    def __init__(self, request: RequestFn, client_object: Callable[[int], ClientObject]) -> None:
        self.request = request
        self._client_object = client_object
        self.namespaces = Namespaces(request)
        #: Files of code shipped from the client: ``open`` in it opens the client's.
        self.client_files: set[str] = set()
        self.objs: dict[int, Any] = {}  # the client's id -> function or class
        self.ids: dict[int, int] = {}  # id(function or class) -> the client's id

    def _register(self, oid: int, obj: Any) -> Any:
        self.objs[oid] = obj
        self.ids[id(obj)] = oid
        spawn_by_value(obj)
        return obj

    def ref(self, oid: int) -> Any:
        try:
            return self.objs[oid]
        except KeyError:
            raise ProtocolError(
                f"the client referred to its function or class #{oid}, which never arrived"
            ) from None

    def module(self, info: ModuleInfo) -> Any:
        self.namespaces.make(*info)
        return sys.modules[info[0]]

    def function(
        self,
        oid: int,
        info: ModuleInfo,
        code: types.CodeType,
        closure: tuple[types.CellType, ...] | None,
    ) -> types.FunctionType:
        """A function of the script's, with its module's namespace as globals
        (cloudpickle's state setter fills in the rest)."""
        namespace = self.namespaces.make(*info)
        self.client_files.add(code.co_filename)
        fn = types.FunctionType(code, namespace, code.co_name, None, closure)
        return self._register(oid, fn)  # type: ignore[no-any-return]

    def cls(
        self,
        oid: int,
        info: ModuleInfo,
        maker: Callable[..., type],
        args: tuple[Any, ...],
    ) -> type:
        """A plain class of the script's (cloudpickle's skeleton; its state setter
        fills in the body)."""
        self.namespaces.make(*info)
        return self._register(oid, maker(*args))  # type: ignore[no-any-return]

    def synced(
        self,
        oid: int,
        fn: types.FunctionType,
        module: str,
        names: tuple[str, ...],
        cells: tuple[tuple[int, int], ...] = (),
    ) -> Any:
        """Wrap a shipped function that rebinds the script's variables (module
        globals with ``global``, enclosing variables with ``nonlocal``): the
        globals it rebinds are written back to the client after each call, and
        the enclosing variables read from the client before and written after."""
        namespace = fn.__globals__
        request = self.request
        closure = fn.__closure__ or ()
        remote_cells = [(closure[i], self._client_object(coid)) for i, coid in cells]

        @functools.wraps(fn)
        def synced(*args: Any, **kwargs: Any) -> Any:
            for cell, theirs in remote_cells:
                cell.cell_contents = theirs.cell_contents
            try:
                return fn(*args, **kwargs)
            finally:
                for name in names:
                    present = dict.__contains__(namespace, name)
                    value = dict.get(namespace, name) if present else None
                    request(WriteGlobal(module, name, present, value))
                for cell, theirs in remote_cells:
                    theirs.cell_contents = cell.cell_contents

        return self._register(oid, synced)

    def set_names(self, meta: bytes, loads: Callable[[bytes], Any]) -> None:
        """Apply the script's rebinds (a namespace entry of the call stream),
        each value decoded with ``loads``."""
        try:
            entries = pickle.loads(meta)
            updates = [
                (str(module), str(name), blob if blob is None else bytes(blob))
                for module, items in entries
                for name, blob in items
            ]
        except Exception as exc:
            raise ProtocolError(f"malformed namespace update: {exc!r}") from None
        for module, name, blob in updates:
            if blob is None:
                self.namespaces.forget(module, name)
                continue
            try:
                value = loads(blob)
            except Exception:  # read it again where it is used, and fail there
                self.namespaces.forget(module, name)
            else:
                self.namespaces.update(module, name, value)
