"""The client's side of pickling: references out, proxies in.

Arguments go to the worker by value, except proxies (sent as references to the
worker's objects) and code the worker cannot import: functions, lambdas and
classes of ``__main__`` or local scopes travel by value through cloudpickle.
Everything else (functions of importable modules, the script's own modules)
travels by reference; the worker imports it, fetching the script's modules from
the client when it has to.

Plain calls (remote objects, module-level builtins and plain values only) skip
pickle: :func:`compact_call` writes them in the compact form of
:mod:`tether.wire._compact`, at half the cost.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle

from tether import _refs
from tether.client._proxy import (
    LazyMethod,
    RemoteModule,
    RemoteObject,
    RemoteType,
    _TupleMirror,
)
from tether.wire import _compact
from tether.wire._ops import Op

if TYPE_CHECKING:
    from tether.client._session import Session


_ref = _refs.ref
_BUILTIN_FUNCTION = types.BuiltinFunctionType
_ANCHORS = frozenset(getattr(_refs, name) for name in _refs.NAMES)
_HEAD = _compact.HEAD
_SHAPE_KIND = _compact.SHAPE_KIND
_CALL = int(Op.CALL)
_CALLMETHOD = int(Op.CALLMETHOD)
_I64_MIN, _I64_MAX = _compact.I64_MIN, _compact.I64_MAX
#: Module-level builtin function -> (format piece, values) of its compact item,
#: or () if it has none.
_names: dict[Any, tuple[Any, ...]] = {}


def _builtin_name(fn: Any) -> tuple[Any, ...]:
    """The compact item of a builtin that lives at module level (``g`` and
    ``module:qualname``), else ()."""
    owner = getattr(fn, "__self__", None)
    named: tuple[Any, ...] = ()
    if isinstance(owner, types.ModuleType):
        qualname = getattr(fn, "__qualname__", "")
        if qualname and "." not in qualname and getattr(owner, qualname, None) is fn:
            name = f"{owner.__name__}:{qualname}".encode()
            named = (f"cH{len(name)}s", (b"g", len(name), name))
    _names[fn] = named
    return named


def compact_call(op: int, shape: Any, fields: tuple[Any, ...]) -> bytes | None:
    """The compact meta of a plain call (:mod:`tether.wire._compact`), or None
    if it needs pickle."""
    if op == _CALL:
        fn, args, kwargs = fields
        items: tuple[Any, ...] = (fn, *args)
    elif op == _CALLMETHOD:
        target, name, args, kwargs = fields
        items = (target, name, *args)
    elif op in _HEAD:
        items, kwargs = fields, None
    else:
        return None
    if type(shape) is tuple:
        if shape[0] != "H":
            return None  # a list or tuple of handles
        kind, hid, tid = _compact.SHAPE_HANDLE, shape[1], shape[2]
    else:
        kind, hid, tid = _SHAPE_KIND[shape], 0, 0
    n_kwargs = len(kwargs) if kwargs else 0
    if len(items) > 255 or n_kwargs > 255:
        return None
    fmt = ["<BBqqBB"]
    values: list[Any] = [int(op), kind, hid, tid, len(items), n_kwargs]
    for x in items:
        t = type(x)
        if type(t) is RemoteType:  # the common items inline: a call per item costs
            fmt.append("cq")
            values += (b"h", x._t_id)
        elif t is float:
            fmt.append("cd")
            values += (b"f", x)
        elif not _put(x, fmt, values):
            return None
    if n_kwargs:
        for k, x in kwargs.items():
            key = k.encode("utf-8", "surrogatepass")
            if len(key) > 0xFFFF:
                return None
            fmt.append(f"H{len(key)}s")
            values += (len(key), key)
            if not _put(x, fmt, values):
                return None
    return _compact.pack("".join(fmt), values)


def _put(x: Any, fmt: list[str], values: list[Any]) -> bool:
    """Append one item's format and values; False if it has no compact form."""
    t = type(x)
    if t is float:
        fmt.append("cd")
        values += (b"f", x)
    elif type(t) is RemoteType:
        fmt.append("cq")
        values += (b"h", x._t_id)
    elif t is int:
        if not _I64_MIN <= x <= _I64_MAX:
            return False
        fmt.append("cq")
        values += (b"i", x)
    elif t is str:
        b = x.encode("utf-8", "surrogatepass")
        fmt.append(f"cI{len(b)}s")
        values += (b"s", len(b), b)
    elif t is _BUILTIN_FUNCTION:
        named = _names.get(x)
        if named is None:
            named = _builtin_name(x)
        if not named:
            return False
        fmt.append(named[0])
        values += named[1]
    elif x is None:
        fmt.append("c")
        values.append(b"N")
    elif t is bool:
        fmt.append("c")
        values.append(b"T" if x else b"F")
    elif t is bytes:
        fmt.append(f"cI{len(x)}s")
        values += (b"b", len(x), x)
    else:
        return False
    return True


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
    """Code the worker cannot import by name and must receive by value."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", "")
    return (
        module == "__main__" or module is None or "<locals>" in qualname or "<lambda>" in qualname
    )


_SHARED = (list, dict, set)


def is_script_object(value: Any) -> bool:
    """An instance of one of the script's own (mutable) classes.

    Remote code holds such objects by reference, as Python would: a meter
    passed to a remote constructor is the script's meter. Immutable values
    (frozen dataclasses, named tuples) still travel by value.
    """
    t = type(value)
    if getattr(t, "__module__", "") != "__main__" or type(t) is not type:
        return False
    if isinstance(value, (tuple, BaseException)):
        return False
    params = getattr(t, "__dataclass_params__", None)
    return not (params is not None and params.frozen)


def is_shared(value: Any) -> bool:
    """Script state that shipped callbacks must change in place, not copy: the
    script's lists, dicts and sets, instances of its own classes, numpy arrays."""
    t = type(value)
    if t in _SHARED:
        return True
    if getattr(t, "__module__", "") == "numpy" and t.__name__ == "ndarray":
        return True
    return is_script_object(value)


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


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def share_state(
    fn: types.FunctionType, export: Callable[[Any], int], *, copy: bool = False
) -> types.FunctionType:
    """A copy of ``fn`` whose lists, dicts and sets (globals and closure
    variables) are the script's own objects, reached from the worker, instead
    of copies: a forward hook that records activations in the script's dict,
    or a gradient hook appending to a list, changes what the script sees."""
    changed = False
    g = fn.__globals__
    new_globals: dict[str, Any] = {
        "__name__": g.get("__name__"),
        "__builtins__": g.get("__builtins__"),
    }
    for name in _global_names(fn.__code__):
        if name in g:
            value = g[name]
            if is_shared(value):
                value = _Shared(export(value))
                changed = True
            new_globals[name] = value
    cells = fn.__closure__
    if cells:
        new_cells = []
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
        cells = tuple(new_cells)
    if not changed and not copy:
        return fn
    new = types.FunctionType(fn.__code__, new_globals, fn.__name__, fn.__defaults__, cells)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    new.__dict__.update(fn.__dict__)
    return new


class _CodePickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, but proxies inside shipped code stay references, and (for
    callbacks) the script's containers are shared, not copied."""

    def __init__(self, file: io.BytesIO, export: Callable[[Any], int] | None) -> None:
        super().__init__(file, protocol=5)
        self._t_export = export
        self._t_shadows: dict[int, Any] = {}
        self._t_inner: set[int] = set()

    def reducer_override(self, obj: Any) -> Any:
        r = ref_reduce(obj)
        export = self._t_export
        if r is not None:
            return r
        if export is not None and type(obj) is types.FunctionType and needs_value(obj):
            if id(obj) not in self._t_inner:
                stored = _stored_globals(obj.__code__)
                rebound = _rebound_cells(obj)
                if stored or rebound:
                    # `global n; n += 1` must change the script's n: the worker
                    # wraps the function to read and write those names here.
                    # The argument must be another object than ``obj``: pickle
                    # would otherwise replace this reduction by its memo of obj.
                    inner = share_state(obj, export, copy=True)
                    self._t_inner.add(id(inner))
                    self._t_shadows[id(inner)] = (inner, inner)
                    names = tuple(sorted(stored))
                    closure = obj.__closure__ or ()
                    cells = tuple((i, export(closure[i])) for i in rebound)
                    synced = (inner, export(obj.__globals__), names, cells)
                    return (_refs.synced, synced)
            shadow = self._t_shadows.get(id(obj))
            if shadow is None:
                shadow = self._t_shadows[id(obj)] = (obj, share_state(obj, export))
            obj = shadow[1]
        return super().reducer_override(obj)


def dumps_code(obj: Any, export: Callable[[Any], int] | None = None) -> bytes:
    """Pickle code by value; with ``export``, share the script's containers."""
    buf = io.BytesIO()
    _CodePickler(buf, export).dump(obj)
    return buf.getvalue()


class ClientPickler(pickle.Pickler):
    """Pickles call arguments; see the module docstring."""

    def __init__(
        self,
        file: io.BytesIO,
        buffers: list[pickle.PickleBuffer],
        export: Callable[[Any], int],
    ) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._export = export

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
        if isinstance(obj, (types.FunctionType, type)) and needs_value(obj):
            return (_refs.code, (dumps_code(obj, self._export),))
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


def dumps(obj: Any, export: Callable[[Any], int]) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buf = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    ClientPickler(buf, buffers, export).dump(obj)
    return buf.getvalue(), buffers


class CallEncoder:
    """Pickles calls with one long-lived pickler (building one costs more than
    pickling a small call). Re-entrant use falls back to a fresh pickler."""

    def __init__(self, export: Callable[[Any], int]) -> None:
        self._export = export
        self._buf = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        self._pickler = ClientPickler(self._buf, self._buffers, export)
        self._busy = False

    def dumps(self, obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
        if self._busy:
            return dumps(obj, self._export)
        self._busy = True
        buf = self._buf
        try:
            buf.seek(0)
            buf.truncate()
            self._buffers.clear()
            self._pickler.dump(obj)
            return buf.getvalue(), self._buffers[:]
        finally:
            self._pickler.clear_memo()
            self._busy = False


class ClientUnpickler(pickle.Unpickler):
    """Turns the worker's references into this session's proxies."""

    def __init__(self, session: Session, file: io.BytesIO, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self._session = session

    def find_class(self, module: str, name: str) -> Any:
        if module == "tether._refs":
            fn: Callable[..., Any] | None = self._session.resolvers.get(name)
            if fn is None:
                raise pickle.UnpicklingError(f"unknown reference kind {name!r}")
            return fn
        return super().find_class(module, name)
