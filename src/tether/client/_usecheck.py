"""Does the script use the result of the call it is making right now?

A site that returned None three times in a row is predicted to return None
again (:mod:`tether.client._predict`), and its next call is pipelined: the
script gets None at once. That is only safe where the script drops the result,
as it does with ``opt.step()`` or ``loss.backward()`` written as statements:
``v = d.get(key)`` that returned None for three keys returns a tensor for the
fourth, and a pipelined None would be a wrong value, not a late one.

So a None prediction is used only where the script's frame that receives the
result discards it: its next instruction is ``POP_TOP`` (an expression
statement). Everything else waits for the value. Tether's own frames are
skipped: the receiver is the first frame of other code (the script, or a
library it called). Answers are cached per (code object, instruction offset),
as in :mod:`tether.client._trycheck`.

:func:`call_place` names the same frame's call by its instruction: the session
keys a call site by it where the site alone does not say what a call returns
(two ``.dot`` calls on one line, one making an array and one a number).
"""

from __future__ import annotations

import bisect
import dis
import sys
import types
from typing import Final

_PKG_DIR: Final = __file__.rsplit("/", 2)[0]  # .../tether

# Keyed by id(code) (see client/_trycheck.py); _codes keeps each code object
# seen alive, so its id cannot be reused by another.
_verdicts: dict[tuple[int, int], bool] = {}
_codes: dict[int, types.CodeType] = {}
_ours: dict[int, bool] = {}  # id(code) -> is Tether's own
_offsets: dict[int, tuple[list[int], list[str]]] = {}


def _next_opname(code: types.CodeType, offset: int) -> str:
    """The instruction that follows the one at ``offset`` (inline caches skipped)."""
    table = _offsets.get(id(code))
    if table is None:
        instructions = list(dis.get_instructions(code))
        table = _offsets[id(code)] = (
            [i.offset for i in instructions],
            [i.opname for i in instructions],
        )
    offsets, names = table
    k = bisect.bisect_right(offsets, offset)
    return names[k] if k < len(names) else ""


def result_used(skip: int = 2) -> bool:
    """True unless the first frame above Tether's own (``skip`` frames up
    first: this function and its caller, by default) drops the value of the
    call it is making."""
    place = call_place(skip + 1)
    if place is None:
        return True
    verdict = _verdicts.get(place)
    if verdict is None:
        verdict = _verdicts[place] = _next_opname(_codes[place[0]], place[1]) != "POP_TOP"
    return verdict


def call_place(skip: int = 2) -> tuple[int, int] | None:
    """Where the first frame above Tether's own (``skip`` frames up first) is
    making its call: ``(id(code), instruction offset)``, stable for the session
    (the code object is kept alive), or None if there is no such frame."""
    f: types.FrameType | None = sys._getframe(skip)
    while f is not None:
        code = f.f_code
        cid = id(code)
        ours = _ours.get(cid)
        if ours is None:
            _codes[cid] = code
            ours = _ours[cid] = code.co_filename.startswith(_PKG_DIR)
        if not ours:
            return (cid, f.f_lasti)
        f = f.f_back
    return None
