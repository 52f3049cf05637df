"""Facts about code objects that both ends of a session need."""

from __future__ import annotations

import dis
import functools
import types

#: Instructions that read a name from the globals (and builtins).
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def global_names(code: types.CodeType) -> set[str]:
    """Every global name ``code`` (or code nested in it) may read or write."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


@functools.lru_cache(maxsize=4096)
def read_globals(code: types.CodeType) -> frozenset[str]:
    """The global names ``code`` (or code nested in it) may read: its loads of
    globals, not its attribute names (which ``co_names`` holds as well)."""
    names = {str(ins.argval) for ins in dis.get_instructions(code) if ins.opname in _GLOBAL_LOADS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= read_globals(const)
    return frozenset(names)
