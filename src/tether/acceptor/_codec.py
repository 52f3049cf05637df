"""The worker's side of pickling: what stays remote, what travels by value.

(Over 400 lines: the one rule, remote or by value, with the type registry and the error
payloads it decides for.)

Results go back to the client as real values when they are plain (numbers,
strings, bytes, None, and lists/tuples/dicts/sets of those), and as arrays when
the client said it has numpy and does not remote it. Everything else becomes a
handle: the pickle names ``tether._refs.handle(hid, tid)`` and the client makes a
proxy of it. Numbers of a remoted numpy (``np.float64(0.5)``) are values too when
the client has a numpy of its own: they are immutable, and a script that computes
with them in Python (``math.sqrt(var)``, ``x - mean`` in a loop) must not pay a
round trip per operation. Classes and modules are interned: one handle each for the life of
the session, so the client's caches stay valid.
"""

from __future__ import annotations

import enum
import inspect
import io
import operator
import pickle
import traceback
import types
from collections.abc import Callable, Iterable
from typing import Any

from tether import _refs
from tether._errors import ProtocolError
from tether.acceptor._clientobj import ClientIterator, ClientObject
from tether.wire._ops import TypeDesc

_REFS_MODULE = "tether._refs"
_TETHER_DIR = __file__.rsplit("/", 2)[0]

# Special methods the client can forward; the mirror class of a remote type gets
# the subset the remote type actually supports.
FORWARDED_DUNDERS = frozenset(
    [
        "__call__",
        "__len__",
        "__bool__",
        "__iter__",
        "__next__",
        "__reversed__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__enter__",
        "__exit__",
        "__int__",
        "__float__",
        "__index__",
        "__complex__",
        "__round__",
        "__trunc__",
        "__floor__",
        "__ceil__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__invert__",
        "__add__",
        "__sub__",
        "__mul__",
        "__matmul__",
        "__truediv__",
        "__floordiv__",
        "__mod__",
        "__divmod__",
        "__pow__",
        "__lshift__",
        "__rshift__",
        "__and__",
        "__xor__",
        "__or__",
        "__radd__",
        "__rsub__",
        "__rmul__",
        "__rmatmul__",
        "__rtruediv__",
        "__rfloordiv__",
        "__rmod__",
        "__rdivmod__",
        "__rpow__",
        "__rlshift__",
        "__rrshift__",
        "__rand__",
        "__rxor__",
        "__ror__",
        "__iadd__",
        "__isub__",
        "__imul__",
        "__imatmul__",
        "__itruediv__",
        "__ifloordiv__",
        "__imod__",
        "__ipow__",
        "__ilshift__",
        "__irshift__",
        "__iand__",
        "__ixor__",
        "__ior__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__eq__",
        "__ne__",
        "__hash__",
        "__array__",
        "__fspath__",
        "__bytes__",
    ]
)

_ROUTINE_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    classmethod,
    staticmethod,
)


class TypeRegistry:
    """Numbers remote classes and describes them once to the client."""

    def __init__(self) -> None:
        self.ids: dict[type, int] = {object: 0}
        self.classes: list[type] = [object]  # tid -> class
        self.pending: list[TypeDesc] = []

    def tid(self, cls: type) -> int:
        tid = self.ids.get(cls)
        if tid is None:
            bases = tuple(self.tid(b) for b in cls.__bases__)
            tid = len(self.ids)
            self.ids[cls] = tid
            self.classes.append(cls)
            self.pending.append(describe(cls, tid, bases))
        return tid

    def cls(self, tid: int) -> type:
        """The class described under ``tid`` (``_refs.type_id``)."""
        if type(tid) is not int or not 0 <= tid < len(self.classes):
            raise ProtocolError(f"no remote class has type id {tid!r}")
        return self.classes[tid]

    def take_pending(self) -> list[TypeDesc]:
        out, self.pending = self.pending, []
        return out


def describe(cls: type, tid: int, bases: tuple[int, ...]) -> TypeDesc:
    dunders = frozenset(d for d in FORWARDED_DUNDERS if _has_special(cls, d))
    methods: set[str] = set()
    for klass in reversed(cls.__mro__):
        try:
            items = list(vars(klass).items())
        except TypeError:
            continue
        for name, value in items:
            if name.startswith("__") and name.endswith("__"):
                continue
            if isinstance(value, _ROUTINE_TYPES):
                methods.add(name)
            else:
                methods.discard(name)
    return TypeDesc(
        tid=tid,
        module=getattr(cls, "__module__", None) or "builtins",
        qualname=getattr(cls, "__qualname__", cls.__name__),
        name=cls.__name__,
        bases=bases,
        dunders=dunders,
        methods=frozenset(methods),
    )


def _has_special(cls: type, name: str) -> bool:
    try:
        attr = inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    if attr is None:  # e.g. __hash__ = None
        return False
    # object's defaults do not make a type iterable, callable ...; keep the
    # comparisons and hash, which every object has.
    return getattr(object, name, None) is not attr or name in {"__eq__", "__ne__", "__hash__"}


def is_plain(value: Any) -> bool:
    """True for values that always travel by value (checked shallowly)."""
    return type(value) in _PLAIN_TYPES


_PLAIN_TYPES = frozenset(
    {int, float, bool, str, bytes, complex, type(None), type(Ellipsis), slice, range}
)


# Objects pickle saves by name: where they come from decides by value or not.
_BY_NAME = (types.FunctionType, types.BuiltinFunctionType)


class ByRef:
    """Send ``obj`` back as a handle even if it is plain data."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


_REF_FUNCTIONS = frozenset(getattr(_refs, name) for name in _refs.NAMES)


class WorkerPickler(pickle.Pickler):
    """Pickles results: plain data by value, everything else as handles."""

    def __init__(
        self,
        file: io.BytesIO,
        *,
        new_handle: Callable[[Any], int],
        intern: Callable[[Any], int],
        interned: dict[int, int],
        types_: TypeRegistry,
        value_modules: frozenset[str],
        buffers: list[pickle.PickleBuffer],
        script_ids: dict[int, int] | None = None,
        scalar_types: frozenset[type] = frozenset(),
        local_classes: frozenset[type] = frozenset(),
    ) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._scalar_types = scalar_types
        self._local_classes = local_classes
        self._new_handle = new_handle
        self._intern = intern
        self._interned = interned
        self._types = types_
        self._value_modules = value_modules
        self._script_ids = script_ids or {}

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t in _PLAIN_TYPES or (t is types.FunctionType and obj in _REF_FUNCTIONS):
            return NotImplemented
        script_ids = self._script_ids
        if script_ids:
            oid = script_ids.get(id(obj))
            if oid is not None:  # a function or class of the script's: its own
                return (_refs.local, (oid,))
            if id(t) in script_ids and is_value_like(obj):
                # A record of one of the script's classes (a dataclass, a named
                # tuple, an enum member) made here: the script's class, by value.
                return obj.__reduce_ex__(5)
        if t in self._scalar_types:
            return (_refs.np_scalar, (obj.dtype.str, obj.tobytes()))
        if t in self._local_classes:  # a numpy dtype: by value, as the client's own
            return NotImplemented
        if t is ByRef:
            return (_refs.handle, (self._new_handle(obj.obj), self._types.tid(type(obj.obj))))
        if t is ClientObject or isinstance(obj, ClientIterator):
            return (_refs.local, (obj._oid,))
        if isinstance(obj, type):
            if issubclass(obj, BaseException):
                return (_refs.exc_class, (exception_lineage(obj),))
            if (
                obj.__module__ == "builtins"
                or obj.__module__.partition(".")[0] in self._value_modules
                or obj in self._local_classes
            ):
                return NotImplemented
            return (_refs.cls, (self._intern(obj), self._types.tid(obj)))
        if t is types.ModuleType or isinstance(obj, types.ModuleType):
            return (_refs.module, (self._intern(obj), obj.__name__))
        owner = obj if isinstance(obj, _BY_NAME) else t
        top = (getattr(owner, "__module__", None) or "").partition(".")[0]
        if top in self._value_modules:
            return NotImplemented
        if isinstance(obj, tuple) and all(type(x) in _PLAIN_TYPES for x in obj):
            return (
                _refs.tuple_mirror,
                (self._intern(t), self._types.tid(t), tuple(obj), repr(obj), str(obj)),
            )
        if id(obj) in self._interned or is_singleton(obj):
            return (_refs.interned, (self._intern(obj), self._types.tid(t)))
        return (_refs.handle, (self._new_handle(obj), self._types.tid(t)))


def numpy_scalar_types() -> frozenset[type]:
    """numpy's scalar types of numbers, booleans, strings and times (they travel
    by value to a client that has numpy, see the module docstring)."""
    import numpy

    return frozenset(
        t
        for t in set(numpy.sctypeDict.values())
        if issubclass(t, numpy.generic) and numpy.dtype(t).kind in "biufcUSmM"
    )


def numpy_local_classes(scalar_types: frozenset[type]) -> frozenset[type]:
    """The numpy classes a client with a numpy of its own gets as its own (by
    name), with the dtypes, which travel by value: the scalar types whose
    instances travel by value (``scalar_types``, :func:`numpy_scalar_types`) and
    their abstract bases (``np.float64``, ``np.number``, ``np.generic``),
    ``np.dtype`` and its classes.

    The client's libraries use its own numpy: handed the script's ``x.dtype`` or
    ``np.number``, they must see numpy's objects (``np.array(x, dtype=x.dtype)``
    in scipy, ``df.select_dtypes(np.number)`` in pandas); and the script's
    ``x.dtype == np.float64`` or ``isinstance(v, np.floating)`` then compares
    objects of one numpy. ``np.void`` (a record, a view into its array) stays
    remote, as its instances do.
    """
    import numpy

    classes: set[type] = {numpy.dtype}
    for t in scalar_types:
        classes.update(c for c in t.__mro__ if issubclass(c, numpy.generic))
    dtypes = getattr(numpy, "dtypes", None)
    for c in vars(dtypes).values() if dtypes is not None else ():
        if isinstance(c, type) and issubclass(c, numpy.dtype):
            classes.add(c)
    return frozenset(classes)


def is_value_like(obj: Any) -> bool:
    """Instances that read as values: dataclasses, named tuples, enum members."""
    t = type(obj)
    return (
        hasattr(t, "__dataclass_fields__")
        or (isinstance(obj, tuple) and hasattr(t, "_fields"))
        or isinstance(obj, enum.Enum)
    )


#: Types whose instances are unique (comparing them with ``is`` is meaningful).
SINGLETON_TYPES = frozenset(
    {"torch.dtype", "torch.layout", "torch.memory_format", "torch.qscheme", "torch.finfo"}
)


def is_singleton(obj: Any) -> bool:
    t = type(obj)
    return isinstance(obj, enum.Enum) or f"{t.__module__}.{t.__qualname__}" in SINGLETON_TYPES


def exception_lineage(cls: type[BaseException]) -> tuple[tuple[str, str], ...]:
    """(module, qualname) of an exception class and its exception ancestors."""
    return tuple(
        (c.__module__, c.__qualname__)
        for c in cls.__mro__
        if isinstance(c, type) and issubclass(c, BaseException)
    )


def error_payload(exc: BaseException) -> bytes:
    """Describe an exception for the client; never raises.

    The arguments travel pickled when they are plain enough; the message and
    the filtered traceback always travel as text, so an exception that does
    not pickle still arrives with its type, text and remote frames.
    """
    try:
        reduced = exc.__reduce__()
        parts = (reduced[1], reduced[2] if len(reduced) > 2 else None)
        blob = pickle.dumps(parts, protocol=5)
        pickle.loads(blob)  # the client must be able to rebuild it
        args: bytes | None = blob
    except Exception:
        args = None
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    return pickle.dumps(
        {
            "lineage": exception_lineage(type(exc)),
            "args": args,
            "message": message,
            "traceback": format_remote_traceback(exc),
        },
        protocol=5,
    )


def format_remote_traceback(exc: BaseException) -> str:
    """The traceback as the worker saw it, without Tether's own frames."""
    try:
        te = traceback.TracebackException.from_exception(exc)
        _strip_internal(te, set())
        return "".join(te.format())
    except Exception:  # pragma: no cover - formatting must never fail the worker
        return f"{type(exc).__name__}: <traceback unavailable>"


def _strip_internal(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not f.filename.startswith(_TETHER_DIR)]
    )
    for nxt in (te.__cause__, te.__context__):
        if nxt is not None:
            _strip_internal(nxt, seen)


def exact_length(it: Any) -> int | None:
    """The number of items left in ``it`` if it is known for sure, else None."""
    t = type(it)
    if t.__module__ == "builtins" and t.__name__ in _EXACT_ITERATORS:
        n = operator.length_hint(it, -1)
        return n if n >= 0 else None
    try:
        if hasattr(t, "__len__"):
            n = len(it)
            return n if isinstance(n, int) and n >= 0 else None
    except Exception:
        return None
    return None


_EXACT_ITERATORS = frozenset(
    {
        "list_iterator",
        "tuple_iterator",
        "range_iterator",
        "longrange_iterator",
        "str_ascii_iterator",
        "bytes_iterator",
        "dict_keyiterator",
        "dict_valueiterator",
        "dict_itemiterator",
        "set_iterator",
    }
)


def iter_functions(obj: Any) -> Iterable[types.FunctionType]:
    """Functions reachable from a shipped function or class (for file routing)."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        for f in (obj.fget, obj.fset, obj.fdel):
            if isinstance(f, types.FunctionType):
                yield f
    elif isinstance(obj, types.FunctionType):
        yield obj
    elif isinstance(obj, type):
        for value in vars(obj).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                for f in (value.fget, value.fset, value.fdel):
                    if isinstance(f, types.FunctionType):
                        yield f
            if isinstance(value, types.FunctionType):
                yield value
