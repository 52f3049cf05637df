"""The script's code in processes the worker spawns.

A DataLoader with the "spawn" start method pickles the script's classes and
functions for its workers, whose ``__main__`` is not the script's and which
have none of the script's modules: multiprocessing's pickler must send them by
value (cloudpickle), with every global name they use paged in first.
"""

from __future__ import annotations

import types
from typing import Any

from tether._code import global_names
from tether.acceptor._codec import iter_functions
from tether.acceptor._namespace import ScriptNamespace


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
