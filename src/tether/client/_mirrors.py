"""The worker's objects as the client holds them: type descriptors, mirror
classes, proxy modules, and the resolvers the unpickler calls for each kind of
reference in a reply (:mod:`tether._refs`).

Mirrors are built once per remote type (their bases first) and shared by every
proxy of it; classes and modules are interned by handle, so that a remote
class or module is one object on the client, as it is in the worker.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.client._namespace import LOCAL_MODULES
from tether.client._proxy import (
    RemoteModule,
    RemoteObject,
    RemoteType,
    build_mirror,
    exception_class,
    tuple_mirror,
)
from tether.wire._ops import TypeDesc

if TYPE_CHECKING:
    from tether.client._remoting import Remoting

_new: Any = object.__new__
_weakref = weakref.ref
_set_s: Any = RemoteObject.__dict__["_t_s"].__set__
_set_id: Any = RemoteObject.__dict__["_t_id"].__set__


class Mirrors:
    """One session's table of the worker's types, classes and modules.

    ``owner`` is what every proxy made here holds as its session.
    """

    def __init__(self, owner: Remoting, remote_modules: frozenset[str]) -> None:
        self.owner = owner
        self.remote_modules = remote_modules
        self.types: dict[int, TypeDesc] = {}
        self.by_tid: dict[int, RemoteType] = {0: RemoteObject}  # type: ignore[dict-item]
        self._modules: dict[int, RemoteModule] = {}
        self._classes: dict[int, RemoteType] = {}
        self._interned: dict[int, RemoteObject] = {}
        #: The proxies of the worker's handles, by id, while the script holds them,
        #: and how many times each was received (when more than once).
        self._live: dict[int, Any] = {}
        self._receipts: dict[int, int] = {}
        #: Called with each mirror class made, and its descriptor (see Session.on_mirror).
        self.specialize: Callable[[TypeDesc, RemoteType], None] | None = None

    def resolvers(self) -> dict[str, Callable[..., Any]]:
        """The unpickler's resolvers for the references these objects answer."""
        owner = self.owner

        def mirror_of_tuple(hid: int, tid: int, items: Any, r: Any, s: Any) -> Any:
            return tuple_mirror(owner, hid, tid, items, r, s)

        return {
            "handle": self.handle,
            "interned": self.interned,
            "cls": self.cls,
            "module": self.module,
            "exc_class": exception_class,
            "np_scalar": _np_scalar,
            "tuple_mirror": mirror_of_tuple,
        }

    def mirror(self, tid: int) -> RemoteType:
        m = self.by_tid.get(tid)
        if m is None:
            desc = self.types[tid]
            bases = tuple(self.mirror(b) for b in desc.bases)
            m = self.by_tid[tid] = build_mirror(self.owner, desc, bases)
            if self.specialize is not None:
                self.specialize(desc, m)
        return m

    def handle(self, hid: int, tid: int) -> RemoteObject:
        if hid < 0:
            # The worker's numbering (ids it chose: results of waited calls) names
            # one object by one id while the script holds it: the same proxy, so
            # `m.weight is m.weight`, `id(p)` and sets of parameters hold. Each
            # receipt is released when the proxy dies (see releasing).
            ref = self._live.get(hid)
            obj = ref() if ref is not None else None
            if obj is not None:
                self._receipts[hid] = self._receipts.get(hid, 1) + 1
                if type(obj)._t_tid != tid:  # its class changed (obj.__class__ = ...)
                    self.retype(obj, tid)
                return obj  # type: ignore[no-any-return]
        obj = _new(self.mirror(tid))
        _set_s(obj, self.owner)
        _set_id(obj, hid)
        if hid < 0:
            self._live[hid] = _weakref(obj)
        return obj  # type: ignore[no-any-return]

    def retype(self, proxy: RemoteObject, tid: int) -> None:
        """Give ``proxy`` the mirror class of ``tid``: the worker says the object is
        of that class (a proxy of another layout keeps its own)."""
        with contextlib.suppress(TypeError):
            object.__setattr__(proxy, "__class__", self.mirror(tid))

    def releasing(self, release: Callable[[int], None]) -> Callable[[int], None]:
        """``release`` (what a dying proxy calls), once for every time the worker
        sent the handle: the worker frees it when the last is released, so a
        release in flight cannot free what a reply sent meanwhile names again."""
        live, receipts = self._live, self._receipts

        def forget(hid: int) -> None:
            if hid < 0:
                live.pop(hid, None)
                for _ in range(receipts.pop(hid, 1) - 1):
                    release(hid)
            release(hid)

        return forget

    def interned(self, hid: int, tid: int) -> RemoteObject:
        obj = self._interned.get(hid)
        if obj is None:
            obj = self._interned[hid] = self.handle(hid, tid)
        return obj

    def cls(self, hid: int, tid: int) -> RemoteType:
        cls = self._classes.get(hid)
        if cls is None:
            cls = self._classes[hid] = self.mirror(tid)
            type.__setattr__(cls, "_t_cid", hid)
        return cls

    def module(self, hid: int, name: str) -> RemoteModule:
        mod = self._modules.get(hid)
        if mod is None:
            mod = self._modules[hid] = RemoteModule(self.owner, hid, name)
            top = name.partition(".")[0]
            if top in self.remote_modules and top not in LOCAL_MODULES:
                sys.modules.setdefault(name, mod)
        return mod

    def find_module(self, name: str) -> RemoteModule | None:
        """The proxy module of the worker's module ``name``, if one was made."""
        for mod in self._modules.values():
            if mod.__name__ == name:
                return mod
        return None


def _np_scalar(dtype: str, raw: bytes) -> Any:
    """A number of the remote numpy as a scalar of the client's own numpy."""
    import numpy

    return numpy.frombuffer(raw, dtype=numpy.dtype(dtype))[0]
