"""The worker's engine: a session's handle table and the execution of its calls.

(Over 400 lines: the engine is still one class that executes calls and talks to the
client through blocking callbacks; the sans-I/O ``WorkerProtocol`` beside the client's
``ClientProtocol`` is the cut that will shrink it, and has not been made yet.)

Theory of operation
-------------------
The client names results itself. A synchronous call (shape ANY) gets a REPLY
with its value, pickled by :class:`WorkerPickler`: plain data by value, other
objects as new worker-numbered handles (negative ids). A pipelined call carries
the shape the client assumed (handle ids it allocated, or None) and gets no
reply: the engine binds the result to those ids.

When a pipelined call fails the engine enters the *failed* state: it remembers
the error, poisons the call's result ids, and skips every later call (poisoning
their results too), because locally the script would never have got past the
failing line. The next synchronous call is answered with that error, flagged
DEFERRED; the client raises it where the script can catch it and sends RESUME,
which returns the engine to normal. Calls that use a poisoned handle fail with
the original error.

The engine does no I/O itself: it is given ``send(kind, flags, seq, meta,
buffers)`` and ``request(WorkerRequest)`` (a blocking round trip to the client,
used to fetch the client's modules and files).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import operator
import pickle
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from tether._code import global_names
from tether._errors import ObjectReleased, ProtocolError
from tether.acceptor._callers import call_from_module, is_caller_sensitive
from tether.acceptor._clientobj import ClientObject
from tether.acceptor._codec import (
    ByRef,
    TypeRegistry,
    WorkerPickler,
    error_payload,
    exact_length,
    is_plain,
    iter_functions,
    numpy_scalar_types,
)
from tether.acceptor._files import ClientFile
from tether.acceptor._namespace import Namespaces, ScriptNamespace
from tether.wire import Flag, Kind, _compact
from tether.wire._compact import COMPACT_TAG
from tether.wire._ops import (
    DISCARD,
    NAMESPACE_TAG,
    NONE,
    RELEASE_TAG,
    Handle,
    Items,
    Op,
    Shape,
    shape_from_wire,
    shape_handles,
    unpack_batch,
    unpack_ids,
)
from tether.wire._requests import RequestFn, WriteGlobal

SendFn = Callable[[int, int, int, bytes, Sequence[Any]], None]


class _Mispredicted(Exception):
    pass


class _Exhausted:
    """What NEXT returns when its iterator has ended (a REPLY flagged EXHAUSTED)."""

    __slots__ = ()


_EXHAUSTED = _Exhausted()


_SYNC = int(Flag.SYNC)
#: Iterators whose items are fixed when iteration starts, and how many of them
#: ITER sends at once.
_SNAPSHOT_ITERATORS = frozenset(
    {"tuple_iterator", "range_iterator", "longrange_iterator", "str_ascii_iterator",
     "str_iterator", "bytes_iterator"}
)  # fmt: skip
_PREFETCH_MAX = 4096
_BATCH = int(Flag.BATCH)
_CONTAINERS = (list, dict, set, bytearray)
# Iterating an existing container yields its items, which are places too.
_CONTAINER_ITERATORS = frozenset(
    {"list_iterator", "tuple_iterator", "dict_valueiterator", "list_reverseiterator"}
)


class Engine:
    """Executes one session's calls; see the module docstring."""

    def __init__(
        self,
        send: SendFn,
        request: RequestFn,
        *,
        value_modules: frozenset[str] = frozenset(),
        scalar_modules: frozenset[str] = frozenset(),
    ) -> None:
        self._send = send
        self.request = request
        self.value_modules = value_modules
        self.scalar_types: frozenset[type] = frozenset()
        if "numpy" in scalar_modules:
            with contextlib.suppress(ImportError):  # no numpy here: none to send
                self.scalar_types = numpy_scalar_types()
        self.handles: dict[int, Any] = {}
        self.poisoned: dict[int, BaseException] = {}
        self._next_hid = -1
        self._interned: dict[int, int] = {}  # id(obj) -> hid, for classes and modules
        self._interned_hids: set[int] = set()  # never released: the client shares them
        self.types = TypeRegistry()
        self.failed: BaseException | None = None
        self.client_files: set[str] = set()
        self.touched_client = False
        # Queued output: (stderr?, text), or (None, WARNING meta) for a warning.
        self.output: list[tuple[bool | None, str]] = []
        self._client_objects: dict[int, ClientObject] = {}
        self.resolved: dict[tuple[str, str], Any] = {}
        self._named: dict[bytes, Any] = {}  # the same for compact calls
        self.calls = 0
        # The script's modules, functions and classes (see _namespace.py): the
        # client's id of each function and class built here, both ways.
        self.namespaces = Namespaces(request)
        self.script_objs: dict[int, Any] = {}
        self.script_ids: dict[int, int] = {}

    # -- handles --------------------------------------------------------------
    def new_handle(self, obj: Any) -> int:
        hid = self._next_hid
        self._next_hid -= 1
        self.handles[hid] = obj
        return hid

    def intern(self, obj: Any) -> int:
        hid = self._interned.get(id(obj))
        if hid is None:
            hid = self.new_handle(obj)
            self._interned[id(obj)] = hid
            self._interned_hids.add(hid)
        return hid

    def lookup(self, hid: int) -> Any:
        try:
            return self.handles[hid]
        except KeyError:
            pass
        err = self.poisoned.get(hid)
        if err is not None:
            raise err
        raise ObjectReleased(f"remote object #{hid} was released or never existed")

    def client_object(self, oid: int) -> ClientObject:
        obj = self._client_objects.get(oid)
        if obj is None:
            obj = self._client_objects[oid] = ClientObject(self.request, oid)
        return obj

    # -- the script's code -------------------------------------------------------
    def _register(self, oid: int, obj: Any) -> Any:
        self.script_objs[oid] = obj
        self.script_ids[id(obj)] = oid
        _spawn_by_value(obj)
        return obj

    def script_ref(self, oid: int) -> Any:
        try:
            return self.script_objs[oid]
        except KeyError:
            raise ProtocolError(
                f"the client referred to its function or class #{oid}, which never arrived"
            ) from None

    def script_module(self, info: tuple[str, str | None, str | None, bool]) -> Any:
        self.namespaces.make(*info)
        return sys.modules[info[0]]

    def script_function(
        self,
        oid: int,
        info: tuple[str, str | None, str | None, bool],
        code: types.CodeType,
        closure: tuple[types.CellType, ...] | None,
    ) -> types.FunctionType:
        """A function of the script's, with its module's namespace as globals
        (cloudpickle's state setter fills in the rest)."""
        namespace = self.namespaces.make(*info)
        self.client_files.add(code.co_filename)
        fn = types.FunctionType(code, namespace, code.co_name, None, closure)
        return self._register(oid, fn)  # type: ignore[no-any-return]

    def script_class(
        self,
        oid: int,
        info: tuple[str, str | None, str | None, bool],
        maker: Callable[..., type],
        args: tuple[Any, ...],
    ) -> type:
        """A plain class of the script's (cloudpickle's skeleton; its state setter
        fills in the body)."""
        self.namespaces.make(*info)
        return self._register(oid, maker(*args))  # type: ignore[no-any-return]

    def script_synced(
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
        remote_cells = [(closure[i], self.client_object(coid)) for i, coid in cells]

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

    def set_names(self, meta: bytes) -> None:
        """Apply the script's rebinds (a namespace entry of the call stream)."""
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
                value = self._loads(blob, ())
            except Exception:  # read it again where it is used, and fail there
                self.namespaces.forget(module, name)
            else:
                self.namespaces.update(module, name, value)

    def release(self, hids: Sequence[int]) -> None:
        interned = self._interned_hids
        handles, poisoned = self.handles, self.poisoned
        for hid in hids:
            if hid in interned:
                continue
            handles.pop(hid, None)
            if poisoned:
                poisoned.pop(hid, None)

    # -- frames -----------------------------------------------------------------
    def on_frame(
        self, kind: int, flags: int, seq: int, meta: bytes, buffers: Sequence[Any]
    ) -> None:
        if kind == Kind.CALL:
            if flags & _BATCH:
                for sub in unpack_batch(meta):
                    tag = sub[:1]
                    if tag == RELEASE_TAG:  # handles the client let go of here
                        self.release(unpack_ids(sub[1:]))
                    elif tag == NAMESPACE_TAG:
                        self.set_names(sub[1:])
                    else:
                        self.on_call(0, seq, sub, ())
                        seq += 1
            elif meta[:1] == NAMESPACE_TAG:
                self.set_names(meta[1:])
            else:
                self.on_call(flags, seq, meta, buffers)
        elif kind == Kind.RELEASE:
            self.release(unpack_ids(meta))
        elif kind == Kind.RESUME:
            self.failed = None
        else:
            raise ProtocolError(f"the worker does not expect frame kind {kind} here")

    def on_call(self, flags: int, seq: int, meta: bytes, buffers: Sequence[Any]) -> None:
        self.calls += 1
        sync = flags & _SYNC
        if self.failed is not None:
            if sync:
                self._reply_error(seq, self.failed, deferred=True)
            else:
                self._poison_shape(self._peek_shape(meta, buffers), self.failed)
            return
        self.touched_client = False
        shape: Shape = None
        try:
            if meta[:1] == COMPACT_TAG:
                msg = self._compact(meta)
                op, shape = msg[0], msg[1]
            else:
                msg = self._loads(meta, buffers)
                op, shape = msg[0], shape_from_wire(msg[1])
            result = self._execute(op, msg[2:])
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not sync:
                raise
            if sync:
                self._reply_error(seq, exc, deferred=False)
            else:
                self.failed = exc
                self._poison_shape(shape, exc)
            return
        if sync:
            # A list or dict read from an attribute or an item is a place the
            # script may change in place: it stays remote. Other results are fresh.
            place = (
                op == Op.GETATTR
                or (op == Op.CALL and msg[2] is operator.getitem)
                or (op == Op.NEXT and type(msg[2]).__name__ in _CONTAINER_ITERATORS)
            )
            self._reply_value(
                seq, ByRef(result) if place and type(result) in _CONTAINERS else result
            )
        else:
            try:
                self._bind(shape, result)
            except _Mispredicted as exc:
                self._notice(seq, str(exc))
            else:
                if self.touched_client:
                    # It used the client's files or objects: the script must see
                    # the effect when the call returns, so stop pipelining it.
                    self._notice(seq, "the call uses the client's files or objects")

    # -- execution ------------------------------------------------------------
    def _execute(self, op: int, f: tuple[Any, ...]) -> Any:
        if op == Op.CALLMETHOD:
            target, name, args, kwargs = f
            return getattr(target, name)(*args, **kwargs)
        if op == Op.CALL:
            fn, args, kwargs = f
            if is_caller_sensitive(fn):
                return call_from_module(fn, args, kwargs, self.namespaces)
            return fn(*args, **kwargs)
        if op == Op.GETATTR:
            value = getattr(f[0], f[1])
            if isinstance(f[0], types.ModuleType) and not is_plain(value):
                self.intern(value)  # module constants stay one object on the client too
            return value
        if op == Op.NEXT:
            try:
                return next(f[0])
            except StopIteration:
                return _EXHAUSTED
        if op == Op.ITER:
            target = f[0]
            it = iter(target)
            if type(target).__name__ == "ndarray" and type(target).__module__ == "numpy":
                size = len(target)
                if size <= _PREFETCH_MAX:
                    # An array's items can change under the loop (the body may
                    # write to the array): a snapshot the client uses only while
                    # it has sent nothing else, re-reading items after that.
                    return (it, size, list(target), True)
            n = exact_length(it)
            if n is not None and n <= _PREFETCH_MAX and type(it).__name__ in _SNAPSHOT_ITERATORS:
                # Items that cannot change under the loop (a tensor's rows, a
                # tuple's items): all of them in this one reply, not a round trip
                # each. Values stay values, other items become handles.
                return (it, 0, list(it))
            return (it, n, None)
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
        if isinstance(namespace.get("__module__"), str) and self.namespaces.get(cls.__module__):
            _spawn_by_value(cls)
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
            if self.types.tid(type(value)) != shape.tid:
                raise _Mispredicted(f"result type changed to {type(value).__qualname__}")
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
            self._poison_shape(shape, err)
            raise _Mispredicted(str(err))
        for sub, item in zip(parts, value, strict=True):
            self._bind(sub, item)

    def _poison_shape(self, shape: Shape, err: BaseException) -> None:
        for hid in shape_handles(shape):
            self.poisoned[hid] = err
            self.handles.pop(hid, None)

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

    def _peek_shape(self, meta: bytes, buffers: Sequence[Any]) -> Shape:
        """The shape of a call we are going to skip, without running anything."""
        if meta[:1] == COMPACT_TAG:
            return _compact.peek_shape(meta)
        try:
            return shape_from_wire(_ShapeOnly(io.BytesIO(meta), buffers=buffers).load())
        except Exception:
            return None

    def dumps_value(self, value: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
        buf = io.BytesIO()
        buffers: list[pickle.PickleBuffer] = []
        WorkerPickler(
            buf,
            new_handle=self.new_handle,
            intern=self.intern,
            interned=self._interned,
            types_=self.types,
            value_modules=self.value_modules,
            buffers=buffers,
            script_ids=self.script_ids,
            scalar_types=self.scalar_types,
        ).dump(value)
        inner = buf.getvalue()
        return pickle.dumps((self.types.take_pending(), inner), protocol=5), buffers

    def _reply_value(self, seq: int, value: Any) -> None:
        if value is _EXHAUSTED:
            self.flush_output()
            self._send(Kind.REPLY, Flag.EXHAUSTED, seq, b"", ())
            return
        try:
            meta, buffers = self.dumps_value(value)
        except Exception as exc:
            self._reply_error(seq, exc, deferred=False)
            return
        flags = Flag.NOPIPE if self.touched_client else Flag.NONE
        self.flush_output()
        self._send(Kind.REPLY, flags, seq, meta, [b.raw() for b in buffers])

    def _reply_error(self, seq: int, exc: BaseException, *, deferred: bool) -> None:
        flags = Flag.ERROR | (Flag.DEFERRED if deferred else 0)
        self.flush_output()
        self._send(Kind.REPLY, flags, seq, error_payload(exc), ())

    def _notice(self, seq: int, text: str) -> None:
        self._send(Kind.NOTICE, 0, seq, pickle.dumps(("mispredicted", text)), ())

    def loads(self, meta: bytes, buffers: Sequence[Any]) -> Any:
        """Decode what the client sent (a call, or the answer to a request)."""
        return self._loads(meta, buffers)

    def _loads(self, meta: bytes, buffers: Sequence[Any]) -> Any:
        return WorkerUnpickler(self, io.BytesIO(meta), buffers=buffers).load()

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
                self.client_files.add(fn.__code__.co_filename)

    # -- output -----------------------------------------------------------------
    def write_output(self, text: str, *, stderr: bool) -> None:
        self.output.append((stderr, text))

    def write_warning(self, meta: str) -> None:
        """Queue a warning (the JSON of a WARNING frame) in its place among the output.

        The call that warned is marked as touching the client (as file access
        does): the client stops pipelining its site, so that later warnings of
        the same site reach the script at the line that made them.
        """
        self.touched_client = True
        self.output.append((None, meta))

    def flush_output(self) -> None:
        if not self.output:
            return
        chunks, self.output = self.output, []
        # Merge consecutive writes to the same stream into one frame; a warning
        # is a frame of its own, between the text written before and after it.
        cur_err = False
        cur: list[str] = []
        for is_err, text in chunks:
            if is_err is None:
                if cur:
                    self._send_output(cur_err, "".join(cur))
                    cur = []
                self._send(Kind.WARNING, 0, 0, text.encode(), ())
                continue
            if cur and is_err != cur_err:
                self._send_output(cur_err, "".join(cur))
                cur = []
            cur_err = is_err
            cur.append(text)
        if cur:
            self._send_output(cur_err, "".join(cur))

    def _send_output(self, stderr: bool, text: str) -> None:
        flags = Flag.STDERR if stderr else Flag.NONE
        self._send(Kind.OUTPUT, flags, 0, text.encode("utf-8", "surrogateescape"), ())


class WorkerUnpickler(pickle.Unpickler):
    """Resolves the client's references to this session's objects.

    Globals are looked up once per session (``engine.resolved``): a call names
    the same few functions over and over, and the import machinery's lookup
    costs more than the rest of decoding a small call.
    """

    def __init__(self, engine: Engine, file: io.BytesIO, *, buffers: Sequence[Any]) -> None:
        super().__init__(file, buffers=buffers)
        self._engine = engine

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        found = self._engine.resolved.get(key)
        if found is None:
            found = self._resolve(module, name)
            self._engine.resolved[key] = found
        return found

    def _resolve(self, module: str, name: str) -> Any:
        if module != "tether._refs":
            return super().find_class(module, name)
        e = self._engine
        refs: dict[str, Any] = {
            "ref": e.lookup,
            "attr": lambda hid, attr: getattr(e.lookup(hid), attr),
            "code": e.loads_blob,
            "exc_class": _exception_class,
            "client_obj": e.client_object,
            "script_fn": e.script_function,
            "script_cls": e.script_class,
            "script_ref": e.script_ref,
            "script_synced": e.script_synced,
            "script_module": e.script_module,
            "client_file": lambda oid, fname, mode: ClientFile(e.request, oid, fname, mode),
            "tuple_mirror": lambda hid, items: e.lookup(hid)(items),
        }
        try:
            return refs[name]
        except KeyError:
            raise pickle.UnpicklingError(f"unknown reference kind {name!r}") from None


class _ShapeOnly(pickle.Unpickler):
    """Reads just enough of a call to find its shape (never imports anything)."""

    def find_class(self, module: str, name: str) -> Any:
        return lambda *a, **k: None

    def load(self) -> Any:
        return super().load()[1]


def _exception_class(lineage: Sequence[tuple[str, str]]) -> type:
    module, qualname = lineage[0]
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _spawn_by_value(obj: Any) -> None:
    """Let processes the worker spawns (DataLoader workers with "spawn") receive
    the script's classes and functions: their ``__main__`` is not the script's,
    and they have none of the script's modules, so multiprocessing's pickler
    must send these by value, not by name."""
    from multiprocessing.reduction import ForkingPickler

    if isinstance(obj, type):
        ForkingPickler.register(obj, _by_value)
    else:
        # Functions bypass the dispatch table in the C pickler: override instead.
        ForkingPickler.reducer_override = _function_by_value  # type: ignore[method-assign]


def _page_globals(obj: Any) -> None:
    """Read every global name the object's code uses, so that names not yet
    paged in from the client travel with it to a spawned process."""
    for fn in iter_functions(obj):
        namespace = fn.__globals__
        if isinstance(namespace, ScriptNamespace):
            for name in global_names(fn.__code__):
                try:
                    namespace[name]
                except Exception:
                    continue


def _by_value(obj: Any) -> Any:
    import cloudpickle

    _page_globals(obj)
    return (cloudpickle.loads, (cloudpickle.dumps(obj),))


def _function_by_value(pickler: Any, obj: Any) -> Any:
    if type(obj) is types.FunctionType and isinstance(obj.__globals__, ScriptNamespace):
        return _by_value(obj)
    return NotImplemented
