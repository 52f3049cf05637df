"""Local stand-ins for remote objects: proxies, mirror classes, proxy modules.

(Over 400 lines: the proxy's special methods, one small function each, and the mirror
machinery they share; no I/O, no protocol decisions.)

Every remote class the client meets gets a *mirror class*: a real local class,
created by the :class:`RemoteType` metaclass, named like the remote one, whose
bases mirror the remote bases. Proxies of remote objects are instances of their
class's mirror, so ``isinstance(x, torch.Tensor)``, ``type(x).__name__`` and
``class Net(nn.Module)`` work with no round trip. A mirror carries only the
special methods its remote class supports (so ``callable``, ``len`` and
iteration answer as they would locally); each forwards to the session.

Subclassing a mirror (``class Net(nn.Module): ...``) builds the real class in
the worker from the class body, and returns that class's mirror.
"""

from __future__ import annotations

import copy
import operator
import sys
import types
from typing import TYPE_CHECKING, Any, ClassVar, Final

from tether.client._trycheck import note_transparent_with
from tether.wire._ops import EXHAUSTED, Op

if TYPE_CHECKING:
    from tether.client._remoting import Remoting


def _let_go(obj: RemoteObject) -> None:
    """The script changed ``obj``'s attributes: it keeps nothing (client/_held.py)."""
    try:  # noqa: SIM105
        object.__delattr__(obj, "_t_held")
    except AttributeError:
        pass


class RemoteObject:
    """Base of every proxy: an object that lives in a worker."""

    # _t_held: what a module's proxy keeps alive (client/_held.py), when it does.
    __slots__ = ("__weakref__", "_t_held", "_t_id", "_t_s")
    _t_tid: ClassVar[int] = 0
    _t_methods: ClassVar[frozenset[str]] = frozenset()
    _t_s: Remoting
    _t_id: int

    def __del__(self) -> None:
        # No contextlib here: __del__ runs for every proxy and must stay cheap.
        try:  # noqa: SIM105
            self._t_s.forget(self._t_id)
        except Exception:  # interpreter shutdown, or never fully built
            pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_t_") or name in _ADDRESS_ATTRS:
            raise AttributeError(name)
        if name in type(self)._t_methods:
            return LazyMethod(self, name)
        return self._t_s.getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_t_s", "_t_id"):
            object.__setattr__(self, name, value)
        else:
            # An object of the script's stored on a remote object stays the
            # script's object (model.meter = meter; later model.meter is meter).
            _let_go(self)
            self._t_s.apply_none(setattr, self, name, self._t_s.share(value))

    def __delattr__(self, name: str) -> None:
        _let_go(self)
        self._t_s.apply_none(delattr, self, name)

    def __repr__(self) -> str:
        return self._t_s.value(repr, self)  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return self._t_s.value(str, self)  # type: ignore[no-any-return]

    def __format__(self, spec: str) -> str:
        return self._t_s.value(format, self, spec)  # type: ignore[no-any-return]

    def __dir__(self) -> list[str]:
        return self._t_s.value(dir, self)  # type: ignore[no-any-return]

    def __copy__(self) -> Any:
        return self._t_s.apply(copy.copy, self)

    def __deepcopy__(self, memo: Any) -> Any:
        # The copy is made where the object lives, and stays there.
        return self._t_s.apply(copy.deepcopy, self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"cannot pickle a proxy of a remote {type(self).__qualname__} locally; "
            "pass it to remote code instead, or fetch a local copy first"
        )


def _value(fn: Any) -> Any:
    def method(self: RemoteObject, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        return self._t_s.value(fn, self, *args)

    return method


def _apply(fn: Any) -> Any:
    def method(self: RemoteObject, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        return self._t_s.apply(fn, self, *args)

    return method


def _reflected(fn: Any) -> Any:
    def method(self: RemoteObject, other: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        return self._t_s.apply(fn, other, self)

    return method


def _none(fn: Any) -> Any:
    def method(self: RemoteObject, *args: Any) -> None:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        self._t_s.apply_none(fn, self, *args)

    return method


def _call(self: RemoteObject, *args: Any, **kwargs: Any) -> Any:
    __tracebackhide__ = True  # IPython leaves Tether's frames out
    return self._t_s.call(self, args, kwargs)


def _iter(self: RemoteObject) -> Any:
    return RemoteIterator(self._t_s, self)


def _next(self: RemoteObject) -> Any:
    __tracebackhide__ = True  # IPython leaves Tether's frames out
    item = self._t_s.value_op(Op.NEXT, self)
    if item is EXHAUSTED:
        raise StopIteration
    return item


def _enter(self: RemoteObject) -> Any:
    note_transparent_with(sys._getframe(1))
    return self._t_s.callmethod(self, "__enter__", (), {})


def _exit(self: RemoteObject, et: Any, ev: Any, tb: Any) -> Any:
    if et is None:
        # The with-statement ignores the result on a normal exit: don't wait for it.
        self._t_s.callmethod(self, "__exit__", (None, None, None), {}, discard=True)
        return None
    return self._t_s.value_method(self, "__exit__", (et, ev, None))


def _bool(self: RemoteObject) -> bool:
    return self._t_s.value(bool, self)  # type: ignore[no-any-return]


def _array(self: RemoteObject, *args: Any, **kwargs: Any) -> Any:
    # Only the dtype travels: numpy >= 2 adds copy=..., which not every remote
    # __array__ takes (numpy scalars' does not); what arrives here is a fresh
    # local array whatever copy asked for.
    result = self._t_s.value_method(self, "__array__", args[:1], {})
    if isinstance(result, RemoteObject):
        # numpy is remoted, and a library of the client's own numpy asks for
        # the values (matplotlib plotting a remote array): they come here.
        import pickle

        data = self._t_s.value(pickle.dumps, result)
        return pickle.loads(data)
    return result


BINARY_OPERATORS: Final = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul,
    "matmul": operator.matmul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "divmod": divmod,
    "pow": pow, "lshift": operator.lshift, "rshift": operator.rshift,
    "and": operator.and_, "xor": operator.xor, "or": operator.or_,
}  # fmt: skip
INPLACE_OPERATORS: Final = {
    "iadd": operator.iadd, "isub": operator.isub, "imul": operator.imul,
    "imatmul": operator.imatmul, "itruediv": operator.itruediv,
    "ifloordiv": operator.ifloordiv, "imod": operator.imod, "ipow": operator.ipow,
    "ilshift": operator.ilshift, "irshift": operator.irshift,
    "iand": operator.iand, "ixor": operator.ixor, "ior": operator.ior,
}  # fmt: skip

#: special method name -> the local implementation that forwards it
SPECIALS: dict[str, Any] = {
    "__call__": _call,
    "__iter__": _iter,
    "__next__": _next,
    "__enter__": _enter,
    "__exit__": _exit,
    "__bool__": _bool,
    "__len__": _value(len),
    "__int__": _value(int),
    "__float__": _value(float),
    "__complex__": _value(complex),
    "__index__": _value(operator.index),
    "__hash__": _value(hash),
    "__contains__": _value(operator.contains),
    "__bytes__": _value(bytes),
    "__fspath__": _value(__import__("os").fspath),
    "__array__": _array,
    "__getitem__": _apply(operator.getitem),
    "__setitem__": _none(operator.setitem),
    "__delitem__": _none(operator.delitem),
    "__reversed__": _apply(reversed),
    "__neg__": _apply(operator.neg),
    "__pos__": _apply(operator.pos),
    "__abs__": _apply(abs),
    "__invert__": _apply(operator.invert),
    "__round__": _apply(round),
    "__trunc__": _apply(__import__("math").trunc),
    "__floor__": _apply(__import__("math").floor),
    "__ceil__": _apply(__import__("math").ceil),
    "__lt__": _apply(operator.lt),
    "__le__": _apply(operator.le),
    "__gt__": _apply(operator.gt),
    "__ge__": _apply(operator.ge),
    "__eq__": _apply(operator.eq),
    "__ne__": _apply(operator.ne),
}
for _name, _fn in BINARY_OPERATORS.items():
    SPECIALS[f"__{_name}__"] = _apply(_fn)
    SPECIALS[f"__r{_name}__"] = _reflected(_fn)
for _name, _fn in INPLACE_OPERATORS.items():
    SPECIALS[f"__{_name}__"] = _apply(_fn)

#: Names the metaclass answers locally (AttributeError) instead of asking the
#: worker: introspection probes by typing, inspect, abc, dataclasses ...
_LOCAL_CLASS_ATTRS = frozenset(
    {
        "__signature__", "__wrapped__", "__origin__", "__args__", "__parameters__",
        "__abstractmethods__", "__isabstractmethod__", "__orig_bases__", "__orig_class__",
        "__mro_entries__", "__class_getitem__", "__set_name__", "__dataclass_fields__",
        "__attrs_attrs__", "__pydantic_core_schema__", "__get_pydantic_core_schema__",
        "__tether_wrapped__", "__getstate__", "__reduce_ex__", "__reduce__", "__copy__",
        "__deepcopy__",
    }
)  # fmt: skip
#: Never forwarded from a proxy: a local numpy must not read a remote object's
#: memory address; it takes the values through __array__.
_ADDRESS_ATTRS = frozenset(
    {"__array_interface__", "__array_struct__", "__cuda_array_interface__", "__dlpack__",
     "__dlpack_device__"}
)  # fmt: skip


class RemoteType(type):
    """Metaclass of mirror classes; see the module docstring."""

    _t_s: Remoting
    _t_cid: int  # the class's handle (instances keep theirs in the _t_id slot)
    _t_tid: int
    _t_methods: frozenset[str]
    _t_attrs: dict[str, Any]

    def __new__(
        mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwds: Any
    ) -> RemoteType:
        if ns.pop("_t_internal", False):
            return super().__new__(mcls, name, bases, ns)
        session = next(b._t_s for b in bases if isinstance(b, RemoteType))
        cls: RemoteType = session.make_class(name, bases, ns, kwds)
        return cls

    def __init__(cls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwds: Any) -> None:
        super().__init__(name, bases, ns)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_t_") or name in _LOCAL_CLASS_ATTRS:
            raise AttributeError(name)
        attrs = cls.__dict__.get("_t_attrs")
        if attrs is None:
            attrs = {}
            type.__setattr__(cls, "_t_attrs", attrs)
        try:
            return attrs[name]
        except KeyError:
            value = attrs[name] = cls._t_s.getattr(cls, name)
            return value

    def __setattr__(cls, name: str, value: Any) -> None:
        if name.startswith("_t_"):
            type.__setattr__(cls, name, value)
            return
        if name.startswith("__") and name.endswith("__"):
            # The script's own special method (``Sub.__torch_function__ =
            # classmethod(f)`` after the class statement): the real class in the
            # worker takes it, as a class body's would; the mirror too.
            type.__setattr__(cls, name, value)
        cls.__dict__.get("_t_attrs", {}).pop(name, None)
        cls._t_s.apply_none(setattr, cls, name, value)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._t_s.call(cls, args, kwargs)

    def __getitem__(cls, item: Any) -> Any:
        return cls._t_s.apply(operator.getitem, cls, item)

    def __instancecheck__(cls, obj: Any) -> bool:
        if type.__instancecheck__(cls, obj):
            return True
        # A number of the remote numpy comes back as the client's numpy scalar
        # (a value): it is an instance of the remote class of the same name.
        t = type(obj)
        if t.__module__ != "numpy" or cls.__module__ != "numpy":
            return False
        name = cls.__qualname__
        return any(k.__module__ == "numpy" and k.__qualname__ == name for k in t.__mro__)


class LazyMethod:
    """``proxy.method`` before it is called: calling it is one message."""

    __slots__ = ("_t_name", "_t_obj")

    def __init__(self, obj: RemoteObject, name: str) -> None:
        self._t_obj = obj
        self._t_name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._t_obj
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        return obj._t_s.callmethod(obj, self._t_name, args, kwargs)

    def _t_materialize(self) -> Any:
        obj = self._t_obj
        return obj._t_s.getattr(obj, self._t_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_t_"):
            raise AttributeError(name)
        return getattr(self._t_materialize(), name)

    def __repr__(self) -> str:
        return repr(self._t_materialize())


class RemoteIterator:
    """Iteration over a remote object.

    Items fixed when iteration starts (a tensor's rows, a tuple's items) come
    with the iterator, in one round trip. When the worker knows how many items
    are left (sequences, DataLoaders), the items are fetched pipelined, without
    a round trip each; the iterator's end is then confirmed once.

    Items that can change under the loop (an array's, when the body writes to
    the array) come as a *checked* snapshot: used only while the session's epoch
    has not moved (no call that may change a remote object was sent since, so
    nothing could have changed them); after such a call each item is read again
    from the object. A small one-dimensional array is iterated over its local copy
    (client/_replica.py), checked the same way; the rows of a small array come with
    its copy, and each row handed out has its own (``x[i]`` of a row reads it). The
    snapshot lets go of each item it hands out: the loop holds it, as long as it likes.
    A small 1-D tensor's items come with their values (client/_itemvalues.py).
    """

    __slots__ = ("_it", "_items", "_k", "_left", "_list", "_n", "_obj", "_rows", "_s", "_seq")

    def __init__(self, session: Remoting, obj: Any) -> None:
        self._s = session
        self._list: list[Any] | None = None
        self._rows: Any = None
        local = session.local_items(obj)
        if local is not None:  # a small array: its local copy, checked the same way
            self._it = self._left = None
            self._items = iter(local)
            self._obj, self._seq, self._k, self._n = obj, session.epoch, 0, len(local)
            return
        reply = session.value_op(Op.ITER, obj)
        self._it, self._left, items = reply[:3]
        self._items = iter(items) if items is not None else None
        self._obj = None
        if len(reply) > 3 and reply[3] is False:  # fixed items, and their values
            session.item_values(items, reply[4])
        elif len(reply) > 3:  # a checked snapshot
            self._obj, self._seq, self._k, self._n = obj, session.epoch, 0, len(items)
            self._items, self._list = None, items
            if len(reply) > 4 and reply[4] is not None:  # rows, and the array's copy
                self._rows = session.row_copies(obj, reply[4])

    def __iter__(self) -> RemoteIterator:
        return self

    def __next__(self) -> Any:
        if self._obj is not None:
            k = self._k
            if k >= self._n:
                raise StopIteration
            self._k = k + 1
            if self._s.epoch == self._seq:
                items = self._list
                if items is None:
                    return next(self._items)
                item, items[k] = items[k], None
                if self._rows is not None:
                    self._s.row_copy(item, self._rows, k)
                return item
            self._items = self._list = self._rows = None
            return self._obj[k]
        if self._items is not None:
            return next(self._items)
        left = self._left
        if left:
            self._left = left - 1
            return self._s.next_item(self._it, more=True)
        item = self._s.next_item(self._it, more=False)
        if item is EXHAUSTED:
            raise StopIteration
        if left == 0:
            self._left = None  # the length was wrong: go on one by one
        return item


class RemoteModule(types.ModuleType):
    """A module that lives in the worker; its attributes are cached."""

    _t_s: Remoting
    _t_id: int

    def __init__(self, session: Remoting, hid: int, name: str) -> None:
        super().__init__(name)
        d = self.__dict__
        d["_t_s"] = session
        d["_t_id"] = hid
        d["__path__"] = []  # a package, as far as the import system is concerned

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_t_") or name in _LOCAL_CLASS_ATTRS:
            raise AttributeError(name)
        value = self._t_s.getattr(self, name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if (name.startswith("__") and name.endswith("__")) or isinstance(value, RemoteModule):
            self.__dict__[name] = value
            return
        self.__dict__.pop(name, None)
        self._t_s.apply_none(setattr, self, name, value)

    def __dir__(self) -> list[str]:
        return self._t_s.value(dir, self)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<remote module {self.__name__!r} on {self._t_s.address}>"


def build_mirror(session: Remoting, desc: Any, bases: tuple[type, ...]) -> RemoteType:
    """Create the mirror class for a type descriptor."""
    ns: dict[str, Any] = {
        "_t_internal": True,
        "__slots__": (),
        "__module__": desc.module,
        "__qualname__": desc.qualname,
        "_t_tid": desc.tid,
        "_t_methods": desc.methods,
        "_t_s": session,
    }
    for name in desc.dunders:
        fn = SPECIALS.get(name)
        if fn is not None:
            ns[name] = fn
    if "__hash__" not in desc.dunders:
        ns["__hash__"] = None
    return RemoteType(desc.name, bases or (RemoteObject,), ns)


# -- exceptions ------------------------------------------------------------------
_exception_mirrors: dict[tuple[str, str], type[BaseException]] = {}


def exception_class(lineage: tuple[tuple[str, str], ...]) -> type[BaseException]:
    """The local class for a remote exception class.

    Builtin exceptions are themselves; others become local subclasses of their
    mirrored parent, down to the nearest builtin, so ``except RuntimeError``
    and ``except torch.cuda.OutOfMemoryError`` both catch what they should.
    """
    module, qualname = lineage[0]
    if module == "builtins":
        import builtins

        found = getattr(builtins, qualname, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
    # A class the client has itself (the script's own exceptions, shipped to the
    # worker by value, and Tether's errors) is that very class, so that
    # `except StopTraining:` catches it.
    local = sys.modules.get(module)
    if local is not None and not isinstance(local, RemoteModule):
        obj: Any = local
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
    key = (module, qualname)
    cls = _exception_mirrors.get(key)
    if cls is None:
        base = exception_class(lineage[1:]) if len(lineage) > 1 else Exception
        cls = type(
            qualname.rpartition(".")[2],
            (base,),
            {"__module__": module, "__qualname__": qualname, "_t_lineage": lineage},
        )
        _exception_mirrors[key] = cls
    return cls


# -- tuples that travel by value but keep their remote type's face ----------------------
_tuple_mirrors: dict[tuple[int, int], type] = {}


def tuple_mirror(
    session: Remoting, cls_hid: int, tid: int, items: tuple[Any, ...], r: str, s: str
) -> Any:
    key = (id(session), tid)
    cls = _tuple_mirrors.get(key)
    if cls is None:
        desc = session.types[tid]
        cls = type(
            desc.name,
            (_TupleMirror,),
            {"__module__": desc.module, "__qualname__": desc.qualname, "_t_hid": cls_hid},
        )
        _tuple_mirrors[key] = cls
    obj = cls(items)
    obj._t_repr = r
    obj._t_str = s
    return obj


class _TupleMirror(tuple[Any, ...]):
    """A remote tuple subclass (``torch.Size``) as a real local tuple."""

    _t_hid: ClassVar[int]
    _t_repr: str
    _t_str: str

    def __repr__(self) -> str:
        return self._t_repr

    def __str__(self) -> str:
        return self._t_str
