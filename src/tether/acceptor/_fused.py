"""Fused lanes: a pipelined call of a known layout read, run and bound by one function.

A pipelined call of a lane (:mod:`tether.wire._lanes`) used to go through three
steps of the engine, each a dispatch on what the last one built: the reader
made a message tuple ``(op, shape, fn, args, kwargs)`` and a ``Handle`` shape,
``Engine._execute`` chose by ``op`` and called, ``Engine._bind`` chose by the
shape's class and stored the result. For ``a * 0.999`` on a 16-element tensor
that cost the worker more than the multiplication (measured on this project's
2-core test machine: 7.4 us a call in all, 2.7 us of them in torch). The
client's loop issues such calls faster than the worker ran them, so the worker
set the pace of script-level tensor math.

:func:`fuser` makes, for each layout the reader learns, one function that does
what the three steps do for the outcome that is all but certain (the operands
are live handles, the call returns a result of the predicted class) and hands
everything else back:

* a handle that is not in the table (released, or poisoned by a failed call):
  :data:`~tether.wire._lanes.NOT_RUN` before anything ran, and the engine's
  general path raises the error it always raised;
* a function held as a handle that is a Python function (it may be one that
  reads its caller's frame: ``Engine._execute`` runs those its own way):
  :data:`~tether.wire._lanes.NOT_RUN`, before anything ran;
* the call raised: ``CallFailed(shape, exc)``, as the general path returns;
* the result is not of the predicted class (None included): the general
  ``bind`` makes the same NOTICE it always made.

So a fused call and a general one have the same effects and outcomes; the
tests run every lane both ways. Layouts whose function is a Python function
(named in the call, not a handle) get no runner, for the same reason as above.

The generated source holds only names this module makes up (as in
:mod:`tether.wire._lanes`); the call's values are bound by name.
"""

from __future__ import annotations

import struct
import types
from collections.abc import Callable
from typing import Any, Final

from tether.acceptor._events import CallFailed, Outcome
from tether.wire._lanes import NOT_RUN, Fuser, RawHandle
from tether.wire._ops import NONE, Handle, Op

__all__ = ["fuser"]

_CALL: Final = int(Op.CALL)
_H: Final = 0x68  # an operand's tag: a handle

#: ``bind(shape, value)``: the engine's binding of an unexpected result, as an outcome.
Bind = Callable[[Any, Any], Outcome]


def fuser(handles: dict[int, Any], tids: dict[type, int], bind: Bind) -> Fuser:
    """The ``fuse`` of a :class:`~tether.wire._lanes.LaneReader` for one engine:
    runners that read and write ``handles`` (the engine's table, the same dict
    for its life), know classes by ``tids`` (its type registry's table) and
    leave an unexpected result to ``bind``."""

    def fuse(
        op: int, shape: Any, items: list[Any], tags: list[int], fmt: str
    ) -> Callable[[bytes], Any] | None:
        if type(shape) is Handle:
            return _compile(op, shape.tid, items, tags, fmt, handles, tids, bind)
        if shape is NONE:
            return _compile(op, None, items, tags, fmt, handles, tids, bind)
        return None

    return fuse


def _compile(
    op: int,
    tid: int | None,
    items: list[Any],
    tags: list[int],
    fmt: str,
    handles: dict[int, Any],
    tids: dict[type, int],
    bind: Bind,
) -> Callable[[bytes], Any] | None:
    scope: dict[str, Any] = {
        "_unpack": struct.Struct(fmt).unpack,
        "H": handles,
        "TGET": tids.get,
        "TID": tid,
        "_bind": bind,
        "_failed": CallFailed,
        "_handle": tuple.__new__,
        "Handle": Handle,
        "NONE": NONE,
        "NOT_RUN": NOT_RUN,
        "_FUNCTION": types.FunctionType,
        "_PASS": (KeyboardInterrupt, SystemExit),
    }
    holes = ["hid"]
    looks = []  # handle look-ups, all made before the call runs
    args = []
    if op == _CALL:
        fn = items[0]
        if type(fn) is RawHandle:
            scope["FH"] = int(fn)
            looks.append("f = H[FH]")
            callee = "f"
        elif type(fn) is types.FunctionType:
            return None  # it may read its caller's frame: Engine._execute's way
        else:
            scope["FN"] = fn
            callee = "FN"
    else:
        holes.append("t")
        looks.append("o = H[t]")
        scope["NAME"] = items[1]
        callee = "getattr(o, NAME)"
    for i, tag in enumerate(tags):
        holes.append(f"v{i}")
        if tag == _H:
            looks.append(f"x{i} = H[v{i}]")
            args.append(f"x{i}")
        else:
            args.append(f"v{i}")
    shape = "NONE" if tid is None else "_handle(Handle, (hid, TID))"
    lines = [
        "def run(meta):",
        f"    {', '.join(holes)}, = _unpack(meta)",
    ]
    if looks:
        lines += ["    try:", *(f"        {x}" for x in looks)]
        lines += ["    except KeyError:", "        return NOT_RUN"]
    if callee == "f":
        lines += ["    if type(f) is _FUNCTION:", "        return NOT_RUN"]
    lines += [
        "    try:",
        f"        r = {callee}({', '.join(args)})",
        "    except _PASS:",
        "        raise",
        "    except BaseException as exc:",
        f"        return _failed({shape}, exc)",
    ]
    if tid is None:
        lines += ["    if r is not None:", f"        return _bind({shape}, r)"]
    else:
        lines += ["    H[hid] = r", "    if TGET(type(r)) != TID:"]
        lines.append(f"        return _bind({shape}, r)")
    lines.append("    return None")
    exec("\n".join(lines) + "\n", scope)  # names only: see the module docstring
    return scope["run"]  # type: ignore[no-any-return]
