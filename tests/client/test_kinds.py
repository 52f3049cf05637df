"""Which globals of the script's modules the worker gets how (client/_kinds.py)."""

from __future__ import annotations

import typing
from typing import Any

from tether.client._kinds import pickles_as_own_global

MODULE = __name__


class _Missing:
    def __reduce__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # a named singleton: pickle saves it as MODULE.MISSING
UserId = typing.NewType("UserId", int)
P = typing.ParamSpec("P")
T = typing.TypeVar("T")


def helper() -> None: ...


def test_values_that_pickle_as_their_own_global_are_named() -> None:
    assert pickles_as_own_global(UserId, MODULE)
    assert pickles_as_own_global(P, MODULE)
    assert pickles_as_own_global(MISSING, MODULE)


def test_everything_else_travels_as_before() -> None:
    others: list[Any] = [T, helper, _Missing, 3, [1, 2], typing.Any]
    assert not any(pickles_as_own_global(v, MODULE) for v in others)
    assert not pickles_as_own_global(UserId, "another_module")  # re-exported: importable
