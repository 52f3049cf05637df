"""The client's side of pickling: references out, proxies in.

Arguments go to the worker by value, except proxies (sent as references to the
worker's objects) and code the worker cannot import: functions, lambdas and
classes of ``__main__`` or local scopes travel by value through cloudpickle.
Everything else (functions of importable modules, the script's own modules)
travels by reference; the worker imports it, fetching the script's modules from
the client when it has to.

Plain calls (remote objects, module-level builtins and plain values only) skip
pickle: the session writes them in the compact form of
:mod:`tether.wire._compact`, at half the cost.
"""

from __future__ import annotations

import argparse
import importlib
import io
import marshal
import pickle
import random
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle
from cloudpickle.cloudpickle import (  # the state setters cloudpickle's own reductions use
    _class_setstate,
    _dynamic_class_reduce,
    _function_setstate,
)

from tether import _refs
from tether._code import global_names
from tether.client._namespace import is_script_module, module_info, module_namespace
from tether.client._proxy import (
    LazyMethod,
    RemoteModule,
    RemoteObject,
    RemoteType,
    _TupleMirror,
)

if TYPE_CHECKING:
    from tether.client._remoting import Remoting


_ref = _refs.ref
_BUILTIN_FUNCTION = types.BuiltinFunctionType
_ANCHORS = frozenset(getattr(_refs, name) for name in _refs.NAMES)


def ref_reduce(obj: Any) -> Any:
    """The reduction of a proxy-like object, or None for anything else."""
    if isinstance(obj, RemoteObject):
        return (_refs.ref, (obj._t_id,))
    if isinstance(obj, RemoteType):
        hid = obj.__dict__.get("_t_cid")
        if hid is None:
            raise pickle.PicklingError(
                f"remote class {obj.__qualname__} has no handle yet; "
                "use it through its module attribute first"
            )
        return (_refs.ref, (hid,))
    if isinstance(obj, RemoteModule):
        return (_refs.ref, (obj._t_id,))
    if isinstance(obj, LazyMethod):
        return (_refs.attr, (obj._t_obj._t_id, obj._t_name))
    if isinstance(obj, _TupleMirror):
        return (_refs.tuple_mirror, (type(obj)._t_hid, tuple(obj)))
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


def _stored_globals(code: types.CodeType) -> set[str]:
    """Names a function (or code nested in it) rebinds with ``global``."""
    import dis

    names = {
        str(ins.argval)
        for ins in dis.get_instructions(code)
        if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL")
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _stored_globals(const)
    return names


def _rebound_cells(fn: types.FunctionType) -> tuple[int, ...]:
    """Indexes of the closure cells ``fn`` rebinds (``nonlocal n; n += 1``)."""
    import dis

    code = fn.__code__
    if not fn.__closure__:
        return ()
    names = {
        str(ins.argval)
        for ins in dis.get_instructions(code)
        if ins.opname in ("STORE_DEREF", "DELETE_DEREF")
    }
    return tuple(i for i, name in enumerate(code.co_freevars) if name in names)


class CodeContext:
    """What a session lends its picklers for shipping the script's code.

    ``export(obj)`` lends a local object to the worker and returns its id;
    :attr:`sent` holds the ids of the script's functions and classes the worker
    has already built, which then travel as a bare reference. An id is marked
    sent while it is pickled; a pickle that fails takes its marks back.
    """

    def __init__(self, export: Callable[[Any], int]) -> None:
        self.export = export
        self.sent: set[int] = set()
        self._log: list[int] = []

    def mark(self, oid: int) -> None:
        self.sent.add(oid)
        self._log.append(oid)

    def dump(self, pickler: pickle.Pickler, obj: Any) -> None:
        """``pickler.dump(obj)``; if it fails, what it marked sent is not."""
        log = self._log
        start = len(log)
        try:
            pickler.dump(obj)
        except BaseException:
            for oid in log[start:]:
                self.sent.discard(oid)
            raise
        finally:
            if len(log) > start:
                del log[start:]

    def share(self, value: Any) -> Any:
        return _Shared(self.export(value)) if is_shared(value) else value


def share_state(
    fn: types.FunctionType, export: Callable[[Any], int], *, copy: bool = False
) -> types.FunctionType:
    """A copy of ``fn`` whose lists, dicts and sets (globals and closure
    variables) are the script's own objects, reached from the worker, instead
    of copies. For code that is not the script's own module code (a local
    function of a library), which travels with a snapshot of its globals."""
    changed = False
    g = fn.__globals__
    new_globals: dict[str, Any] = {
        "__name__": g.get("__name__"),
        "__builtins__": g.get("__builtins__"),
    }
    for name in global_names(fn.__code__):
        if name in g:
            value = g[name]
            if is_shared(value):
                value = _Shared(export(value))
                changed = True
            new_globals[name] = value
    cells = _shared_cells(fn, export)
    changed = changed or cells is not fn.__closure__
    if not changed and not copy:
        return fn
    new = types.FunctionType(fn.__code__, new_globals, fn.__name__, fn.__defaults__, cells)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    new.__dict__.update(fn.__dict__)
    return new


def _shared_cells(fn: types.FunctionType, export: Callable[[Any], int]) -> Any:
    """``fn``'s closure with the script's containers shared, not copied (the
    same tuple if there are none)."""
    cells = fn.__closure__
    if not cells:
        return cells
    new_cells = []
    changed = False
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (e.g. __class__ before the class exists)
            new_cells.append(cell)
            continue
        if is_shared(value):
            new_cells.append(types.CellType(_Shared(export(value))))
            changed = True
        else:
            new_cells.append(cell)
    return tuple(new_cells) if changed else cells


def _copy_function(fn: types.FunctionType) -> types.FunctionType:
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                             fn.__closure__)  # fmt: skip
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    new.__module__ = fn.__module__
    new.__dict__.update(fn.__dict__)
    return new


def script_namespace_of(obj: Any) -> tuple[str, dict[str, Any]] | None:
    """(module name, globals) when ``obj`` is a function or class of a script
    module whose namespace the worker can mirror, else None."""
    if type(obj) is types.FunctionType:
        g = obj.__globals__
        name = g.get("__name__")
        namespace = module_namespace(name) if isinstance(name, str) else None
        if namespace is g:
            return name, g  # type: ignore[return-value]
        return None
    if isinstance(obj, type):
        name = obj.__module__
        namespace = module_namespace(name) if isinstance(name, str) else None
        if namespace is not None:
            return name, namespace
    return None


class _CodePickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, but proxies inside shipped code stay references, and the
    script's own functions and classes are built in the worker against its
    mirror of their module's namespace (:mod:`tether.client._namespace`), once
    per session, instead of with a snapshot of their globals."""

    def __init__(self, file: io.BytesIO, ctx: CodeContext | None) -> None:
        super().__init__(file, protocol=5)
        self._t_ctx = ctx
        self._t_shadows: dict[int, Any] = {}
        self._t_inner: set[int] = set()

    def reducer_override(self, obj: Any) -> Any:
        r = ref_reduce(obj)
        if r is not None:
            return r
        ctx = self._t_ctx
        if ctx is None:
            return super().reducer_override(obj)
        t = type(obj)
        if t is types.CodeType:
            # cloudpickle >= 3.1.3 renames every code object "<dynamic-code>",
            # which leaves inspect, linecache, torch.jit.script, warnings and
            # tracebacks in the worker without the script's file. marshal keeps
            # the code whole (both ends run the same Python: the hello says so).
            return (marshal.loads, (marshal.dumps(obj),))
        if t is types.ModuleType:
            return _module_reduce(obj)
        if t is types.FunctionType or isinstance(obj, type):
            found = script_namespace_of(obj)
            if found is not None:
                if t is types.FunctionType:
                    return self._script_function(obj, found[0], found[1], ctx)
                return self._script_class(obj, found[0], found[1], ctx)
            if t is types.FunctionType and needs_value(obj):
                # A local function of a library: a snapshot of its globals, with
                # the script's containers shared.
                shadow = self._t_shadows.get(id(obj))
                if shadow is None:
                    shadow = self._t_shadows[id(obj)] = (obj, share_state(obj, ctx.export))
                obj = shadow[1]
        return super().reducer_override(obj)

    def _script_function(
        self, fn: types.FunctionType, module: str, namespace: dict[str, Any], ctx: CodeContext
    ) -> Any:
        oid = ctx.export(fn)
        if oid in ctx.sent:
            return (_refs.script_ref, (oid,))
        if id(fn) not in self._t_inner:
            stored = tuple(sorted(_stored_globals(fn.__code__)))
            rebound = _rebound_cells(fn)
            if stored or rebound:
                # `global n; n += 1` must change the script's n: the worker wraps
                # the function to write those names back here after each call.
                # The wrapped function must be another object than ``fn``:
                # pickle would otherwise replace this reduction by its memo of fn.
                inner = _copy_function(fn)
                self._t_inner.add(id(inner))
                closure = fn.__closure__ or ()
                cells = tuple((i, ctx.export(closure[i])) for i in rebound)
                ctx.mark(oid)
                return (_refs.script_synced, (oid, inner, module, stored, cells))
        ctx.mark(oid)
        code = fn.__code__
        empty = (
            None if fn.__closure__ is None else tuple(types.CellType() for _ in code.co_freevars)
        )
        slotstate = {
            "__name__": fn.__name__,
            "__qualname__": fn.__qualname__,
            "__annotations__": fn.__annotations__,
            "__kwdefaults__": fn.__kwdefaults__,
            "__defaults__": fn.__defaults__,
            "__module__": fn.__module__,
            "__doc__": fn.__doc__,
            "__closure__": _shared_cells(fn, ctx.export),
            "_cloudpickle_submodules": [],
            "__globals__": {},  # never a snapshot: the worker's namespace has them
        }
        state = dict(fn.__dict__)
        info = module_info(module, namespace)
        return (
            _refs.script_fn,
            (oid, info, code, empty),
            (state, slotstate),
            None,
            None,
            _function_setstate,
        )

    def _script_class(
        self, cls: type, module: str, namespace: dict[str, Any], ctx: CodeContext
    ) -> Any:
        oid = ctx.export(cls)
        if oid in ctx.sent:
            return (_refs.script_ref, (oid,))
        ctx.mark(oid)
        maker, args, state, *_rest = _dynamic_class_reduce(cls)
        info = module_info(module, namespace)
        return (_refs.script_cls, (oid, info, maker, args), state, None, None, _class_setstate)


def _module_reduce(module: types.ModuleType) -> Any:
    """A module of the script's as the worker's lazy mirror of it; any other
    module as an import in the worker."""
    name = module.__name__
    namespace = module_namespace(name)
    if namespace is not None and namespace is module.__dict__:
        return (_refs.script_module, (module_info(name, namespace),))
    return (importlib.import_module, (name,))


def dumps_code(obj: Any, ctx: CodeContext | None = None) -> bytes:
    """Pickle code by value; with ``ctx``, the script's code and containers as
    the worker should hold them (see :class:`_CodePickler`)."""
    buf = io.BytesIO()
    if ctx is None:
        _CodePickler(buf, None).dump(obj)
    else:
        ctx.dump(_CodePickler(buf, ctx), obj)
    return buf.getvalue()


class ClientPickler(pickle.Pickler):
    """Pickles call arguments; see the module docstring."""

    def __init__(
        self,
        file: io.BytesIO,
        buffers: list[pickle.PickleBuffer],
        ctx: CodeContext,
    ) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._ctx = ctx
        self._export = ctx.export

    def reducer_override(self, obj: Any) -> Any:
        # Called for every non-builtin object of every call: the common cases
        # (a proxy, an operator function, a reference anchor) go first.
        t = type(obj)
        if type(t) is RemoteType:
            return (_ref, (obj._t_id,))
        if t is _BUILTIN_FUNCTION or (t is types.FunctionType and obj in _ANCHORS):
            return NotImplemented
        r = ref_reduce(obj)
        if r is not None:
            return r
        if t is types.ModuleType:
            return _module_reduce(obj)
        if isinstance(obj, (types.FunctionType, type)) and needs_value(obj):
            if id(obj) in self._ctx.sent:  # the worker built it already
                return (_refs.script_ref, (id(obj),))
            return (_refs.code, (dumps_code(obj, self._ctx),))
        if is_script_object(obj):
            return (_refs.client_obj, (self._export(obj),))
        if isinstance(obj, io.IOBase):
            # The script's own open file: remote code reads and writes it here.
            name = getattr(obj, "name", None)
            mode = getattr(obj, "mode", "")
            return (
                _refs.client_file,
                (
                    self._export(obj),
                    name if isinstance(name, str) else None,
                    mode if isinstance(mode, str) else "",
                ),
            )
        return NotImplemented


def dumps(obj: Any, ctx: CodeContext) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buf = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    ctx.dump(ClientPickler(buf, buffers, ctx), obj)
    return buf.getvalue(), buffers


def dumps_inband(obj: Any, ctx: CodeContext) -> bytes:
    """Pickle ``obj`` as a call argument, all in one bytes object (ValueError if
    it needs out-of-band buffers)."""
    data, buffers = dumps(obj, ctx)
    if buffers:
        raise ValueError("the value needs out-of-band buffers")
    return data


class CallEncoder:
    """Pickles calls with one long-lived pickler (building one costs more than
    pickling a small call). Re-entrant use falls back to a fresh pickler."""

    def __init__(self, ctx: CodeContext) -> None:
        self._ctx = ctx
        self._buf = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        self._pickler = ClientPickler(self._buf, self._buffers, ctx)
        self._busy = False

    def dumps(self, obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
        if self._busy:
            return dumps(obj, self._ctx)
        self._busy = True
        buf = self._buf
        try:
            buf.seek(0)
            buf.truncate()
            self._buffers.clear()
            self._ctx.dump(self._pickler, obj)
            return buf.getvalue(), self._buffers[:]
        finally:
            self._pickler.clear_memo()
            self._busy = False


class ClientUnpickler(pickle.Unpickler):
    """Turns the worker's references into this session's proxies."""

    def __init__(self, session: Remoting, file: io.BytesIO, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self._session = session

    def find_class(self, module: str, name: str) -> Any:
        if module == "tether._refs":
            fn: Callable[..., Any] | None = self._session.resolvers.get(name)
            if fn is None:
                raise pickle.UnpicklingError(f"unknown reference kind {name!r}")
            return fn
        return super().find_class(module, name)
