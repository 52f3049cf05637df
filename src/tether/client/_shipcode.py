"""The script's code, shipped to the worker and built there against its module's namespace.

Functions and classes of the script's modules are built in the worker once per session,
against the worker's mirror of their module's namespace (:mod:`tether.client._namespace`),
never with a snapshot of their globals; a function that rebinds globals or closure cells
is wrapped so the worker writes them back. Local functions of libraries travel with a
snapshot of their globals in which the script's containers stay shared. Code objects
travel whole (marshal), so ``inspect``, ``linecache``, warnings and tracebacks in the
worker name the script's file and line. :class:`CodeContext` is what a session lends
these picklers: the ids of what the worker has built already.
"""

from __future__ import annotations

import importlib
import io
import marshal
import pickle
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle
from cloudpickle.cloudpickle import (  # the state setters cloudpickle's own reductions use
    _class_setstate,
    _decompose_typevar,
    _dynamic_class_reduce,
    _function_setstate,
    _make_typevar,
)

from tether import _refs
from tether._code import global_names, read_globals
from tether.client._kinds import _Shared, is_shared, needs_value, ref_reduce
from tether.client._namespace import module_info, module_namespace

if TYPE_CHECKING:
    pass


_BUILTIN_FUNCTION = types.BuiltinFunctionType


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
    ``watch(module, names)`` hears which globals shipped code may read;
    :attr:`sent` holds the ids of the script's functions and classes the worker
    has already built, which then travel as a bare reference. An id is marked
    sent while it is pickled; a pickle that fails takes its marks back.
    """

    def __init__(
        self,
        export: Callable[[Any], int],
        watch: Callable[[str, frozenset[str]], None] | None = None,
    ) -> None:
        self.export = export
        #: Told the globals each shipped function of a script module may read.
        self.watch = watch
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
        if t is typing.TypeVar and module_namespace(obj.__module__) is not None:
            # cloudpickle sends a TypeVar that its module holds (``ObsType =
            # TypeVar("ObsType")`` beside a ``Generic[ObsType]`` class) as that
            # module's attribute: for a script module the worker would page it in
            # from here, as the same reference again. By value, one object per
            # TypeVar in the worker (cloudpickle's tracker), as for one of __main__.
            return (_make_typevar, _decompose_typevar(obj))
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
        if ctx.watch is not None:
            ctx.watch(module, read_globals(code))
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
        # Attributes set on the function (pytest's marks, a decorator's registry)
        # stay the script's objects: a torch decorator applied in the worker
        # copies them onto its wrapper (functools.wraps), and the script reads
        # them back from that wrapper as its own list or dict, as locally.
        state = {k: ctx.share(v) for k, v in fn.__dict__.items()}
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
