"""The worker's engine: the execution of a session's calls, over its handle table
(:mod:`tether.acceptor._handles`).

Theory of operation
-------------------
The client names results itself. A synchronous call (shape ANY) gets a REPLY
with its value, pickled by :class:`WorkerPickler`: plain data by value, other
objects as worker-numbered handles (negative ids; an object the client still
holds goes under the id it went under before). A pipelined call carries
the shape the client assumed (handle ids it allocated, or None) and gets no
reply: the engine binds the result to those ids.

The engine only executes: :meth:`Engine.call_sync` returns a value (or
raises), :meth:`Engine.call_pipelined` reports an outcome (None, a
:class:`~tether.acceptor._events.Mispredicted` or a
:class:`~tether.acceptor._events.CallFailed`). Which calls run at all, the
deferred error of a failed pipelined call, the poisoned result ids, the
replies and the requests' round trips are the
:class:`~tether.acceptor._protocol.WorkerProtocol`'s; the engine reads the
poisoned ids (a handle that failed fails with the original error) and is
given ``request(WorkerRequest)``, a blocking round trip to the client that
the shell makes through the protocol (to fetch the client's modules and
files). The script's functions, classes and namespaces are its
:class:`~tether.acceptor._scriptcode.ScriptCode`'s; the client's references
resolve through the table :class:`~tether.acceptor._unpickler.WorkerUnpickler`
is given.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import operator
import pickle
import types
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from tether._errors import ProtocolError
from tether.acceptor import _iteration as iteration
from tether.acceptor._callers import call_from_module, is_caller_sensitive
from tether.acceptor._clientobj import ClientObject, lent_iterator
from tether.acceptor._codec import (
    ByRef,
    TypeRegistry,
    WorkerPickler,
    is_plain,
    iter_functions,
    numpy_local_classes,
    numpy_scalar_types,
)
from tether.acceptor._events import CallFailed, Mispredicted, Outcome
from tether.acceptor._files import ClientFile
from tether.acceptor._fused import fuser
from tether.acceptor._handles import Handles
from tether.acceptor._scriptcode import ScriptCode
from tether.acceptor._spawn import spawn_by_value
from tether.acceptor._unpickler import WorkerUnpickler, array_from, exception_class
from tether.wire import _compact
from tether.wire._compact import COMPACT_TAG
from tether.wire._lanes import NOT_RUN, LaneReader
from tether.wire._messages import RETURNED_NONE
from tether.wire._ops import (
    DISCARD,
    NONE,
    Handle,
    Items,
    Op,
    Shape,
    shape_from_wire,
)
from tether.wire._requests import RequestFn
from tether.wire._values import encode as encode_value


class _Mispredicted(Exception):
    def __init__(
        self, why: str, poison: Shape = None, error: BaseException | None = None, tid: int = 0
    ) -> None:
        super().__init__(why)
        self.poison = poison
        self.error = error
        self.tid = tid  # the class the result has instead (a handle of another type)


class _Exhausted:
    """What NEXT returns when its iterator has ended (a REPLY flagged EXHAUSTED)."""

    __slots__ = ()


#: What :meth:`Engine.call_sync` returns for a NEXT whose iterator has ended.
EXHAUSTED = _Exhausted()


_CONTAINERS = (list, dict, set, bytearray)
_FUNCTION = types.FunctionType
# Iterating an existing container yields its items, which are places too.
_CONTAINER_ITERATORS = frozenset(
    {"list_iterator", "tuple_iterator", "dict_valueiterator", "list_reverseiterator"}
)


class Engine:
    """Executes one session's calls; see the module docstring."""

    def __init__(
        self,
        request: RequestFn,
        *,
        poisoned: Mapping[int, BaseException] = MappingProxyType({}),
        value_modules: frozenset[str] = frozenset(),
        scalar_modules: frozenset[str] = frozenset(),
    ) -> None:
        self.request = request
        self.value_modules = value_modules
        self.scalar_types: frozenset[type] = frozenset()
        self.local_classes: frozenset[type] = frozenset()
        if "numpy" in scalar_modules:
            with contextlib.suppress(ImportError):  # no numpy here: none to send
                self.scalar_types = numpy_scalar_types()
                self.local_classes = numpy_local_classes(self.scalar_types)
        #: The handle table (acceptor/_handles.py); ``handles`` is its plain dict.
        self.table = table = Handles(poisoned)
        self.handles: dict[int, Any] = table.objects
        self.intern = table.intern
        self.lookup = table.lookup
        self.release = table.release
        self.types = TypeRegistry()
        self._tids = self.types.ids
        self._client_objects: dict[int, ClientObject] = {}
        self.resolved: dict[tuple[str, str], Any] = {}
        self._named: dict[bytes, Any] = {}  # the same for compact calls
        # Compact calls of a layout read before: one unpack each (wire/_lanes.py),
        # and pipelined ones run by one function each (acceptor/_fused.py).
        lanes = LaneReader(self._global, fuser(self.handles, self._tids, self._bound))
        self._lane = lanes.read
        #: ``run_lane(meta)``: a compact pipelined call run by its layout's runner
        #: (its outcome), or NOT_RUN; :meth:`call_general` then runs it.
        self.run_lane = lanes.run
        self.script = ScriptCode(request, self.client_object)
        self._refs = self._reference_kinds()

    def _reference_kinds(self) -> dict[str, Callable[..., Any]]:
        """What each kind of reference in the client's pickles resolves to here
        (the names of :mod:`tether._refs`)."""
        script = self.script
        return {
            "ref": self.lookup,
            "attr": lambda hid, attr: getattr(self.lookup(hid), attr),
            "code": self.loads_blob,
            "exc_class": exception_class,
            "client_obj": self.client_object,
            "client_iter": lambda oid, name="iterator": lent_iterator(name)(self.request, oid),
            "script_fn": script.function,
            "script_cls": script.cls,
            "script_ref": script.ref,
            "script_synced": script.synced,
            "script_module": script.module,
            "client_file": lambda oid, fname, mode: ClientFile(self.request, oid, fname, mode),
            "tuple_of": lambda hid, items: self.lookup(hid)(items),
            "type_id": self.types.cls,
            "array": array_from,
        }

    def client_object(self, oid: int) -> ClientObject:
        obj = self._client_objects.get(oid)
        if obj is None:
            obj = self._client_objects[oid] = ClientObject(self.request, oid)
        return obj

    def set_names(self, meta: bytes) -> None:
        """Apply the script's rebinds (a namespace entry of the call stream)."""
        self.script.set_names(meta, lambda blob: self._loads(blob, ()))

    # -- calls ------------------------------------------------------------------------
    def call_sync(self, meta: bytes, buffers: Sequence[Any]) -> Any:
        """Run a synchronous call; returns what the client gets (:data:`EXHAUSTED`
        for a NEXT at the end), or raises what the call raised."""
        if meta[:1] == COMPACT_TAG:
            msg = self._lane(meta, self.lookup) or self._compact(meta)
        else:
            msg = self._loads(meta, buffers)
        op = msg[0]
        result = self._execute(op, msg[2:])
        # A list or dict read from an attribute or an item is a place the
        # script may change in place: it stays remote. Other results are fresh.
        if type(result) in _CONTAINERS and (
            op == Op.GETATTR
            or (op == Op.CALL and msg[2] is operator.getitem)
            or (op == Op.NEXT and type(msg[2]).__name__ in _CONTAINER_ITERATORS)
        ):
            return ByRef(result)
        return result

    def call_pipelined(self, meta: bytes, buffers: Sequence[Any]) -> Outcome:
        """Run a pipelined call and bind its result to the ids the client chose:
        None, or what went wrong (KeyboardInterrupt and SystemExit propagate)."""
        if meta[:1] == COMPACT_TAG:
            outcome = self.run_lane(meta)
            if outcome is not NOT_RUN:
                return outcome  # type: ignore[no-any-return]
        return self.call_general(meta, buffers)

    def call_general(self, meta: bytes, buffers: Sequence[Any]) -> Outcome:
        """:meth:`call_pipelined` without the lanes' runners."""
        shape: Shape = None
        try:
            if meta[:1] == COMPACT_TAG:
                msg = self._lane(meta, self.lookup) or self._compact(meta)
                shape = msg[1]
            else:
                msg = self._loads(meta, buffers)
                shape = shape_from_wire(msg[1])
            result = self._execute(msg[0], msg[2:])
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return CallFailed(shape, exc)
        return self._bound(shape, result)

    def _bound(self, shape: Shape, result: Any) -> Outcome:
        """Bind a pipelined call's result to its ids: None, or a Mispredicted."""
        try:
            self._bind(shape, result)
        except _Mispredicted as exc:
            # The client made a proxy of the class it guessed: it gets the class the
            # result has, with the descriptions of the types it has not seen yet.
            types = tuple(self.types.take_pending()) if exc.tid else ()
            return Mispredicted(str(exc), exc.poison, exc.error, exc.tid, types)
        return None

    # -- execution ------------------------------------------------------------
    def _execute(self, op: int, f: tuple[Any, ...]) -> Any:
        if op == Op.CALLMETHOD:
            target, name, args, kwargs = f
            return getattr(target, name)(*args, **kwargs)
        if op == Op.CALL:
            fn, args, kwargs = f
            if type(fn) is _FUNCTION and is_caller_sensitive(fn):  # (builtins never are)
                return call_from_module(fn, args, kwargs, self.script.namespaces)
            return fn(*args, **kwargs) if kwargs else fn(*args)
        if op == Op.GETATTR:
            value = getattr(f[0], f[1])
            if isinstance(f[0], types.ModuleType) and not is_plain(value):
                self.intern(value)  # module constants stay one object on the client too
            return value
        if op == Op.NEXT:
            try:
                return next(f[0])
            except StopIteration:
                return EXHAUSTED
        if op == Op.ITER:
            return iteration.start(f[0], with_rows=bool(self.scalar_types))
        if op == Op.IMPORT:
            return importlib.import_module(f[0])
        if op == Op.MAKECLASS:
            return self._make_class(*f)
        if op == Op.PING:
            return None
        raise ProtocolError(f"unknown operation {op}")

    def _make_class(
        self, name: str, bases: tuple[Any, ...], namespace: dict[str, Any], kwds: dict[str, Any]
    ) -> type:
        # Zero-argument super() reads the class from a cell in each method's
        # closure. The methods were shipped by value, each with its own empty
        # cell (cloudpickle copies cell contents, not cells): fill them all.
        namespace.pop("__classcell__", None)
        cls = types.new_class(name, bases, kwds, lambda ns: ns.update(namespace))
        self.adopt(cls)
        if isinstance(namespace.get("__module__"), str) and self.script.namespaces.get(
            cls.__module__
        ):
            spawn_by_value(cls)
        for value in namespace.values():
            for top in iter_functions(value):
                # Decorated methods too (``@torch.no_grad()``, the wrapper of a
                # method that rebinds globals): follow ``__wrapped__``.
                fn: Any = top
                for _ in range(16):
                    code = fn.__code__
                    if "__class__" in code.co_freevars and fn.__closure__:
                        cell = fn.__closure__[code.co_freevars.index("__class__")]
                        cell.cell_contents = cls
                    fn = getattr(fn, "__wrapped__", None)
                    if not isinstance(fn, types.FunctionType):
                        break
        return cls

    # -- results ----------------------------------------------------------------
    def _bind(self, shape: Shape, value: Any) -> None:
        if type(shape) is Handle:
            self.handles[shape.hid] = value
            if value is None:
                raise _Mispredicted(RETURNED_NONE)
            tid = self._tids.get(type(value))  # the registry's table: no call when known
            if tid is None:
                tid = self.types.tid(type(value))
            if tid != shape.tid:
                raise _Mispredicted(f"result type changed to {type(value).__qualname__}", tid=tid)
            return
        if shape is DISCARD:
            return
        if shape is NONE:
            if value is not None:
                raise _Mispredicted(f"expected None, got {type(value).__qualname__}")
            return
        if type(shape) is not Items:
            raise ProtocolError(f"a pipelined call with no result shape: {shape!r}")
        parts = shape.parts
        if type(value) is not (list if shape.is_list else tuple) or len(value) != len(parts):
            err = TypeError(
                f"a pipelined result changed shape (now {type(value).__qualname__}); "
                "the proxies made for it cannot be used"
            )
            raise _Mispredicted(str(err), shape, err)
        for sub, item in zip(parts, value, strict=True):
            self._bind(sub, item)

    def _compact(self, meta: bytes) -> tuple[Any, ...]:
        """A compact call (see :mod:`tether.wire._compact`) as ``(op, shape, *fields)``."""
        op, shape, items, kwargs = _compact.decode(meta, self.lookup, self._global)
        if op == Op.CALL:
            return (op, shape, items[0], tuple(items[1:]), kwargs or {})
        if op == Op.CALLMETHOD:
            return (op, shape, items[0], items[1], tuple(items[2:]), kwargs or {})
        return (op, shape, *items)

    def _global(self, raw: bytes) -> Any:
        """The module-level function a compact call names (``module:qualname``)."""
        found = self._named.get(raw)
        if found is None:
            try:
                module, _, name = raw.decode().partition(":")
            except UnicodeDecodeError:
                raise ProtocolError("compact call with a malformed function name") from None
            found = self._named[raw] = getattr(importlib.import_module(module), name)
        return found

    def dumps_value(self, value: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
        if not self.types.pending:
            compact = encode_value(value)  # a float, an int, a bool, None, a str
            if compact is not None:
                return compact, []
        buf = io.BytesIO()
        buffers: list[pickle.PickleBuffer] = []
        WorkerPickler(
            buf,
            new_handle=self.table.share,
            intern=self.intern,
            interned=self.table.interned,
            types_=self.types,
            value_modules=self.value_modules,
            buffers=buffers,
            script_ids=self.script.ids,
            scalar_types=self.scalar_types,
            local_classes=self.local_classes,
        ).dump(value)
        inner = buf.getvalue()
        return pickle.dumps((self.types.take_pending(), inner), protocol=5), buffers

    def loads(self, meta: bytes, buffers: Sequence[Any]) -> Any:
        """Decode what the client sent (a call, or the answer to a request)."""
        return self._loads(meta, buffers)

    def _loads(self, meta: bytes, buffers: Sequence[Any]) -> Any:
        return WorkerUnpickler(io.BytesIO(meta), buffers, self._refs, self.resolved).load()

    def loads_blob(self, blob: bytes) -> Any:
        obj = self._loads(blob, ())
        self.adopt(obj)
        return obj

    def adopt(self, obj: Any) -> None:
        """Take in code shipped from the client: its files are the client's
        (``open`` in it opens the client's files)."""
        values = obj.values() if isinstance(obj, dict) else (obj,)
        for value in values:
            for fn in iter_functions(value):
                self.script.client_files.add(fn.__code__.co_filename)
