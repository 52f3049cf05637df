"""Is the script, right now, inside a ``try`` that could catch a remote error?

Pipelined calls fail later than they were made. That is invisible unless the
script would have caught the error: so a call made inside a ``try ... except``
(in its own frame or any caller's) is sent synchronously, and raises in place.

CPython 3.11+ records handlers in each code object's exception table; the
innermost entry covering an instruction says where control goes on an error.
The handler there is classified by its first instructions:

* ``PUSH_EXC_INFO; POP_TOP`` is a bare ``except:``: catches.
* ``PUSH_EXC_INFO; ... CHECK_EXC_MATCH`` is ``except T:``: catches, unless every
  ``T`` is one of the exceptions remote code never raises here
  (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``).
* ``PUSH_EXC_INFO; WITH_EXCEPT_START`` is a ``with`` block: its ``__exit__``
  may swallow the error (``contextlib.suppress``, a ``@contextmanager`` with
  ``try``), so it catches, unless the context manager is a remote object
  (``torch.no_grad()``): proxies record the ``with`` statements that entered
  them (:func:`note_transparent_with`), and those only clean up.
* A handler that reaches ``RERAISE`` without matching is a ``finally``: it
  counts as catching too, because its body must run after the failing line and
  before anything else (a print in it must not be the point where a late error
  surfaces). What does not catch passes the error on to whatever covers the
  handler itself, which is looked up the same way.

Answers are cached per (code object, instruction offset); a lookup costs a
dictionary probe per frame.
"""

from __future__ import annotations

import dis
import sys
import types
from typing import Final

_BENIGN: Final = frozenset({"KeyboardInterrupt", "SystemExit", "GeneratorExit"})
_PKG_DIR: Final = __file__.rsplit("/", 2)[0]  # .../tether

# Keyed by id(code): code objects do not cache their hash, and hashing one per
# frame per call cost more than the rest of the check. _codes keeps every code
# object seen alive, so its id cannot be reused by another.
_cache: dict[tuple[int, int], bool] = {}
_codes: dict[int, types.CodeType] = {}
#: Per frame position: 0 (passes errors on), 1 (catches), 2 (_STOP).
_verdicts: dict[tuple[int, int], int] = {}
#: (code, offset of BEFORE_WITH) of with statements whose manager lets errors through.
_transparent_with: set[tuple[types.CodeType, int]] = set()


def note_transparent_with(frame: types.FrameType) -> None:
    """Record that the ``with`` statement ``frame`` is executing entered a manager
    whose ``__exit__`` never swallows an error (a proxy, a session)."""
    key = (frame.f_code, frame.f_lasti)
    if key not in _transparent_with:
        _transparent_with.add(key)
        _cache.clear()  # answers about this block were made assuming a local manager
        _verdicts.clear()


def _with_start(ordered: list[int], instrs: dict[int, dis.Instruction], body: int) -> int:
    """Offset of the BEFORE_WITH that opens the block whose body starts at ``body``."""
    for off in reversed(ordered):
        if off < body and instrs[off].opname in ("BEFORE_WITH", "BEFORE_ASYNC_WITH"):
            return off
    return -1


_tables: dict[types.CodeType, tuple[list[tuple[int, int, int]], dict[int, dis.Instruction]]] = {}


def _table(code: types.CodeType) -> tuple[list[tuple[int, int, int]], dict[int, dis.Instruction]]:
    t = _tables.get(code)
    if t is None:
        entries = [(e.start, e.end, e.target) for e in dis._parse_exception_table(code)]  # type: ignore[attr-defined]
        instrs = {i.offset: i for i in dis.get_instructions(code)}
        t = _tables[code] = (entries, instrs)
    return t


def _covering(entries: list[tuple[int, int, int]], offset: int) -> tuple[int, int] | None:
    """(start of the protected range, handler) of the entry covering ``offset``."""
    for start, end, target in entries:
        if start <= offset < end:
            return start, target
    return None


def catches_at(code: types.CodeType, offset: int) -> bool:
    """Would an exception raised at ``offset`` in ``code`` be caught there?"""
    key = (id(code), offset)
    hit = _cache.get(key)
    if hit is None:
        _codes[id(code)] = code
        hit = _cache[key] = _catches(code, offset, 0)
    return hit


def _catches(code: types.CodeType, offset: int, depth: int) -> bool:
    if depth > 16:
        return True  # be safe: synchronous
    entries, instrs = _table(code)
    covering = _covering(entries, offset)
    if covering is None:
        return False
    start, target = covering
    ordered = sorted(instrs)
    idx = ordered.index(target) if target in instrs else -1
    if idx < 0 or instrs[target].opname != "PUSH_EXC_INFO":
        # A cleanup block (e.g. COPY; POP_EXCEPT; RERAISE): find where it re-raises.
        return _reraise_caught(code, ordered, instrs, max(idx, 0), depth)
    nxt = instrs[ordered[idx + 1]] if idx + 1 < len(ordered) else None
    if nxt is None:
        return True
    if nxt.opname == "POP_TOP":
        return True  # bare except
    if nxt.opname == "WITH_EXCEPT_START":
        if (code, _with_start(ordered, instrs, start)) in _transparent_with:
            return _reraise_caught(code, ordered, instrs, idx, depth)
        return True
    names: list[str] = []
    pending: list[str] = []
    for off in ordered[idx + 1 :]:
        ins = instrs[off]
        if ins.opname in ("CHECK_EXC_MATCH", "CHECK_EG_MATCH"):
            names.extend(pending or ["?"])
            pending = []
        elif ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_FAST", "LOAD_ATTR"):
            if ins.opname == "LOAD_ATTR":
                pending = [str(ins.argval)]
            else:
                pending.append(str(ins.argval))
        elif ins.opname == "BUILD_TUPLE":
            pass
        elif ins.opname == "RERAISE":
            break
        else:
            pending = []
    if not names:  # finally: its body must see the error in order
        return True
    if all(n in _BENIGN for n in names):
        return _reraise_caught(code, ordered, instrs, idx, depth)
    return True


def _reraise_caught(
    code: types.CodeType,
    ordered: list[int],
    instrs: dict[int, dis.Instruction],
    idx: int,
    depth: int,
) -> bool:
    for off in ordered[idx:]:
        if instrs[off].opname == "RERAISE":
            return _catches(code, off, depth + 1)
    return False


#: Frames that run the user's code as a whole (an IPython cell, ``python -m``):
#: their handlers report errors, they do not recover from them, and the walk
#: up the stack stops there.
_RUNNERS: Final = (
    ("run_code", "IPython/core/interactiveshell.py"),
    ("safe_execfile", "IPython/core/interactiveshell.py"),
    ("safe_run_module", "IPython/core/interactiveshell.py"),
    ("execfile", "IPython/utils/py3compat.py"),
    ("_run_code", "runpy.py"),
    ("_run_module_as_main", "runpy.py"),
)
_STOP: Final = 2


def _classify(code: types.CodeType, offset: int) -> int:
    for name, suffix in _RUNNERS:
        if code.co_name == name and code.co_filename.endswith(suffix):
            return _STOP
    if code.co_filename.startswith(_PKG_DIR):
        return 0
    return int(catches_at(code, offset))


def in_handler(skip: int = 2) -> bool:
    """True if some frame of the caller's stack would catch an exception now.

    Frames of Tether's own code are ignored, and the walk stops at a runner of
    the user's code (an IPython cell). ``skip`` frames above this one are
    skipped first (this function and its caller, by default).
    """
    f: types.FrameType | None = sys._getframe(skip)
    cache = _verdicts
    while f is not None:
        code = f.f_code
        key = (id(code), f.f_lasti)
        verdict = cache.get(key)
        if verdict is None:
            _codes[id(code)] = code
            verdict = cache[key] = _classify(code, f.f_lasti)
        if verdict:
            return verdict == 1
        f = f.f_back
    return False
