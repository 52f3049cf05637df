"""A session: one client's attachment to one worker, the shell over its protocol.

Theory of operation
-------------------
The session is blocking and single-threaded (guarded by a lock for scripts
that use threads). Each operation on a proxy becomes one call. The decisions
about frames (numbering, batching, releases, what a received frame means, the
open/lost/closed states) are :class:`~tether.client._protocol.ClientProtocol`'s;
the session encodes calls, carries the protocol's bytes over the channel, and
acts on its events. What it decides itself:

* Operations whose *value* the script needs (``bool``, ``len``, ``repr``,
  ``.item()`` ...) are synchronous: a SYNC call, then a wait for the REPLY,
  acting on the OUTPUT, REQUEST and WARNING frames that come first.
* Other operations are *pipelined* once their site is predictable
  (:mod:`tether.client._predict`): the session builds the proxies for the
  predicted shape at once, with handle ids it allocates, and sends the call
  without waiting. The first call of each site is synchronous, to learn.
* Inside a ``try ... except`` that could catch a remote error (see
  :mod:`tether.client._trycheck`, injected into the protocol) every operation
  is synchronous, so errors raise in place. Elsewhere a failed pipelined call
  is raised at the next synchronous point (the worker skips everything after
  it meanwhile), which is where it would have ended the script anyway.
* Before the script writes to stdout or stderr, pending calls are synced, so
  the worker's prints and the script's stay in order.

Size: about 600 lines, over the house's 400, because it is the one class that
implements :class:`~tether.client._remoting.Remoting` (the 20 members proxies
call, each a few lines of its own sync-or-pipeline rule) next to the loop that
carries the protocol's bytes. What could leave without a callback into the
session has left: the protocol, prediction and call sites, mirrors, warnings
and exceptions, request answers, ordered streams.
"""

from __future__ import annotations

import contextlib
import io
import operator
import pickle
import struct
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from tether._errors import (
    DeviceLost,
    ProtocolError,
    RemoteModuleNotFound,
    TetherError,
)
from tether.client._arrays import ArrayOps
from tether.client._codec import CallEncoder, ClientUnpickler, dumps_inband
from tether.client._draws import MISS as _MISS
from tether.client._draws import Draws
from tether.client._events import (
    Exhausted,
    Failed,
    Lost,
    Output,
    Reply,
    Request,
    Retyped,
    WarningFrame,
)
from tether.client._held import ITEM_METHODS, Held
from tether.client._itemvalues import ItemValues
from tether.client._kinds import share_global
from tether.client._lanes import Lane, Lanes, call_key, method_key
from tether.client._mirrors import Mirrors
from tether.client._namespace import ScriptNamespaces
from tether.client._predict import HandleOf, instantiate
from tether.client._protocol import ClientProtocol, State
from tether.client._proxy import (
    RemoteModule,
    RemoteObject,
    RemoteType,
)
from tether.client._reissue import Warnings, rebuild_exception
from tether.client._replica import LOCAL_METHODS, SHAPE_ATTRS, Replicas
from tether.client._serve import Lender
from tether.client._shipcode import CodeContext, dumps_code
from tether.client._sites import (
    attr_site,
    call_site,
    code_arity,
    is_function,
    next_site,
    operator_site,
    template_of,
)
from tether.client._streams import original_stream, uninstall_ordered_streams
from tether.client._trycheck import in_handler, note_transparent_with
from tether.client._usecheck import call_place, result_used
from tether.transport import Channel, ChannelClosed
from tether.transport._heart import Heart
from tether.wire import Flag
from tether.wire._compact import CompactEncoder
from tether.wire._ops import (
    ANY,
    DISCARD,
    EXHAUSTED,
    NAMESPACE_TAG,
    NONE,
    Handle,
    Items,
    Op,
    Shape,
    TypeDesc,
    shape_to_wire,
)
from tether.wire._requests import (
    request_from_wire,
)
from tether.wire._values import VALUE_TAG
from tether.wire._values import decode as decode_value

_SYNC = int(Flag.SYNC)  # plain ints on the hot path: enum arithmetic is slow
_EXHAUSTED_FLAG = int(Flag.EXHAUSTED)
_NOPIPE = int(Flag.NOPIPE)
_GETITEM: Final = operator.getitem
_SETITEM: Final = operator.setitem
#: How quiet the next call sent is (Session._quiet), in bits: it does not use numpy's
#: global generator (_QUIET_RNG), it changes no remote object but that generator
#: (_QUIET_ARRAYS: a draw), both (_QUIET_ALL).
_QUIET_RNG: Final = 1
_QUIET_ARRAYS: Final = 2
_QUIET_ALL: Final = 3


#: Methods whose calls the session follows (Session._watched).
_WATCHED_METHODS: Final = ITEM_METHODS | {"train", "eval"}
#: What Session._on_lane returns when the call must take the general path.
_OFF_LANE: Final = object()
#: A pipelined call's out-of-band buffers up to this size are copied when it is
#: made; larger ones are written to the channel before the call returns.
COPY_BUFFERS: Final = 64 << 10
#: The events that end a wait: the worker has run every call sent before it.
_ANSWERS: Final = (Reply, Failed, Exhausted)

_new: Any = object.__new__
_weakref: Any = weakref.ref  # what a NOTICE of another class finds the proxy by
_new_tuple: Any = tuple.__new__
_set_s: Any = RemoteObject.__dict__["_t_s"].__set__
_set_id: Any = RemoteObject.__dict__["_t_id"].__set__


class Session:
    """One session; use :func:`tether.connect` to make one."""

    #: The proxy of a handle died (called from ``__del__``: only queues the
    #: release). The protocol's own method, bound: no call in between.
    forget: Callable[[int], None]

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
        self._mx = mirrors = Mirrors(self, remote_modules)
        self.types: dict[int, TypeDesc] = mirrors.types
        self._mirrors = mirrors.by_tid  # read on the hot path: no call when it is there
        self._mirror = mirrors.mirror
        self._mk_handle = mirrors.handle
        self._proto = ClientProtocol(
            session_id=session_id, address=address, in_handler=in_handler, result_used=result_used
        )
        self._pred = self._proto.predictions
        self.forget = mirrors.releasing(self._proto.release)
        compact = CompactEncoder(RemoteType)
        self._compact = compact.encode
        self._lanes = lanes = Lanes(self._pred, compact, self._mirror)
        self._op_lane = lanes.ops.get
        self._method_lane = lanes.methods.get
        self._call_lane = lanes.calls.get
        self._ns = ScriptNamespaces()
        self._lender = Lender(remote_modules, self._ns)
        self._export = self._lender.export
        self._code = CodeContext(self._export, self._ns.watch)
        self._encoder = CallEncoder(self._code)
        #: Local copies of arrays read element by element, when the client has numpy.
        self.replicas: Replicas | None = None
        #: Batches of numpy.random draws (client/_draws.py), when the client has numpy.
        self.draws: Draws | None = None
        self.draws_pending = False
        #: Values of the items of small tensors iterated (client/_itemvalues.py).
        self._item_values = ItemValues()
        #: Proxies that module proxies keep alive (client/_held.py).
        self._held = Held(self.types)
        #: The mode the script last gave a module (train(), eval()), and each module's
        #: by handle: calls of objects are learnt apart by it (see _watched).
        self._mode: bool | None = None
        self._modes: dict[int, bool] = {}
        # Calls known to change nothing the script could see again (client/_replica.py):
        # _quiet marks the next call sent (_QUIET_ALL, or _QUIET_RNG: it does not use
        # numpy's global generator), _quiet_calls counts those sent.
        self._quiet = 0
        self._quiet_calls = 0
        self._quiet_all = _Quietly(self, _QUIET_ALL)
        self._quiet_rng = _Quietly(self, _QUIET_RNG)
        #: Operators on remote arrays (client/_arrays.py), with the copies.
        self.arrays: ArrayOps | None = None
        self._serving = 0  # > 0 while the script's code runs for a worker's request
        self._next_id = 1
        self._muted = 0  # > 0 while showing a worker's warning: stderr must not sync
        self._lock = threading.RLock()
        self._on_close = on_close
        self._out = sys.__stdout__
        self._err = sys.__stderr__
        self.stats = self._proto.stats
        self._warnings = Warnings()
        self.resolvers: dict[str, Callable[..., Any]] = {
            **mirrors.resolvers(),
            "local": self._lender.exported.__getitem__,
        }
        # Liveness (tether.wire._liveness): BEATs while the script computes or
        # waits, and the channel ended if the worker falls silent.
        self._heart = heart
        if heart is not None:
            heart.start()

    # -- public -------------------------------------------------------------------
    def import_module(self, name: str) -> Any:
        """The worker's module ``name``, as a proxy module (cached)."""
        found = self._mx.find_module(name)
        if found is not None:
            return found
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
            self._proto.release(obj._t_id)
            self._proto.send_released()

    def close(self) -> None:
        """End the session; the worker exits and frees everything it held."""
        with self._lock:
            if self._proto.state is State.CLOSED:
                return
            self._stop_heart()  # before BYE: nothing may follow it
            self._proto.close()
            if not self._proto.lost:
                try:
                    self.channel.send_pieces(self._proto.data_to_send())
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
            if self._proto.state is State.CLOSED:
                return
            self._proto.abort()
            self._stop_heart()
            self.channel.close()
            uninstall_ordered_streams(self)
            if self._on_close is not None:
                self._on_close()

    def finish(self) -> None:
        """Sync (raising any pending remote error), then close."""
        try:
            if self._proto.state is State.OPEN:
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
        return self._proto.state is State.CLOSED

    @property
    def calls_sent(self) -> int:
        """How many calls this session has sent (changes whenever remote state may)."""
        return self._proto.seq

    @property
    def epoch(self) -> int:
        """Moves whenever a call is sent that may change a remote object: copies of
        remote state made at one epoch are good while it stays the same."""
        return self._proto.seq - self._quiet_calls

    def quietly(self, *, rng_only: bool = False) -> _Quietly:
        """A block whose first call sent changes nothing remote, not even numpy's
        global generator: it keeps local copies good (see :attr:`epoch`). With
        ``rng_only`` the call may change remote objects, but it draws nothing, so
        numpy's generator stays checked out (client/_draws.py). The block holds the
        session's lock: the mark is for this thread's call."""
        return self._quiet_rng if rng_only else self._quiet_all

    def local_items(self, obj: Any) -> Any:
        """A good local one-dimensional copy of the remote array ``obj`` to iterate
        over, or None (see client/_replica.py)."""
        if self.replicas is not None and self.is_ndarray(obj):
            return self.replicas.items(obj)
        return None

    def row_copies(self, array: Any, copied: Any) -> Any:
        """The copy of ``array`` that came with its rows (kept as its copy), or None."""
        return None if self.replicas is None else self.replicas.rows(array, copied)

    def item_values(self, items: list[Any], values: list[Any]) -> None:
        """``items`` (handles, from an iteration begun now) hold ``values``."""
        note, epoch = self._item_values.note, self.epoch
        for item, value in zip(items, values, strict=True):
            note(item._t_id, value, epoch)

    def row_copy(self, row: Any, rows: Any, k: int) -> None:
        """Row ``k`` of ``rows`` (from :meth:`row_copies`) as the copy of ``row``."""
        self.replicas.row(row, rows, k)  # type: ignore[union-attr]  # (rows: replicas)

    @property
    def lost(self) -> bool:
        """True once the worker is gone (killed, or the connection broke)."""
        return self._proto.lost

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("lost" if self.lost else "open")
        return f"<tether.Session {self.session_id} on {self.address} ({state})>"

    # -- operations used by proxies ----------------------------------------------------
    def getattr(self, obj: Any, name: str) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            if self.replicas is not None and (type(obj) is RemoteModule or self.is_ndarray(obj)):
                if name in SHAPE_ATTRS and type(obj) is not RemoteModule:
                    value = self.replicas.attribute(obj, name)
                    if value is not _MISS:  # x.shape from a good copy
                        return value
                # np.argmax, x.shape: numpy's module and arrays have no attribute
                # that changes an array or draws when it is read.
                self._quiet = _QUIET_ALL
            key = attr_site(obj, name, self.types) if type(obj) is not RemoteModule else None
            if key is None:
                value = self._sync(Op.GETATTR, (obj, name))
                self._held.attribute(obj, name, value)  # model.fc: kept while model is
                return value
            return self._predicted(key, Op.GETATTR, (obj, name))  # x.T: a view, pipelined

    def value(self, fn: Any, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if fn is len and self.replicas is not None and self.is_ndarray(args[0]):
            return self.replicas.length(args[0])
        if self._item_values and len(args) == 1:  # int(i), i from a small tensor's items
            value = self._item_values.answer(fn, getattr(args[0], "_t_id", 0), self.epoch)
            if value is not _MISS:
                return value
        return self.value_remote(fn, *args)

    def value_remote(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker, by value (``value`` may answer ``len`` locally)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(Op.CALL, (fn, args, {}))

    def value_op(self, op: Op, target: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            if op is Op.ITER and self.is_ndarray(target):
                self._quiet = _QUIET_ALL  # an iterator over an array changes nothing
            reply = self._sync(op, (target,))
            if op is Op.ITER:
                self._held.iterated(target, reply)  # model.parameters()'s items
            return reply

    def value_method(self, obj: Any, name: str, args: Any, kwargs: Any = None) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            return self._sync(Op.CALLMETHOD, (obj, name, args, kwargs or {}))

    def apply(self, fn: Any, *args: Any) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if self.arrays is not None:
            return self.arrays.apply(fn, args)  # may answer an array's items locally
        if len(args) == 2:
            a, b = args
            lane = self._op_lane((fn, type(a), type(b)))
            if lane:
                result = self._on_lane(lane, args)
                if result is not _OFF_LANE:
                    return result
        return self.apply_remote(fn, *args)

    def on_mirror(self, specialize: Callable[[TypeDesc, RemoteType], None]) -> None:
        """Have ``specialize`` see every mirror class, made so far and from now on."""
        self._mx.specialize = specialize
        for tid, cls in list(self._mirrors.items()):
            desc = self.types.get(tid)
            if desc is not None:
                specialize(desc, cls)

    def is_ndarray(self, obj: Any) -> bool:
        """True for a proxy of a remote ``numpy.ndarray`` (not of a subclass)."""
        t = type(obj)
        if type(t) is not RemoteType:
            return False
        desc = self.types.get(t._t_tid)
        return desc is not None and desc.qualname == "ndarray" and desc.module == "numpy"

    def apply_remote(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker (``apply`` may answer an array's items locally)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        key = operator_site(fn, args, self.types)
        result = self._predicted(key, Op.CALL, (fn, args, {}))
        if (
            len(args) == 2
            and len(key) == 4
            and self.arrays is None
            and (result is None or type(type(result)) is RemoteType)
        ):
            self._lanes.offer_op(key, fn, *args)  # the next such call may take a lane
        return result

    def _on_lane(self, lane: Lane, values: tuple[Any, ...]) -> Any:
        """Pipeline a call through its lane (client/_lanes.py), ``values`` its
        variable items; _OFF_LANE where the general path must take it, having
        done nothing."""
        with self._lock:
            proto = self._proto
            if (
                self._quiet
                or self.draws_pending
                or self._serving
                or proto.state is not State.OPEN
                or lane.site.version != lane.version
                or proto.in_handler()
            ):
                return _OFF_LANE
            cls = lane.cls
            if cls is None and proto.result_used():
                return _OFF_LANE  # a None the script would use: wait for the value
            hid = 0 if cls is None else self._next_id
            try:
                entry = lane.pack(hid, *values)
            except struct.error:  # an int past 64 bits: the general path pickles it
                return _OFF_LANE
            result = None
            if cls is not None:
                self._next_id = hid + 1
                result = _new(cls)
                _set_s(result, self)
                _set_id(result, hid)
            if self._ns.tracked:
                changed = self._ns.changes(proto.unsynced)
                if changed:
                    self._queue_names(changed)
            seq = proto.call_entry(entry)
            if self._pred.sent(seq, lane.key, None if result is None else _weakref(result)):
                self._sync(Op.PING, ())
            elif proto.flush_due:
                self._flush()
            return result

    def apply_none(self, fn: Any, *args: Any) -> None:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        if fn is _SETITEM and self.arrays is not None and self.arrays.setitem(*args):
            return  # q[s, a] = v: sent, saying what it leaves alone
        self.apply_none_remote(fn, *args)

    def apply_none_remote(self, fn: Any, *args: Any) -> None:
        """``fn(*args)`` in the worker, for its effect only (pipelined)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            if self._proto.in_handler():
                self._sync(Op.CALL, (fn, args, {}))
            else:
                self._send(Op.CALL, NONE, (fn, args, {}))

    def call(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        lanes = not kwargs and self.arrays is None and not isinstance(target, RemoteType)
        if lanes:
            lane = self._call_lane(call_key(target, args))
            if lane:
                result = self._on_lane(lane, args)
                if result is not _OFF_LANE:
                    return result
        draws = self.draws
        if (
            draws is not None
            and not isinstance(target, RemoteType)
            and is_function(self.types.get(type(target)._t_tid))
        ):
            value = draws.call(target, args, kwargs)  # numpy.random drawn locally
            if value is not _MISS:
                return value
            replicas: Replicas = self.replicas  # type: ignore[assignment]  # (with draws)
            picked = draws.choice(target, args, kwargs, replicas.takes)
            if picked is not _MISS:  # choice(population, size=2): indices drawn here
                return replicas.chosen(*picked)
            if len(args) == 1 and not kwargs and self.is_ndarray(args[0]):
                value = replicas.reduce(target, args[0])
                if value is not _MISS:  # np.max(q[s]) from a local copy
                    return value
            else:
                value = replicas.from_plain(target, args, kwargs)
                if value is not _MISS:  # np.array([i, j]): its copy made here
                    return value
            if draws.is_draw(target):
                # np.random.choice(pop, size=2): drawn by the worker, it changes no
                # array, so the copies and an array's iteration stay good.
                self._quiet = _QUIET_ARRAYS
        arrays = self.arrays
        if arrays is not None and not isinstance(target, RemoteType):
            value = arrays.writes_own(target, args, kwargs)
            if value is not _MISS:  # np.copyto(X, y) of the script's own X: written back
                return value
            if not self._quiet and arrays.leaves_alone(target, args, kwargs):
                # np.dot(x_i, w), np.exp(z), numpy's dispatch of 1 - y to a remote y: a
                # new array or number, nothing changes (client/_arrays.py)
                self._quiet = _QUIET_ALL
        key = call_site(target, args, kwargs, self.types, self._modes.get(target._t_id, self._mode))
        result = self._predicted(key, Op.CALL, (target, args, kwargs))
        if lanes and (result is None or type(type(result)) is RemoteType):
            self._lanes.offer_call(key, target, args)  # the next such call may take a lane
        return result

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
        lanes = not kwargs and self.arrays is None
        if lanes and not discard:
            lane = self._method_lane(method_key(obj, name, args))
            if lane:
                result = self._on_lane(lane, (obj, *args))
                if result is not _OFF_LANE:
                    if name in _WATCHED_METHODS:
                        self._watched(obj, name, args, kwargs, result)
                    return result
        if discard:
            with self._lock:
                if self._proto.in_handler():
                    return self._sync(Op.CALLMETHOD, (obj, name, args, kwargs))
                self._send(Op.CALLMETHOD, DISCARD, (obj, name, args, kwargs))
                return None
        if name == "at" and self.arrays is not None:
            value = self.arrays.at_writes_own(obj, args, kwargs)
            if value is not _MISS:  # np.add.at(counts, labels, 1) of the script's own counts
                return value
        if name == "item" and self._item_values and not args and not kwargs:
            value = self._item_values.item(obj._t_id, self.epoch)
            if value is not _MISS:
                return value
        if (
            name in LOCAL_METHODS
            and self.replicas is not None
            and not args
            and not kwargs
            and self.is_ndarray(obj)
        ):
            value = self.replicas.method(obj, name)
            if value is not _MISS:  # q[s].max(), x.tolist() from a local copy
                return value
        key = ("m", type(obj)._t_tid, name)  # see tether.client._sites
        result = self._predicted(key, Op.CALLMETHOD, (obj, name, args, kwargs))
        if lanes and (result is None or type(type(result)) is RemoteType):
            self._lanes.offer_method(key, obj, name, args)  # the next such call may take a lane
        if name in _WATCHED_METHODS:
            self._watched(obj, name, args, kwargs, result)
        return result

    def _watched(
        self, obj: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        """After ``obj.name(*args, **kwargs)``, a method the session follows."""
        if name in ITEM_METHODS:
            self._held.iterating(obj, name, result)  # its items: kept by obj (client/_held.py)
            return
        # model.train() / model.eval(): a module's calls may return other things in
        # the other mode (an auxiliary head's (out, aux) while training, out when
        # evaluating), so calls of objects are learnt apart by mode.
        mode = (args[0] if args else kwargs.get("mode", True)) if name == "train" else False
        if type(mode) is bool and (
            mode is not self._mode or self._modes.get(obj._t_id) is not mode
        ):
            self._mode = self._modes[obj._t_id] = mode
            self._lanes.calls.clear()  # (only on a change: many loops call train() every step)

    def next_item(self, it: Any, *, more: bool) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        key = next_site(it, self.types) if more else None
        if key is None:
            with self._lock:
                item = self._sync(Op.NEXT, (it,))
            if self._held.streams:  # model.modules()'s items, kept by the model
                self._held.item(it, item)
            return item
        return self._predicted(key, Op.NEXT, (it,))

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

    # -- prediction ----------------------------------------------------------------------
    def _predicted(self, key: Any, op: Op, fields: tuple[Any, ...]) -> Any:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        with self._lock:
            template = self._proto.plan(key)
            if template is None and self._pred.by_place(key):
                # The site's calls return different things: the calls made at one
                # place in the script may not ((x - m).T.dot(c).dot(x - m): an
                # array, then a number). Learn them apart.
                place = call_place()
                if place is not None:
                    key = (key, place)
                    template = self._proto.plan(key)
            if template is None:
                value, flags = self._sync_flags(op, fields)
                template = template_of(value, code_arity(key))
                self._pred.learn(key, template, nopipe=bool(flags & _NOPIPE))
                return value
            shape: Shape
            if type(template) is HandleOf:  # one handle, the common case: inlined
                hid = self._next_id
                self._next_id = hid + 1
                tid = template.tid
                shape = _new_tuple(Handle, (hid, tid))  # Handle(hid, tid), at C speed
                result = _new(self._mirrors.get(tid) or self._mirror(tid))
                _set_s(result, self)
                _set_id(result, hid)
            else:
                shape, self._next_id = instantiate(template, self._next_id)
                result = self._proxies(shape)
            seq = self._send(op, shape, fields)
            if self._pred.sent(seq, key, _weakref(result) if type(shape) is Handle else None):
                self._sync(Op.PING, ())
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
        self._proto.check_open()

    def _send(self, op: Op, shape: Shape, fields: tuple[Any, ...], flags: int = 0) -> int:
        # Whatever this does besides encoding and queueing (a quiet mark, pending
        # draws, the script's rebinds, a nested call) _on_lane must leave to it or
        # do the same: keep the two in step.
        quiet = self._quiet
        self._quiet = 0  # (it marks one call: not the ones made while this one waits)
        proto = self._proto
        if proto.state is not State.OPEN:
            proto.check_open()
        if self.draws_pending and not quiet & _QUIET_RNG:
            self.draws.settle()  # type: ignore[union-attr]  # before anything that may draw
        if self._ns.tracked:
            changed = self._ns.changes(proto.unsynced)
            if changed:
                self._queue_names(changed)
        meta = self._compact(op, shape, fields)
        if meta is not None:
            buffers: Any = ()
        else:
            try:
                meta, bufs = self._encoder.dumps((int(op), shape_to_wire(shape), *fields))
            except Exception as exc:
                raise TypeError(f"cannot send this call to the worker: {exc}") from exc
            buffers = tuple(b.raw() for b in bufs)
        send_now = False
        if buffers and not flags & _SYNC:
            # Out-of-band buffers are the script's own memory, read when the frame
            # is written, not now: what the script writes into an array after a
            # pipelined call (a loader refilling one buffer) would reach the
            # worker. Small ones are copied; large ones are written at once.
            if sum(b.nbytes for b in buffers) <= COPY_BUFFERS:
                buffers = tuple(b.tobytes() for b in buffers)
            else:
                send_now = True
        # A call made while the worker waits for our answer: the worker runs it
        # at once, inside the request (the calls queued before it wait for the
        # request to end, as they would locally).
        seq = proto.call(meta, buffers, flags & _SYNC, self._serving)
        if quiet & _QUIET_ARRAYS:
            self._quiet_calls += 1
        if send_now or proto.flush_due:
            self._flush()
        return seq

    def _queue_names(self, changed: list[tuple[str, list[tuple[str, bool, Any]]]]) -> None:
        """Put the script's rebinds of names the worker holds in the call stream,
        ahead of the call being sent (see :mod:`tether.client._namespace`).

        A value that cannot travel inline is sent as "forget it": the worker
        pages it in again when its code next reads it, and fails there if it
        cannot have it, as a read would. If calls in flight may still page in
        that name's earlier value, the worker runs them first (one round trip),
        or the later calls' page-in would get the earlier value too.
        """
        entries = []
        before = self._ns.before
        catch_up = False
        for module, names in changed:
            items: list[tuple[str, bytes | None]] = []
            for name, present, value in names:
                blob = None
                if present:
                    try:
                        blob = dumps_inband(share_global(value, self._export), self._code)
                    except Exception:
                        blob = None
                if blob is None and before and (module, name) in before:
                    catch_up = True
                items.append((name, blob))
            entries.append((module, items))
        if catch_up:
            self._sync(Op.PING, ())
        self._proto.names(NAMESPACE_TAG + pickle.dumps(entries, protocol=5))

    def _drain(self) -> None:
        """Hand what the protocol decided to the channel (right before it writes)."""
        out = self._proto.data_to_send()
        if out:
            self.channel.send_pieces(out)

    def _flush(self) -> None:
        self._proto.emit_batch()
        self._drain()
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
        return self._wait(seq)

    def _wait(self, seq: int) -> tuple[Any, int]:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        proto = self._proto
        proto.expect(seq)
        try:
            return self._wait_loop(seq)
        finally:
            proto.abandon(seq)  # already answered, or never will be here

    def _wait_loop(self, seq: int) -> tuple[Any, int]:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        channel = self.channel
        proto = self._proto
        # No pipelined call sent since the last answer: this one is a round trip.
        alone = not proto.unsynced
        warned: Exception | None = None  # a worker's warning that became an error
        while True:
            self._drain()  # recv writes it first
            try:
                frame = channel.recv(alone=alone)
            except ChannelClosed as exc:
                self._lose(str(exc))
            event = proto.receive_frame(frame)
            if event is None:
                continue
            if not self._serving and isinstance(event, _ANSWERS):
                self._ns.settled()  # the worker has run every call sent
            if isinstance(event, Reply):
                if warned is not None:
                    # Locally the script would have stopped at the warning.
                    with contextlib.suppress(Exception):
                        self._decode(event.meta, event.buffers)  # its handles go
                    raise warned.with_traceback(None)
                return self._decode(event.meta, event.buffers), event.flags
            if isinstance(event, Failed):
                raise (warned or rebuild_exception(event.meta)).with_traceback(None)
            if isinstance(event, Exhausted):
                if warned is not None:
                    raise warned.with_traceback(None)
                return EXHAUSTED, _EXHAUSTED_FLAG
            if isinstance(event, Output):
                self._write_output(event.data, event.stderr)
            elif isinstance(event, WarningFrame):
                if warned is None:
                    self._muted += 1  # showing it writes to sys.stderr: no sync now
                    try:
                        warned = self._warnings.reissue(event.meta)
                    finally:
                        self._muted -= 1
            elif isinstance(event, Request):
                self._answer(event.rid, event.meta, event.buffers)
            elif isinstance(event, Retyped):
                self._retype(event)
            elif isinstance(event, Lost):
                self._lose(event.why)

    def _retype(self, event: Retyped) -> None:
        """A pipelined result is of another class than guessed: its proxy takes
        the class the worker says (``np.dot`` of two vectors is a number, not the
        array the same site made before), so the script's operators, ``type()``
        and the client's libraries see what the object is."""
        self._learn_types(event.types)
        proxy = event.result()
        if proxy is None or event.tid not in self.types:
            return  # the script let it go already (or a class never described: keep it)
        self._mx.retype(proxy, event.tid)

    def _answer(self, rid: int, meta: bytes, buffers: Any) -> None:
        """Serve one request of the worker's (names, sources, files, modules,
        shared objects). Calls the script makes meanwhile run in the worker at
        once (see :meth:`_send`), so requests may nest either way."""
        flags = 0
        self._serving += 1
        try:
            result: Any = self._lender.serve(request_from_wire(self._decode(meta, buffers)))
        except Exception as exc:
            flags, result = Flag.ERROR, exc
        finally:
            self._serving -= 1
        try:
            out, bufs = self._encoder.dumps(result)
        except Exception as exc:
            flags = Flag.ERROR
            out, bufs = self._encoder.dumps(TypeError(f"cannot send the answer: {exc}"))
        self._proto.respond(rid, out, tuple(b.raw() for b in bufs), error=bool(flags))

    def _learn_types(self, descs: Any) -> None:
        """Record the worker's descriptions of classes (``TypeDesc`` fields) that
        came with a reply or a notice, before anything of those classes is made."""
        for fields in descs:
            desc = TypeDesc(*fields)
            self.types[desc.tid] = desc

    def _decode(self, meta: bytes, buffers: Any) -> Any:
        if meta[:1] == VALUE_TAG:  # a plain value, compact (wire/_values.py)
            return decode_value(meta)
        try:
            types_, blob = pickle.loads(meta)
            self._learn_types(types_)
            return ClientUnpickler(self, io.BytesIO(blob), buffers).load()
        except TetherError:
            raise
        except Exception as exc:
            raise ProtocolError(f"cannot decode the worker's reply: {exc!r}") from exc

    def _write_output(self, data: bytes, stderr: bool) -> None:
        text = data.decode("utf-8", "surrogateescape")
        stream = original_stream(sys.stderr if stderr else sys.stdout)
        stream.write(text)
        if stderr:
            stream.flush()

    def _lose(self, why: str) -> Any:
        message = self._proto.lose(why)
        self._stop_heart()
        self.channel.close()
        raise DeviceLost(message)

    # -- barrier for local output --------------------------------------------------------
    def barrier(self) -> None:
        """Sync if pipelined calls are outstanding (before local output)."""
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        proto = self._proto
        if proto.unsynced and not self._muted and proto.state is State.OPEN:
            with self._lock:
                if proto.unsynced:
                    self._sync(Op.PING, ())

    def share(self, value: Any) -> Any:
        """``value`` as remote code should hold it: shared if it is script state."""
        return self._lender.share(value)


class _Code:
    """A namespace already pickled by value (see :meth:`Session.make_class`)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> Any:
        from tether import _refs

        return (_refs.code, (self.blob,))


class _Quietly:
    """What :meth:`Session.quietly` returns: marks the next call sent, under the lock.
    Blocks nest: a helper that asks the worker something quietly while the block's own
    call is being made (numpy.random's check of a new function) leaves the mark, if not
    yet spent, to that call."""

    __slots__ = ("_level", "_outer", "_s")

    def __init__(self, session: Session, level: int) -> None:
        self._s = session
        self._level = level
        self._outer: list[int] = []  # the marks of the blocks this one is inside

    def __enter__(self) -> None:
        self._s._lock.acquire()
        self._outer.append(self._s._quiet)
        self._s._quiet = self._level

    def __exit__(self, *exc: object) -> None:
        self._s._quiet = self._outer.pop()
        self._s._lock.release()
