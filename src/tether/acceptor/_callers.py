"""Library functions that look at the frame that called them.

A few library functions read their caller's frame: ``torch.fx.wrap`` insists on
being called from the top level of a module (``f_back.f_code.co_name ==
"<module>"``) and records that module's globals, which tracing later patches.
In the worker their caller would be the engine. For these functions the engine
calls through a *trampoline*: a one-line function whose code is named
``<module>`` and whose globals are the worker's namespace of the script module
the call came from, so the library sees what it would see locally and patches
the namespace the script's shipped functions read.

The script module is the one that defined a script function passed as an
argument (``torch.fx.wrap(fn)``), else ``__main__`` (``torch.fx.wrap("name")``).
A call made from inside a function, which the library would refuse locally, is
accepted remotely: the worker cannot see the client's frame.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any, Final

from tether.acceptor._namespace import Namespaces, ScriptNamespace

#: (module, attribute) of each function that inspects its caller's frame.
CALLER_SENSITIVE: Final = (("torch.fx._symbolic_trace", "wrap"),)
_NAMES: Final = frozenset(name for _, name in CALLER_SENSITIVE)
_FUNCTION: Final = types.FunctionType


def _trampoline(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


_AT_MODULE_LEVEL: Final = _trampoline.__code__.replace(co_name="<module>")


def is_caller_sensitive(fn: Any) -> bool:
    """True if ``fn`` is one of :data:`CALLER_SENSITIVE` (cheap for everything else)."""
    if type(fn) is not _FUNCTION or fn.__code__.co_name not in _NAMES:
        return False
    code = fn.__code__
    for module, name in CALLER_SENSITIVE:
        owner = sys.modules.get(module)
        if getattr(getattr(owner, name, None), "__code__", None) is code:
            return True
    return False


def call_from_module(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    namespaces: Namespaces,
) -> Any:
    """Call ``fn`` as the top level of the script module the call came from."""
    namespace: dict[str, Any] | None = None
    for arg in (*args, *kwargs.values()):
        if type(arg) is types.FunctionType and isinstance(arg.__globals__, ScriptNamespace):
            namespace = arg.__globals__
            break
    if namespace is None:
        namespace = namespaces.get("__main__")
    if namespace is None:
        return fn(*args, **kwargs)
    trampoline = types.FunctionType(_AT_MODULE_LEVEL, namespace)
    return trampoline(fn, args, kwargs)
