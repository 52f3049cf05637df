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

import io
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether import _refs
from tether.client._kinds import is_script_object, needs_value, ref_reduce
from tether.client._proxy import RemoteType
from tether.client._shipcode import CodeContext, _module_reduce, dumps_code

if TYPE_CHECKING:
    from tether.client._remoting import Remoting


_ref = _refs.ref
_BUILTIN_FUNCTION = types.BuiltinFunctionType
_ANCHORS = frozenset(getattr(_refs, name) for name in _refs.NAMES)
_MISSING: Any = object()


#: The client's numpy's ndarray class, once the pickler has met one.
_NDARRAY: list[Any] = [None]
#: dtype -> its ``str`` where that names it whole (numbers, strings), else None.
_PLAIN_DTYPES: dict[Any, str | None] = {}


def _plain_dtype(dtype: Any) -> str | None:
    import numpy

    name: str | None = dtype.str
    if dtype.kind not in "biufcSU" or dtype.hasobject or numpy.dtype(name) != dtype:
        name = None
    if len(_PLAIN_DTYPES) < 256:
        _PLAIN_DTYPES[dtype] = name
    return name


def _array_reduce(obj: Any) -> Any:
    """One of the client's numpy arrays as ``_refs.array``: its buffer (out of
    band) with its dtype's name and shape, instead of numpy's reduction, which
    pickles the dtype object as well (10-15 us a small array, against 2-3). None
    for arrays that need numpy's own (records, objects)."""
    dtype = obj.dtype
    name = _PLAIN_DTYPES.get(dtype, _MISSING)
    if name is _MISSING:
        name = _plain_dtype(dtype)
    if name is None:
        return None
    if not obj.flags.c_contiguous:
        import numpy

        obj = numpy.ascontiguousarray(obj)
    return (_refs.array, (pickle.PickleBuffer(obj), name, obj.shape))


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
        if t is _NDARRAY[0]:
            r = _array_reduce(obj)
            if r is not None:
                return r
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
        if t is classmethod or t is staticmethod:  # (Sub.__torch_function__ = classmethod(f))
            return (t, (obj.__func__,))
        if t is property:
            return (property, (obj.fget, obj.fset, obj.fdel, obj.__doc__))
        if getattr(t, "__next__", None) is not None and not isinstance(obj, io.IOBase):
            # The script's iterator (a generator, ``filter(f, model.parameters())``
            # handed to an optimizer): lent, so that remote code advances it here.
            return (_refs.client_iter, (self._export(obj), t.__name__))
        if is_script_object(obj):
            return (_refs.client_obj, (self._export(obj),))
        if t.__name__ == "ndarray" and t.__module__ == "numpy" and not _NDARRAY[0]:
            _NDARRAY[0] = t  # the client's numpy, imported by now: the fast path above
            r = _array_reduce(obj)
            if r is not None:
                return r
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
