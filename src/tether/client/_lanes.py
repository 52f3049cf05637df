"""Fast lanes: repeated calls pipelined by one dictionary look-up and one pack.

A script's own tensor math (``a = a * 0.999 + b``, ``x.add_(y)``,
``torch.relu(h)``, ``opt.step()``) is a stream of calls whose sites the session
has already learned: the same function or method, operands of the same classes,
the same kind of result. Taking each through the general path (the site's key,
the prediction table, the compact encoder, the protocol's numbering of any
call) cost the client about 6.5 us a call on this project's 2-core test
machine, three times what torch takes to run ``a * 0.999``.

A :class:`Lane` keeps what the general path worked out for one call shape, keyed
by the classes of its operands: the site and its prediction (one handle of a
type, or None), the result's proxy class, and a packer that writes the call's
batch entry with one ``struct`` call (:func:`tether.wire._lanes.packer`; the
worker reads such calls back with one too). Three kinds of call have lanes:

- operators, by ``(fn, type(a), type(b))`` (``Session.apply``);
- methods, by ``(type(obj), name, *classes of the arguments)``
  (``Session.callmethod``, positional arguments only);
- remote callables that are not classes (``torch.relu``, a module), by
  ``(their handle id, *classes of the arguments)`` (``Session.call``).

Every operand must be a proxy, a float or an int (the packer's fixed-size
holes); anything else, and keywords, take the general path. The session takes a
lane only when nothing asks for the general path (see ``Session._on_lane``),
and only while the site's prediction is the one the lane was opened with
(:attr:`~tether.client._predict.Site.version`: a new template learned, or a
NOTICE that a pipelined call found another result, closes it). The bytes on the
wire are those of the general path, so the worker cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final, Literal, NamedTuple

from tether.client._predict import HandleOf, Predictions, Site
from tether.wire._compact import SHAPE_HANDLE, SHAPE_NONE, CompactEncoder
from tether.wire._lanes import Packer, packer
from tether.wire._ops import NONE, Op

#: Lanes kept per table before it starts again (callables come and go).
MAX_LANES: Final = 4096

_CALL: Final = int(Op.CALL)
_CALLMETHOD: Final = int(Op.CALLMETHOD)


class Lane(NamedTuple):
    key: Hashable  # the site's key, for Predictions.sent
    site: Site
    version: int  # good while site.version is this
    cls: type | None  # the result's proxy class; None: the call returns None
    pack: Packer


#: A table of lanes: a Lane, or False where the call has no fixed layout.
Table = dict[tuple[Any, ...], "Lane | Literal[False]"]


class Lanes:
    """The lanes of one session; ``ops``, ``methods`` and ``calls`` are the hot
    path's tables (see the module docstring for their keys)."""

    __slots__ = ("_encoder", "_mirror", "_predictions", "calls", "methods", "ops")

    def __init__(
        self,
        predictions: Predictions,
        encoder: CompactEncoder,
        mirror: Callable[[int], type],
    ) -> None:
        self._predictions = predictions
        self._encoder = encoder
        self._mirror = mirror
        self.ops: Table = {}
        self.methods: Table = {}
        self.calls: Table = {}

    def offer_op(self, key: Hashable, fn: Any, a: Any, b: Any) -> None:
        """After a general-path call ``fn(a, b)`` of site ``key``."""
        self._offer(self.ops, (fn, type(a), type(b)), key, _CALL, (fn, a, b), (False, True, True))

    def offer_method(self, key: Hashable, obj: Any, name: str, args: tuple[Any, ...]) -> None:
        """After a general-path call ``obj.name(*args)`` of site ``key``."""
        self._offer(
            self.methods,
            method_key(obj, name, args),
            key,
            _CALLMETHOD,
            (obj, name, *args),
            (True, False, *(True,) * len(args)),
        )

    def offer_call(self, key: Hashable, target: Any, args: tuple[Any, ...]) -> None:
        """After a general-path call ``target(*args)`` of site ``key``."""
        self._offer(
            self.calls,
            call_key(target, args),
            key,
            _CALL,
            (target, *args),
            (False, *(True,) * len(args)),
        )

    def _offer(
        self,
        table: Table,
        lane_key: tuple[Any, ...],
        key: Hashable,
        op: int,
        items: tuple[Any, ...],
        variable: tuple[bool, ...],
    ) -> None:
        if lane_key in table:
            return
        template = self._predictions.predict(key)
        site = self._predictions.site(key)
        if template is None or site is None:
            return  # not predictable yet: the general path goes on learning
        cls: type | None
        if type(template) is HandleOf:
            kind, tid, cls = SHAPE_HANDLE, template.tid, None
        elif template is NONE:
            kind, tid, cls = SHAPE_NONE, 0, None
        else:
            return  # a list or tuple of handles: the general path
        pack = packer(self._encoder, op, kind, tid, items, variable)
        if len(table) >= MAX_LANES:
            table.clear()
        if pack is None:
            table[lane_key] = False
            return
        if kind == SHAPE_HANDLE:
            cls = self._mirror(tid)
        table[lane_key] = Lane(key, site, site.version, cls, pack)


def method_key(obj: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of ``obj.name(*args)`` in :attr:`Lanes.methods`."""
    n = len(args)
    if n == 0:
        return (type(obj), name)
    if n == 1:
        return (type(obj), name, type(args[0]))
    return (type(obj), name, *map(type, args))


def call_key(target: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of ``target(*args)`` in :attr:`Lanes.calls`."""
    n = len(args)
    if n == 0:
        return (target._t_id,)
    if n == 1:
        return (target._t_id, type(args[0]))
    return (target._t_id, *map(type, args))
