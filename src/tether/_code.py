"""Facts about code objects that both ends of a session need."""

from __future__ import annotations

import types


def global_names(code: types.CodeType) -> set[str]:
    """Every global name ``code`` (or code nested in it) may read or write."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names
