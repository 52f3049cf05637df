"""What a value is to the client's picklers: a reference, code to ship, the script's
shared state, or a plain value.

:func:`ref_reduce` names the worker's objects (proxies, mirror classes, remote modules);
:func:`needs_value` says which code the worker cannot import by name (the script's own,
local functions); :func:`is_shared` and :func:`share_global` say which of the script's
objects stay the script's, reached from the worker (:class:`_Shared`), instead of
travelling by value. The picklers that use these answers are in
:mod:`tether.client._shipcode` (the script's code) and :mod:`tether.client._codec`
(call arguments).
"""

from __future__ import annotations

import argparse
import random
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether import _refs
from tether.client._namespace import is_script_module
from tether.client._proxy import (
    LazyMethod,
    RemoteModule,
    RemoteObject,
    RemoteType,
    _TupleMirror,
)

if TYPE_CHECKING:
    pass


_BUILTIN_FUNCTION = types.BuiltinFunctionType


def ref_reduce(obj: Any) -> Any:
    """The reduction of a proxy-like object, or None for anything else."""
    if isinstance(obj, RemoteObject):
        return (_refs.ref, (obj._t_id,))
    if isinstance(obj, RemoteType):
        hid = obj.__dict__.get("_t_cid")
        if hid is None:  # (the class of a result: the worker knows it by its type id)
            return (_refs.type_id, (obj._t_tid,))
        return (_refs.ref, (hid,))
    if isinstance(obj, RemoteModule):
        return (_refs.ref, (obj._t_id,))
    if isinstance(obj, LazyMethod):
        return (_refs.attr, (obj._t_obj._t_id, obj._t_name))
    if isinstance(obj, _TupleMirror):
        return (_refs.tuple_of, (type(obj)._t_hid, tuple(obj)))
    if isinstance(obj, type) and "_t_lineage" in obj.__dict__:
        return (_refs.exc_class, (obj.__dict__["_t_lineage"],))
    return None


def needs_value(obj: Any) -> bool:
    """Code the worker cannot import by name and must receive by value: the
    script's own (``__main__`` and the user's modules), and local functions."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", "")
    return (
        module is None
        or "<locals>" in qualname
        or "<lambda>" in qualname
        or is_script_module(module)
    )


_SHARED = (list, dict, set)


def is_script_object(value: Any) -> bool:
    """An instance of one of the script's own (mutable) classes.

    Remote code holds such objects by reference, as Python would: a meter
    passed to a remote constructor is the script's meter. Immutable values
    (frozen dataclasses, named tuples) still travel by value.
    """
    t = type(value)
    # __main__ only: objects of the script's packages travel by value, since
    # remote code often hands them to processes the worker forks (a DataLoader
    # dataset holding a config), which cannot reach the client.
    if type(t) is not type or getattr(t, "__module__", "") != "__main__":
        return False
    if isinstance(value, (tuple, BaseException)):
        return False
    if _own_pickling(t):
        return False  # the class says how it pickles: a value
    params = getattr(t, "__dataclass_params__", None)
    return not (params is not None and params.frozen)


_OBJECT_REDUCE: Any = object.__reduce__
_OBJECT_REDUCE_EX: Any = object.__reduce_ex__


def _own_pickling(t: Any) -> bool:
    """True if class ``t`` (or a base other than object) defines how it pickles."""
    return bool(t.__reduce__ is not _OBJECT_REDUCE or t.__reduce_ex__ is not _OBJECT_REDUCE_EX)


def is_shared(value: Any) -> bool:
    """Script state that shipped callbacks must change in place, not copy: the
    script's lists, dicts and sets, instances of its own classes, numpy arrays."""
    t = type(value)
    if t in _SHARED:
        return True
    if getattr(t, "__module__", "") == "numpy" and t.__name__ == "ndarray":
        return True
    return is_script_object(value)


_IMMUTABLE = frozenset(
    {int, float, bool, complex, str, bytes, type(None), range, slice, type(Ellipsis),
     type(NotImplemented)}
)  # fmt: skip
#: Modules whose state is the process's: the worker must use the script's.
_STATEFUL_MODULES = frozenset({"random"})
#: Attribute namespaces scripts keep their settings in, and change in place.
_NAMESPACES = frozenset({argparse.Namespace, types.SimpleNamespace})


def pickles_as_own_global(value: Any, module: str) -> bool:
    """True if ``value``, a global of the script's module ``module``, pickles as a
    reference to a global of that module (a ``NewType``, a ``ParamSpec``, a
    named singleton): the worker, paging it in, would meet the same reference
    and page it in again. Such a value is lent instead. Not a ``TypeVar``,
    which the code pickler sends by value; not the module's functions and
    classes, which travel as code."""
    t = type(value)
    if t is typing.TypeVar or isinstance(value, type) or t is types.FunctionType:
        return False
    if getattr(value, "__module__", None) != module:
        return False
    try:
        return isinstance(value.__reduce_ex__(5), str)
    except Exception:
        return False


def share_global(value: Any, export: Callable[[Any], int]) -> Any:
    """A module global as the worker's code should hold it.

    Immutable data travels by value; code, classes, modules and proxies as
    themselves (the picklers make them references). Objects that hold state the
    script changes in place stay the script's, reached from the worker: its
    lists, dicts and sets, numpy arrays, instances of its own classes, attribute
    namespaces (``args.lr = 0.1`` is what ``forward`` reads next), and Python's
    ``random`` (the module, a ``random.Random`` and their bound methods), so
    that the generator is the one the script seeded. Any other object (a
    ``nullcontext()``, a ``functools.partial``) travels by value, as a call
    argument would.
    """
    t = type(value)
    if t in _IMMUTABLE or type(t) is RemoteType:
        return value
    if t is types.ModuleType:
        if value.__name__ in _STATEFUL_MODULES:
            return _Shared(export(value))
        return value
    if is_shared(value) or t in _NAMESPACES or isinstance(value, random.Random):
        return _Shared(export(value))
    if t is _BUILTIN_FUNCTION or t is types.MethodType:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, random.Random):
            return _Shared(export(value))  # random.random, random.choice
    return value


class _Shared:
    """Marks a script container that shipped code must change in place."""

    __slots__ = ("oid",)

    def __init__(self, oid: int) -> None:
        self.oid = oid

    def __reduce__(self) -> Any:
        return (_refs.client_obj, (self.oid,))
