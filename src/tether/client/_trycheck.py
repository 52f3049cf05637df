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

import builtins
import dis
import sys
import types
from typing import Any, Final

_BENIGN: Final = frozenset({"KeyboardInterrupt", "SystemExit", "GeneratorExit"})
_PKG_DIR: Final = __file__.rsplit("/", 2)[0]  # .../tether

# Keyed by id(code): code objects do not cache their hash, and hashing one per
# frame per call cost more than the rest of the check. _codes keeps every code
# object seen alive, so its id cannot be reused by another.
_cache: dict[tuple[int, int], bool] = {}
_codes: dict[int, types.CodeType] = {}
#: Per frame position: 0 (passes errors on), 1 (catches), 2 (_STOP).
_verdicts: dict[tuple[int, int], int] = {}
#: Code (by id) that passes errors on at every instruction: Tether's own, and
#: code without any handler.
_free: set[int] = set()
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


def _with_start(
    ordered: list[int],
    instrs: dict[int, dis.Instruction],
    entries: list[tuple[int, int, int]],
    handler: int,
) -> int:
    """Offset of the BEFORE_WITH whose block ``handler`` cleans up, or -1.

    The block's protected ranges all lead to its handler, and the first of them
    starts right after its BEFORE_WITH. (The range that covers the failing
    instruction may be a later one: the cleanup of a nested ``with``.)
    """
    first = min(start for start, _, target in entries if target == handler)
    i = ordered.index(first) if first in instrs else 0
    if i > 0 and instrs[ordered[i - 1]].opname == "BEFORE_WITH":
        return ordered[i - 1]
    return -1


_tables: dict[types.CodeType, tuple[list[tuple[int, int, int]], dict[int, dis.Instruction]]] = {}


def _table(code: types.CodeType) -> tuple[list[tuple[int, int, int]], dict[int, dis.Instruction]]:
    t = _tables.get(code)
    if t is None:
        entries = [(e.start, e.end, e.target) for e in dis._parse_exception_table(code)]  # type: ignore[attr-defined]
        instrs = {i.offset: i for i in dis.get_instructions(code)}
        t = _tables[code] = (entries, instrs)
    return t


def _handler(entries: list[tuple[int, int, int]], offset: int) -> int | None:
    """The handler of the exception-table entry covering ``offset``, if any."""
    for start, end, target in entries:
        if start <= offset < end:
            return target
    return None


def catches_at(code: types.CodeType, offset: int, globals_: dict[str, Any] | None = None) -> bool:
    """Would an exception raised at ``offset`` in ``code`` be caught there?

    ``globals_`` are the globals the code runs with (to tell the builtin
    ``open`` from one of the script's).
    """
    key = (id(code), offset)
    hit = _cache.get(key)
    if hit is None:
        _codes[id(code)] = code
        hit = _cache[key] = _catches(code, offset, 0, globals_ or {})
    return hit


def _catches(code: types.CodeType, offset: int, depth: int, globals_: dict[str, Any]) -> bool:
    if depth > 16:
        return True  # be safe: synchronous
    entries, instrs = _table(code)
    target = _handler(entries, offset)
    if target is None:
        return False
    ordered = sorted(instrs)
    idx = ordered.index(target) if target in instrs else -1
    if idx < 0 or instrs[target].opname != "PUSH_EXC_INFO":
        # A cleanup block (e.g. COPY; POP_EXCEPT; RERAISE): find where it re-raises.
        return _reraise_caught(code, ordered, instrs, max(idx, 0), depth, globals_)
    nxt = instrs[ordered[idx + 1]] if idx + 1 < len(ordered) else None
    if nxt is None:
        return True
    if nxt.opname == "POP_TOP":
        return True  # bare except
    if nxt.opname == "WITH_EXCEPT_START":
        opened = _with_start(ordered, instrs, entries, target)
        if (code, opened) in _transparent_with or _opens_a_file(ordered, instrs, opened, globals_):
            return _reraise_caught(code, ordered, instrs, idx, depth, globals_)
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
        return _reraise_caught(code, ordered, instrs, idx, depth, globals_)
    return True


def _reraise_caught(
    code: types.CodeType,
    ordered: list[int],
    instrs: dict[int, dis.Instruction],
    idx: int,
    depth: int,
    globals_: dict[str, Any],
) -> bool:
    for off in ordered[idx:]:
        if instrs[off].opname == "RERAISE":
            return _catches(code, off, depth + 1, globals_)
    return False


_JUMPS: Final = frozenset(dis.hasjrel + dis.hasjabs)


def _opens_a_file(
    ordered: list[int], instrs: dict[int, dis.Instruction], before_with: int, globals_: Any
) -> bool:
    """Is the manager of the ``with`` at ``before_with`` the result of calling the
    builtin ``open`` (``with open(path) as f:``)? A file's ``__exit__`` only
    closes it, so the block need not make calls synchronous.

    Walks back from BEFORE_WITH over the instructions that computed the manager
    (by their stack effects) to the callee's load; anything with a jump in it
    is not recognised.
    """
    if before_with < 0 or globals_.get("open", builtins.open) is not builtins.open:
        return False
    i = ordered.index(before_with) - 1
    if i < 0 or instrs[ordered[i]].opname != "CALL":
        return False
    need = 1
    while i >= 0:
        ins = instrs[ordered[i]]
        if ins.opcode in _JUMPS:
            return False
        try:
            need -= dis.stack_effect(
                ins.opcode, ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None, jump=False
            )
        except ValueError:
            return False
        if need <= 0:
            return need == 0 and ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and ins.argval == "open"
        i -= 1
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
    # Python 3.11+ freezes runpy: its code objects name no file.
    ("_run_code", "<frozen runpy>"),
    ("_run_module_as_main", "<frozen runpy>"),
)
_STOP: Final = 2


def _classify(code: types.CodeType, offset: int, globals_: dict[str, Any]) -> int:
    for name, suffix in _RUNNERS:
        if code.co_name == name and code.co_filename.endswith(suffix):
            return _STOP
    if code.co_filename.startswith(_PKG_DIR):
        return 0
    return int(catches_at(code, offset, globals_))


def in_handler(skip: int = 2) -> bool:
    """True if some frame of the caller's stack would catch an exception now.

    Frames of Tether's own code are ignored, and the walk stops at a runner of
    the user's code (an IPython cell). ``skip`` frames above this one are
    skipped first (this function and its caller, by default).
    """
    f: types.FrameType | None = sys._getframe(skip)
    cache = _verdicts
    free = _free
    while f is not None:
        code = f.f_code
        cid = id(code)
        if cid in free:
            f = f.f_back
            continue
        key = (cid, f.f_lasti)
        verdict = cache.get(key)
        if verdict is None:
            _codes[cid] = code
            verdict = cache[key] = _classify(code, f.f_lasti, f.f_globals)
            if verdict == 0 and (
                not code.co_exceptiontable or code.co_filename.startswith(_PKG_DIR)
            ):
                free.add(cid)  # passes errors on wherever it stands: one probe per frame
        if verdict:
            return verdict == 1
        f = f.f_back
    return False
