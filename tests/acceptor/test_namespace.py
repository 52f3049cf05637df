"""The worker's mirror of a script module's globals (acceptor/_namespace.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tether.acceptor._namespace import NameUnavailable, ScriptNamespace
from tether.wire._requests import ReadGlobal


def test_a_name_pages_in_once_and_a_missing_one_falls_back_to_builtins() -> None:
    asked: list[str] = []

    def request(req: Any) -> Any:
        assert isinstance(req, ReadGlobal) and req.module == "helpers"
        asked.append(req.name)
        return (True, 4) if req.name == "width" else (False, None)

    ns = ScriptNamespace("helpers", request)
    assert ns["width"] == 4 and ns["width"] == 4
    assert ns["len"] is len
    with pytest.raises(KeyError):
        ns["nowhere"]
    assert asked == ["width", "len", "nowhere"]


def test_a_value_sent_as_a_reference_to_its_own_name_fails_at_once() -> None:
    """A TypeVar or a named singleton pickles as ``module.name``: unpickling the
    answer reads the very name being paged in. That must fail once and clearly,
    not recurse until Python's stack runs out."""
    ns: ScriptNamespace

    def request(req: Any) -> Any:
        return (True, ns[req.name])  # what unpickling such an answer does

    ns = ScriptNamespace("helpers", request)
    with pytest.raises(NameUnavailable) as info:
        ns["ObsType"]
    message = str(info.value)
    assert "reference to the name itself" in message
    assert message.count("cannot be used by remote code") == 1  # not once per level


def test_a_cycle_through_two_names_fails_and_leaves_later_page_ins_working() -> None:
    ns: ScriptNamespace
    refs = {"A": "B", "B": "A"}
    broken = True

    def request(req: Any) -> Any:
        if broken:
            return (True, ns[refs[req.name]])
        return (True, req.name.lower())

    ns = ScriptNamespace("helpers", request)
    with pytest.raises(NameUnavailable, match=r"'A'.*reference to the name itself"):
        ns["A"]
    broken = False
    assert ns["A"] == "a" and ns["B"] == "b"  # nothing was left marked as being paged in
