"""The script's code in processes the worker spawns or forks.

A DataLoader with the "spawn" start method pickles the script's classes and
functions for its workers, whose ``__main__`` is not the script's and which
have none of the script's modules: multiprocessing's pickler must send them by
value (cloudpickle), with every global name they use paged in first.

A process forked from the worker (``torch.multiprocessing.Process`` with the
default "fork": A3C, Hogwild) inherits the worker's namespaces as they are, and
cannot ask the client for a name (its socket is the worker's): before the fork,
:func:`page_for_fork` pages in every global the process's target reads,
following the script's functions and classes it reaches.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any, Final

from tether._code import global_names
from tether.acceptor._codec import iter_functions
from tether.acceptor._namespace import ScriptNamespace
from tether.wire._requests import FlushOutput, RequestFn


def spawn_by_value(obj: Any) -> None:
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


def _page_globals(obj: Any) -> list[Any]:
    """Read every global name the object's code uses, so that names not yet
    paged in from the client travel with it to a spawned process (or are there
    for a forked one); returns the values read."""
    values = []
    for fn in iter_functions(obj):
        namespace = fn.__globals__
        if isinstance(namespace, ScriptNamespace):
            for name in global_names(fn.__code__):
                try:
                    values.append(namespace[name])
                except Exception:
                    continue
    return values


def _by_value(obj: Any) -> Any:
    import cloudpickle

    _page_globals(obj)
    return (cloudpickle.loads, (cloudpickle.dumps(obj),))


def _function_by_value(pickler: Any, obj: Any) -> Any:
    if type(obj) is types.FunctionType and isinstance(obj.__globals__, ScriptNamespace):
        return _by_value(obj)
    return NotImplemented


#: Objects :func:`page_for_fork` follows at most (a guard, not a limit scripts meet).
MAX_REACHED: Final = 10_000


def page_for_fork(request: RequestFn) -> None:
    """Before the worker forks (``os.register_at_fork``): if multiprocessing is
    launching a process, have the client write out what the script printed so
    far (the child prints to the same terminal: multiprocessing flushes the
    streams before it forks, for the same reason), and page in what the
    process's target and arguments will read."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_launch" and "process_obj" in frame.f_locals:
            process = frame.f_locals["process_obj"]
            kwargs = getattr(process, "_kwargs", None) or {}
            args = getattr(process, "_args", ())
            # (on failure the child says what it lacks, as before)
            with contextlib.suppress(Exception):
                request(FlushOutput())
                _page_reachable([getattr(process, "_target", None), *args, *kwargs.values()])
            return
        frame = frame.f_back  # type: ignore[assignment]


def _page_reachable(roots: list[Any]) -> None:
    """Page in the globals of the script's functions reachable from ``roots``
    (functions, bound methods, classes, instances of the script's classes), and
    of the functions and classes those globals and closures hold."""
    seen: set[int] = set()
    todo = list(roots)
    while todo and len(seen) < MAX_REACHED:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        t = type(obj)  # (not isinstance: a lent object of the client's would be asked)
        if t is types.MethodType:
            todo += [obj.__func__, obj.__self__]
            continue
        if t is not types.FunctionType and not issubclass(t, type):
            todo.append(t)  # an instance: its class's methods
            continue
        todo += [v for v in _page_globals(obj) if isinstance(v, (types.FunctionType, type))]
        for fn in iter_functions(obj):
            if isinstance(fn.__globals__, ScriptNamespace):
                for cell in fn.__closure__ or ():
                    with contextlib.suppress(ValueError):  # (an empty cell)
                        todo.append(cell.cell_contents)
