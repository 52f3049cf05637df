"""A session: one client's attachment to one worker.

Theory of operation
-------------------
The session is blocking and single-threaded (guarded by a lock for scripts
that use threads). Each operation on a proxy becomes one CALL frame. Whether
the client waits for it is decided here:

* Operations whose *value* the script needs (``bool``, ``len``, ``repr``,
  ``.item()`` ...) are synchronous: CALL with the SYNC flag, then wait for the
  REPLY, handling OUTPUT, REQUEST and NOTICE frames that come first.
* Other operations are *pipelined* once the session has seen what they return:
  a per-site prediction (keyed by the remote type and method, the function, or
  the operator and operand types) remembers the shape of the last result
  (None, a handle of type T, or a small list/tuple of those). The client
  allocates the handle ids itself, builds the proxies at once, and sends the
  call without waiting. The first call of each site is synchronous, to learn.
* Inside a ``try ... except`` that could catch a remote error (see
  :mod:`tether.client._trycheck`) every operation is synchronous, so errors
  raise in place. Elsewhere a failed pipelined call is raised at the next
  synchronous point (the worker skips everything after it meanwhile), which is
  where it would have ended the script anyway.
* Before the script writes to stdout or stderr, pending calls are synced, so
  the worker's prints and the script's stay in order.

Frames are batched: pipelined calls are queued and written when the script
next waits, or when enough have accumulated.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import linecache
import operator
import os
import pickle
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, Final

from tether._errors import (
    DeviceLost,
    ProtocolError,
    RemoteModuleNotFound,
    RemoteTraceback,
    SessionClosed,
    TetherError,
)
from tether.client._codec import (
    CallEncoder,
    ClientUnpickler,
    CodeContext,
    _Shared,
    dumps_code,
    dumps_inband,
    is_shared,
    share_global,
)
from tether.client._draws import MISS as _MISS
from tether.client._draws import Draws
from tether.client._namespace import LOCAL_MODULES, ScriptNamespaces, is_user_file
from tether.client._predict import HandleOf, ItemsOf, Predictions, Template, instantiate
from tether.client._proxy import (
    RemoteModule,
    RemoteObject,
    RemoteType,
    build_mirror,
    exception_class,
    tuple_mirror,
)
from tether.client._replica import Replicas
from tether.client._serve import serve_request
from tether.client._trycheck import in_handler, note_transparent_with
from tether.transport import Channel, ChannelClosed
from tether.transport._heart import Heart
from tether.wire import Flag, Kind
from tether.wire._compact import CompactEncoder
from tether.wire._messages import decode_warning
from tether.wire._ops import (
    ANY,
    DISCARD,
    EXHAUSTED,
    NAMESPACE_TAG,
    NONE,
    RELEASE_TAG,
    Handle,
    Items,
    Op,
    Shape,
    TypeDesc,
    pack_batch,
    pack_ids,
    shape_to_wire,
)

# Pipelined calls queued before they are written anyway. When the script
# waits, the worker still has the last batch to run: small batches keep that
# tail short. Measured (a loop reading a value every 200 calls): 16 per batch
# 12.6 us per iteration, 64 per batch 14.1 us; pipelined throughput the same.
_FLUSH_EVERY = 16
_FLUSH_BYTES = 256 * 1024
_SYNC = int(Flag.SYNC)  # plain ints on the hot path: enum arithmetic is slow
_NESTED = int(Flag.NESTED)
_BATCH = int(Flag.BATCH)
_CALL = int(Kind.CALL)
_RELEASE_BATCH = 256  # released handles sent together (or with the next sync)
_RELEASE_EVERY = 4  # in a batch, released handles are grouped by this many calls
_EXHAUSTED_FLAG = int(Flag.EXHAUSTED)
#: Remote classes whose items are all of one class: indexing them is one site.
_GETITEM: Final = operator.getitem
_HOMOGENEOUS = frozenset(
    {("torch", "Tensor"), ("numpy", "ndarray"), ("torch.nn.parameter", "Parameter")}
)
_FUNCTION_TYPES = frozenset(
    {"builtin_function_or_method", "function", "method", "method-wrapper",
     "cython_function_or_method", "fused_cython_function", "_lru_cache_wrapper",
     "partial", "wrapper_descriptor", "method_descriptor", "classmethod_descriptor",
     "_ArrayFunctionDispatcher", "ufunc"}  # numpy's functions and ufuncs
)  # fmt: skip

_new: Any = object.__new__
_set_s: Any = RemoteObject.__dict__["_t_s"].__set__
_set_id: Any = RemoteObject.__dict__["_t_id"].__set__


class Session:
    """One session; use :func:`tether.connect` to make one."""

    def __init__(
        self,
        channel: Channel,
        *,
        address: str,
        session_id: str,
        remote_modules: frozenset[str] = frozenset(),
        on_close: Callable[[], None] | None = None,
        heart: Heart | None = None,
    ) -> None:
        self.channel = channel
        self.address = address
        self.session_id = session_id
        self.remote_modules = remote_modules
        self.types: dict[int, TypeDesc] = {}
        self._mirrors: dict[int, RemoteType] = {0: RemoteObject}  # type: ignore[dict-item]
        self._modules: dict[int, RemoteModule] = {}
        self._classes: dict[int, RemoteType] = {}
        self._pred = Predictions()
        self._compact = CompactEncoder(RemoteType).encode
        self._released: list[int] = []
        self._released_at: list[int] = []  # len(self._batch) when each was released
        self._interned: dict[int, RemoteObject] = {}
        self._exported: dict[int, Any] = {}
        self._code = CodeContext(self._export)
        self._encoder = CallEncoder(self._code)
        self._ns = ScriptNamespaces()
        #: Local copies of arrays read element by element, when the client has numpy.
        self.replicas: Replicas | None = None
        #: Batches of numpy.random draws (client/_draws.py), when the client has numpy.
        self.draws: Draws | None = None
        self.draws_pending = False
        self._serving = 0  # > 0 while the script's code runs for a worker's request
        self._batch: list[bytes] = []
        self._batch_seq = 0
        self._batch_bytes = 0
        self._next_id = 1
        self._seq = 0
        self._queued = 0
        self._unsynced = False
        self._lost: str | None = None
        self._closed = False
        self._lock = threading.RLock()
        self._on_close = on_close
        self._out = sys.__stdout__
        self._err = sys.__stderr__
        self.stats = {"sync": 0, "async": 0}
        # The "default"/"module" de-duplication of warnings from modules the
        # script does not have itself (torch's own): one registry per module.
        self._warning_registries: dict[str, dict[Any, Any]] = {}
        self.resolvers: dict[str, Callable[..., Any]] = {
            "handle": self._mk_handle,
            "interned": self._mk_interned,
            "local": self._exported.__getitem__,
            "cls": self._mk_class,
            "module": self._mk_module,
            "exc_class": exception_class,
            "np_scalar": _np_scalar,
            "tuple_mirror": lambda hid, tid, items, r, s: tuple_mirror(self, hid, tid, items, r, s),
        }
        # Liveness (tether.wire._liveness): BEATs while the script computes or
        # waits, and the channel ended if the worker falls silent.
        self._heart = heart
        if heart is not None:
            heart.start()

    # -- public -------------------------------------------------------------------
    def import_module(self, name: str) -> Any:
        """The worker's module ``name``, as a proxy module (cached)."""
        for mod in self._modules.values():
            if mod.__name__ == name:
                return mod
        try:
            module = self._sync(Op.IMPORT, (name,))
        except ModuleNotFoundError as exc:
            if isinstance(exc, RemoteModuleNotFound):
                raise
            raise RemoteModuleNotFound(
                f"No module named {exc.name or name!r} on the acceptor at {self.address}; "
                "install it in the acceptor's environment",
                name=exc.name or name,
            ) from None
        return module

    def sync(self) -> None:
        """Wait until every call sent so far has run; raise a pending error."""
        with self._lock:
            self._sync(Op.PING, ())

    def release(self, obj: Any) -> None:
        """Free the remote object behind ``obj`` now, without waiting for GC.

        Using ``obj`` afterwards raises :class:`~tether.ObjectReleased`.
        """
        if not isinstance(obj, RemoteObject) or obj._t_s is not self:
            raise TypeError(f"not a proxy of this session: {type(obj).__qualname__}")
        with self._lock:
            self._release(obj._t_id)
            self._check_open()
            self._emit_batch()
            self._send_releases()

    def close(self) -> None:
        """End the session; the worker exits and frees everything it held."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_heart()  # before BYE: nothing may follow it
            if self._lost is None:
                try:
                    self._frame(Kind.BYE, 0, 0, b"")
                    self.channel.flush()
                except (ChannelClosed, OSError, ProtocolError):
                    pass
            self.channel.close()
            uninstall_ordered_streams(self)
            if self._on_close is not None:
                self._on_close()

    def abort(self) -> None:
        """End the session at once, without waiting for the calls in flight:
        the worker stops even in the middle of a call (Ctrl-C that ends the
        script). Nothing queued is sent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._batch = []
            self._stop_heart()
            self.channel.close()
            uninstall_ordered_streams(self)
            if self._on_close is not None:
                self._on_close()

    def finish(self) -> None:
        """Sync (raising any pending remote error), then close."""
        try:
            if not self._closed and self._lost is None:
                self.sync()
        finally:
            self.close()

    def _stop_heart(self) -> None:
        if self._heart is not None:
            self._heart.stop()

    def __enter__(self) -> Session:
        # Closing never swallows an error: calls in the block stay pipelined.
        note_transparent_with(sys._getframe(1))
        return self

    def __exit__(self, et: object, *exc: object) -> None:
        if isinstance(et, type) and issubclass(et, KeyboardInterrupt):
            self.abort()  # Ctrl-C: the worker stops too, even mid-call
        else:
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def calls_sent(self) -> int:
        """How many calls this session has sent (changes whenever remote state may)."""
        return self._seq

    @property
    def lost(self) -> bool:
        """True once the worker is gone (killed, or the connection broke)."""
        return self._lost is not None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("lost" if self._lost else "open")
        return f"<tether.Session {self.session_id} on {self.address} ({state})>"

    # -- operations used by proxies ----------------------------------------------------
    def getattr(self, obj: Any, name: str) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(Op.GETATTR, (obj, name))

    def value(self, fn: Any, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if fn is len and self.replicas is not None and self._is_ndarray(args[0]):
            return self.replicas.length(args[0])
        return self.value_remote(fn, *args)

    def value_remote(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker, by value (``value`` may answer ``len`` locally)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(Op.CALL, (fn, args, {}))

    def value_op(self, op: Op, target: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(op, (target,))

    def value_method(self, obj: Any, name: str, args: Any, kwargs: Any = None) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(Op.CALLMETHOD, (obj, name, args, kwargs or {}))

    def apply(self, fn: Any, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if fn is _GETITEM and self.replicas is not None:
            index = args[1]
            if (type(index) is int or type(index) is tuple) and self._is_ndarray(args[0]):
                return self.replicas.read(args[0], index)
        return self.apply_remote(fn, *args)

    def _is_ndarray(self, obj: Any) -> bool:
        t = type(obj)
        if type(t) is not RemoteType:
            return False
        desc = self.types.get(t._t_tid)
        return desc is not None and desc.qualname == "ndarray" and desc.module == "numpy"

    def apply_remote(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker (``apply`` may answer an array's items locally)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if len(args) == 2:  # a binary operator, the common case: no map() to build
            a, b = args
            ta, tb = type(a), type(b)
            key: tuple[Any, ...] = (
                "o",
                fn,
                ta._t_tid if type(ta) is RemoteType else ta,
                tb._t_tid if type(tb) is RemoteType else tb,
            )
        else:
            key = ("o", fn, *map(_kind, args))
        if fn is operator.getitem and type(args[1]) in (int, str):
            # Containers hold objects of different classes (nn.Sequential): the
            # class of seq[1] says nothing about seq[2]. Each index learns alone,
            # except in arrays and tensors, whose items are all alike.
            desc = self.types.get(key[2]) if type(key[2]) is int else None
            if desc is None or (desc.module, desc.qualname) not in _HOMOGENEOUS:
                key += (args[1],)
        return self._predicted(key, Op.CALL, (fn, args, {}))

    def apply_none(self, fn: Any, *args: Any) -> None:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            if in_handler():
                self._sync(Op.CALL, (fn, args, {}))
            else:
                self._send(Op.CALL, NONE, (fn, args, {}))

    def call(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if isinstance(target, RemoteType):
            key: Any = ("c", target.__dict__.get("_t_cid"))
        else:
            tid = type(target)._t_tid
            desc = self.types.get(tid)
            fn_like = desc is not None and desc.qualname in _FUNCTION_TYPES
            # One function, results of the class its arguments decide (torch.fx's
            # map_arg: a tuple for a tuple, a dict for a dict), and of the keywords
            # given (numpy's random.choice(a) and choice(a, size=n)).
            if fn_like and self.draws is not None:
                value = self.draws.call(target, args, kwargs)
                if value is not _MISS:
                    return value
            if not fn_like:
                key = ("ct", tid)
            elif kwargs:
                key = ("c", target._t_id, *map(_kind, args), *kwargs)
            else:
                key = ("c", target._t_id, *map(_kind, args))
        return self._predicted(key, Op.CALL, (target, args, kwargs))

    def callmethod(
        self,
        obj: Any,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        discard: bool = False,
    ) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if discard:
            with self._lock:
                if in_handler():
                    return self._sync(Op.CALLMETHOD, (obj, name, args, kwargs))
                self._send(Op.CALLMETHOD, DISCARD, (obj, name, args, kwargs))
                return None
        key = ("m", type(obj)._t_tid, name)
        return self._predicted(key, Op.CALLMETHOD, (obj, name, args, kwargs))

    def next_item(self, it: Any, *, more: bool) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        tid = type(it)._t_tid
        desc = self.types.get(tid)
        # Items of builtin iterators and generators (a list's items, modules())
        # vary in class: fetch each one. Iterators of library types (DataLoader)
        # yield the same structure every time and are pipelined.
        if not more or desc is None or desc.module == "builtins":
            with self._lock:
                return self._sync(Op.NEXT, (it,))
        return self._predicted(("n", tid), Op.NEXT, (it,))

    def make_class(
        self, name: str, bases: tuple[type, ...], ns: dict[str, Any], kwds: dict[str, Any]
    ) -> RemoteType:
        """Build a subclass of remote classes in the worker; return its mirror."""
        cell = ns.pop("__classcell__", None)
        ns.pop("_t_internal", None)
        blob = dumps_code(ns, self._code)
        with self._lock:
            cls = self._sync(Op.MAKECLASS, (name, bases, _Code(blob), kwds))
        if cell is not None:
            cell.cell_contents = cls
        return cls  # type: ignore[no-any-return]

    def _release(self, hid: int) -> None:
        # From __del__: only appends. Where in the batch the proxy died is kept,
        # so that the worker frees the object as soon as locally (see _emit_batch).
        if not self._closed:
            self._released.append(hid)
            self._released_at.append(len(self._batch))

    # -- prediction ----------------------------------------------------------------------
    def _predicted(self, key: Any, op: Op, fields: tuple[Any, ...]) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            template = self._pred.predict(key)
            if template is None or in_handler():
                value, flags = self._sync_flags(op, fields)
                self._pred.learn(key, _template(value), nopipe=bool(flags & Flag.NOPIPE))
                return value
            shape: Shape
            if type(template) is HandleOf:  # one handle, the common case: inlined
                hid = self._next_id
                self._next_id = hid + 1
                tid = template.tid
                shape = Handle(hid, tid)
                result = _new(self._mirrors.get(tid) or self._mirror(tid))
                _set_s(result, self)
                _set_id(result, hid)
            else:
                shape, self._next_id = instantiate(template, self._next_id)
                result = self._proxies(shape)
            seq = self._send(op, shape, fields)
            self._pred.sent(seq, key)
            return result

    def _proxies(self, shape: Shape) -> Any:
        """The proxies for a pipelined result of ``shape``."""
        if type(shape) is Handle:
            return self._mk_handle(shape.hid, shape.tid)
        if type(shape) is Items:
            values = [self._proxies(sub) for sub in shape.parts]
            return values if shape.is_list else tuple(values)
        return None

    # -- frames --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._lost is not None:
            raise DeviceLost(self._lost)
        if self._closed:
            raise SessionClosed(f"session {self.session_id} is closed")

    def _send(self, op: Op, shape: Shape, fields: tuple[Any, ...], flags: int = 0) -> int:
        if self._lost is not None or self._closed:
            self._check_open()
        if self.draws_pending:
            self.draws.settle()  # type: ignore[union-attr]  # before anything else goes
        if self._ns.tracked:
            changed = self._ns.changes()
            if changed:
                self._queue_names(changed)
        if self._serving:
            # A call made while the worker waits for our answer: the worker runs
            # it at once, inside the request (the calls queued before it wait
            # for the request to end, as they would locally).
            flags |= _NESTED
        sync = flags & _SYNC
        if len(self._released) >= _RELEASE_BATCH or (sync and self._released):
            self._emit_batch()
            self._send_releases()
        meta = self._compact(op, shape, fields)
        if meta is not None:
            buffers: Any = ()
        else:
            try:
                meta, buffers = self._encoder.dumps((int(op), shape_to_wire(shape), *fields))
            except Exception as exc:
                raise TypeError(f"cannot send this call to the worker: {exc}") from exc
        self._seq += 1
        seq = self._seq
        if sync or buffers or self._serving:
            self._frame(_CALL, flags, seq, meta, [b.raw() for b in buffers])
            full = self.channel.pending_output >= _FLUSH_BYTES
        else:
            # Pipelined calls travel together: one frame, one header to check
            # and one send for up to _FLUSH_EVERY of them.
            if not self._batch:
                self._batch_seq = seq
                self._batch_bytes = 0
            self._batch.append(meta)
            self._batch_bytes += len(meta)
            full = self._batch_bytes >= _FLUSH_BYTES
        if sync:
            self.stats["sync"] += 1
        else:
            self.stats["async"] += 1
            self._unsynced = True
            self._queued += 1
            if self._queued >= _FLUSH_EVERY or full:
                self._flush()
        return seq

    def _queue_names(self, changed: list[tuple[str, list[tuple[str, bool, Any]]]]) -> None:
        """Put the script's rebinds of names the worker holds in the call stream,
        ahead of the call being sent (see :mod:`tether.client._namespace`).

        A value that cannot travel inline is sent as "forget it": the worker
        pages it in again when its code next reads it, and fails there if it
        cannot have it, as a read would.
        """
        entries = []
        for module, names in changed:
            items: list[tuple[str, bytes | None]] = []
            for name, present, value in names:
                blob = None
                if present:
                    try:
                        blob = dumps_inband(share_global(value, self._export), self._code)
                    except Exception:
                        blob = None
                items.append((name, blob))
            entries.append((module, items))
        meta = NAMESPACE_TAG + pickle.dumps(entries, protocol=5)
        if not self._batch:
            self._batch_seq = self._seq + 1
            self._batch_bytes = 0
        self._batch.append(meta)

    def _emit_batch(self) -> None:
        metas = self._batch
        if not metas:
            return
        self._batch = []
        if self._released:
            metas = self._with_releases(metas)
        if len(metas) == 1:
            self.channel.send(_CALL, 0, self._batch_seq, metas[0])
        else:
            self.channel.send(_CALL, _BATCH, self._batch_seq, pack_batch(metas))

    def _with_releases(self, metas: list[bytes]) -> list[bytes]:
        ids, at = self._released, self._released_at
        self._released, self._released_at = [], []
        return interleave_releases(metas, ids, at)

    def _send_releases(self) -> None:
        """Send the handles released since the last batch (none are in one now)."""
        if self._released:
            ids = self._released
            self._released, self._released_at = [], []
            self.channel.send(Kind.RELEASE, 0, 0, pack_ids(ids))

    def _frame(self, kind: int, flags: int, seq: int, meta: bytes, buffers: Any = ()) -> None:
        """Send one frame after the pipelined calls queued before it."""
        self._emit_batch()
        self.channel.send(kind, flags, seq, meta, buffers)

    def _flush(self) -> None:
        self._queued = 0
        self._emit_batch()
        try:
            self.channel.flush()
        except ChannelClosed as exc:
            self._lose(str(exc))

    def _sync(self, op: Op, fields: tuple[Any, ...]) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        return self._sync_flags(op, fields)[0]

    def _sync_flags(self, op: Op, fields: tuple[Any, ...]) -> tuple[Any, int]:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        seq = self._send(op, ANY, fields, _SYNC)
        self._queued = 0
        return self._wait(seq)

    def _wait(self, seq: int) -> tuple[Any, int]:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        channel = self.channel
        warned: Exception | None = None  # a worker's warning that became an error
        while True:
            try:
                frame = channel.recv()
            except ChannelClosed as exc:
                self._lose(str(exc))
            kind = frame.kind
            if kind == Kind.REPLY:
                if frame.seq < seq:
                    continue  # the answer to a wait that was interrupted (Ctrl-C)
                if frame.seq != seq:
                    raise ProtocolError(f"reply to call {frame.seq} while waiting for {seq}")
                self._unsynced = False
                self._pred.synced()
                if warned is not None:
                    # Locally the script would have stopped at the warning.
                    if frame.flags & Flag.DEFERRED:
                        self._frame(Kind.RESUME, 0, 0, b"")
                    elif not frame.flags & Flag.ERROR:
                        with contextlib.suppress(Exception):
                            self._decode(frame.meta, frame.buffers)  # its handles go
                    raise warned.with_traceback(None)
                if frame.flags & Flag.ERROR:
                    if frame.flags & Flag.DEFERRED:
                        self._frame(Kind.RESUME, 0, 0, b"")
                    raise self._exception(frame.meta)
                if frame.flags & _EXHAUSTED_FLAG:
                    return EXHAUSTED, frame.flags
                return self._decode(frame.meta, frame.buffers), frame.flags
            if kind == Kind.OUTPUT:
                self._write_output(frame.meta, bool(frame.flags & Flag.STDERR))
            elif kind == Kind.WARNING:
                if warned is None:
                    warned = self._warn(frame.meta)
            elif kind == Kind.REQUEST:
                self._answer(frame.seq, frame.meta, frame.buffers)
            elif kind == Kind.NOTICE:
                if frame.seq == 0:  # the worker's last word: who ended the session, and why
                    self._lose(bytes(frame.meta).decode("utf-8", "replace"))
                self._pred.mispredicted(frame.seq)

    def _warn(self, meta: bytes) -> Exception | None:
        """Re-issue a worker's warning here, so that the script's filters,
        ``catch_warnings`` and de-duplication decide what becomes of it.

        Returns the exception it turned into (``-W error``), which ``_wait``
        raises once the reply it is waiting for has arrived; a malformed
        warning raises ProtocolError.
        """
        w = decode_warning(meta)
        try:
            category = exception_class(w.category)
        except Exception as exc:
            raise ProtocolError(
                f"warning of an unusable category {w.category[0]}: {exc!r}"
            ) from exc
        if not issubclass(category, Warning):
            raise ProtocolError(f"warning of a category that is no Warning: {w.category[0]}")
        module_globals: dict[str, Any] | None = None
        if w.filename:
            filename, lineno, module = w.filename, w.lineno, w.module
            registry = self._warning_registry(module)
            if w.line and lineno and not linecache.getline(filename, lineno):
                module_globals = {"__name__": module, "__loader__": _SourceLine(lineno, w.line)}
        else:  # attributed to the caller of the remoted function: the script's line
            frame = _script_frame()
            if frame is None:
                where: dict[str, Any] = sys.__dict__
                filename, lineno = "sys", 0
            else:
                where = frame.f_globals
                filename, lineno = frame.f_code.co_filename, frame.f_lineno or 0
            module = str(where.get("__name__", "<string>"))
            registry = where.setdefault("__warningregistry__", {})
        # Showing the warning writes to sys.stderr, which must not sync now.
        unsynced, self._unsynced = self._unsynced, False
        try:
            warnings.warn_explicit(
                w.message, category, filename, lineno, module, registry, module_globals
            )
        except Exception as exc:
            return exc
        finally:
            self._unsynced = unsynced
        return None

    def _warning_registry(self, module: str) -> dict[Any, Any]:
        local = sys.modules.get(module)
        if local is not None and not isinstance(local, RemoteModule):
            namespace = getattr(local, "__dict__", None)
            if isinstance(namespace, dict):
                return namespace.setdefault("__warningregistry__", {})  # type: ignore[no-any-return]
        return self._warning_registries.setdefault(module, {})

    def _answer(self, rid: int, meta: bytes, buffers: Any) -> None:
        """Serve one request of the worker's (names, sources, files, modules,
        shared objects). Calls the script makes meanwhile run in the worker at
        once (see :meth:`_send`), so requests may nest either way."""
        flags = 0
        self._serving += 1
        try:
            kind, payload = self._decode(meta, buffers)
            result: Any = self._serve(kind, payload)
        except Exception as exc:
            flags, result = Flag.ERROR, exc
        finally:
            self._serving -= 1
        try:
            out, bufs = self._encoder.dumps(result)
        except Exception as exc:
            flags = Flag.ERROR
            out, bufs = self._encoder.dumps(TypeError(f"cannot send the answer: {exc}"))
        self._frame(Kind.RESPONSE, flags, rid, out, [b.raw() for b in bufs])

    def _serve(self, kind: str, payload: Any) -> Any:
        if kind == "global":  # the worker reads a name of a script module
            found, value = self._ns.page(*payload)
            return (found, share_global(value, self._export) if found else None)
        if kind == "setglobal":  # shipped code rebound a name of a script module
            module, name, present, value = payload
            self._ns.wrote(module, name, value, present)
            return None
        if kind == "source":  # inspect, linecache and tracebacks in the worker
            if not isinstance(payload, str) or not is_user_file(payload):
                return None
            lines = linecache.getlines(payload)
            return "".join(lines) if lines else None
        return serve_request(kind, payload, self.remote_modules, self._exported, self._share)

    def _decode(self, meta: bytes, buffers: Any) -> Any:
        try:
            types_, blob = pickle.loads(meta)
            for desc in types_:
                self.types[desc.tid] = TypeDesc(*desc)
            return ClientUnpickler(self, io.BytesIO(blob), buffers).load()
        except TetherError:
            raise
        except Exception as exc:
            raise ProtocolError(f"cannot decode the worker's reply: {exc!r}") from exc

    def _exception(self, meta: bytes) -> BaseException:
        info = pickle.loads(meta)
        cls = exception_class(tuple(info["lineage"]))
        args: Any = (info["message"],)
        state: Any = None
        if info["args"] is not None:
            with contextlib.suppress(Exception):
                args, state = pickle.loads(info["args"])
        exc: BaseException
        try:
            exc = cls(*args)
        except Exception:
            # A constructor with other parameters (like pickle, rebuild without it).
            exc = cls.__new__(cls)
            exc.args = tuple(args)
        if isinstance(state, dict):
            with contextlib.suppress(Exception):
                exc.__dict__.update(state)
        exc.__cause__ = RemoteTraceback(info["traceback"])
        exc.__suppress_context__ = True
        return exc

    def _write_output(self, data: bytes, stderr: bool) -> None:
        text = data.decode("utf-8", "surrogateescape")
        stream = _original(sys.stderr if stderr else sys.stdout)
        stream.write(text)
        if stderr:
            stream.flush()

    def _lose(self, why: str) -> Any:
        self._lost = (
            f"lost the worker of session {self.session_id} on {self.address} ({why}); "
            "its objects are gone: open a new session"
        )
        self._stop_heart()
        self.channel.close()
        raise DeviceLost(self._lost)

    # -- barrier for local output --------------------------------------------------------
    def barrier(self) -> None:
        """Sync if pipelined calls are outstanding (before local output)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if self._unsynced and self._lost is None and not self._closed:
            with self._lock:
                if self._unsynced:
                    self._sync(Op.PING, ())

    # -- resolvers for the worker's references ----------------------------------------
    def _mirror(self, tid: int) -> RemoteType:
        m = self._mirrors.get(tid)
        if m is None:
            desc = self.types[tid]
            bases = tuple(self._mirror(b) for b in desc.bases)
            m = self._mirrors[tid] = build_mirror(self, desc, bases)
        return m

    def _mk_handle(self, hid: int, tid: int) -> RemoteObject:
        obj = _new(self._mirror(tid))
        _set_s(obj, self)
        _set_id(obj, hid)
        return obj  # type: ignore[no-any-return]

    def _mk_interned(self, hid: int, tid: int) -> RemoteObject:
        obj = self._interned.get(hid)
        if obj is None:
            obj = self._interned[hid] = self._mk_handle(hid, tid)
        return obj

    def share(self, value: Any) -> Any:
        """``value`` as remote code should hold it: shared if it is script state."""
        return self._share(value)

    def _share(self, value: Any) -> Any:
        """An attribute of a shared script object, as the worker should see it."""
        return _Shared(self._export(value)) if is_shared(value) else value

    def _export(self, obj: Any) -> int:
        """Lend a local object (an open file) to the worker for the session."""
        oid = id(obj)
        self._exported[oid] = obj
        return oid

    def _mk_class(self, hid: int, tid: int) -> RemoteType:
        cls = self._classes.get(hid)
        if cls is None:
            cls = self._classes[hid] = self._mirror(tid)
            type.__setattr__(cls, "_t_cid", hid)
        return cls

    def _mk_module(self, hid: int, name: str) -> RemoteModule:
        mod = self._modules.get(hid)
        if mod is None:
            mod = self._modules[hid] = RemoteModule(self, hid, name)
            top = name.partition(".")[0]
            if top in self.remote_modules and top not in LOCAL_MODULES:
                sys.modules.setdefault(name, mod)
        return mod


class _Code:
    """A namespace already pickled by value (see :meth:`Session.make_class`)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> Any:
        from tether import _refs

        return (_refs.code, (self.blob,))


def interleave_releases(
    metas: list[bytes], ids: list[int], at: list[int], every: int = _RELEASE_EVERY
) -> list[bytes]:
    """A batch of calls with release entries for ``ids`` in it.

    ``at[i]`` is how many of the calls were queued when ``ids[i]``'s proxy died;
    its release goes after those calls (never earlier: they may use it) and,
    grouped by every ``every`` calls, at most ``every - 1`` calls later. So the
    worker frees the previous step's tensors while it runs this one, as Python
    does locally; with all releases at the end it held two steps' activations
    at once. Grouping keeps a loop whose every call frees a temporary at a few
    entries per batch.
    """
    n = len(metas)
    if len(at) != len(ids):  # a release raced the caller: all last is always safe
        return [*metas, RELEASE_TAG + pack_ids(ids)] if ids else list(metas)
    # ``at`` never decreases: the ids released when the batch held at most b
    # calls are a prefix, and may go before call b.
    out: list[bytes] = []
    j = 0
    for b in range(0, n, every):
        k = bisect.bisect_right(at, b, j)
        if k > j:
            out.append(RELEASE_TAG + pack_ids(ids[j:k]))
            j = k
        out += metas[b : b + every]
    if j < len(ids):
        out.append(RELEASE_TAG + pack_ids(ids[j:]))
    return out


def _kind(x: Any) -> Any:
    """What a prediction key records of an argument: a proxy's remote type id,
    else the local type."""
    t = type(x)
    return t._t_tid if type(t) is RemoteType else t


def _np_scalar(dtype: str, raw: bytes) -> Any:
    """A number of the remote numpy as a scalar of the client's own numpy."""
    import numpy

    return numpy.frombuffer(raw, dtype=numpy.dtype(dtype))[0]


def _template(value: Any) -> Template | None:
    """The prediction template of a result, or None if it cannot be predicted."""
    if value is None:
        return NONE
    t = type(value)
    if isinstance(value, RemoteObject):
        return HandleOf(t._t_tid)
    if (t is list or t is tuple) and 0 < len(value) <= 16:
        subs = tuple(_template(v) for v in value)
        if all(s is not None and s is not NONE for s in subs):
            return ItemsOf(t is list, subs)  # type: ignore[arg-type]
    return None


_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _script_frame() -> Any:
    """The innermost frame outside Tether: the script's line that is syncing."""
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_TETHER_DIR):
        frame = frame.f_back
    return frame


class _SourceLine:
    """A stand-in loader that knows one line of a file the client does not have,
    so that a worker's warning shows its source line as it would locally."""

    def __init__(self, lineno: int, line: str) -> None:
        self._source = "\n" * (lineno - 1) + line

    def get_source(self, name: str) -> str:
        return self._source


def _original(stream: Any) -> Any:
    return getattr(stream, "_t_wrapped", stream)


class OrderedStream:
    """Wraps sys.stdout/sys.stderr: sync pending remote work before writing.

    Keeps the worker's prints (which arrive when the client syncs) and the
    script's own prints in program order, for every open session.
    """

    def __init__(self, wrapped: Any) -> None:
        self._t_wrapped = wrapped
        self._t_barriers: list[Callable[[], None]] = []

    def write(self, s: str) -> int:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        for barrier in self._t_barriers:
            barrier()
        return self._t_wrapped.write(s)  # type: ignore[no-any-return]

    def writelines(self, lines: Any) -> None:
        for barrier in self._t_barriers:
            barrier()
        self._t_wrapped.writelines(lines)

    def flush(self) -> None:
        self._t_wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t_wrapped, name)


def install_ordered_streams(session: Session) -> None:
    """Make sys.stdout and sys.stderr sync ``session`` before each write."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, OrderedStream):
            stream = OrderedStream(stream)
            setattr(sys, name, stream)
        if session.barrier not in stream._t_barriers:
            stream._t_barriers.append(session.barrier)


def uninstall_ordered_streams(session: Session) -> None:
    """Undo :func:`install_ordered_streams` for ``session`` (the streams are
    unwrapped when no session is left)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, OrderedStream):
            if session.barrier in stream._t_barriers:
                stream._t_barriers.remove(session.barrier)
            if not stream._t_barriers:
                setattr(sys, name, stream._t_wrapped)
