"""How the client pickles code it ships: by value, sharing the script's containers."""

from __future__ import annotations

import pickle
import types
from typing import Any

from tether.client._kinds import needs_value
from tether.client._shipcode import _stored_globals, share_state

RECORD: list[int] = []
TOTAL = 0


def appends(x: int) -> None:
    RECORD.append(x)


def counts() -> None:
    global TOTAL
    TOTAL += 1


def test_needs_value_for_main_local_and_lambda_code() -> None:
    def local() -> None:
        pass

    assert needs_value(local)
    assert needs_value(lambda: None)
    assert not needs_value(pickle.dumps)  # installed code travels by reference
    # The user's own modules (this test file's tree is one) are the script's
    # code: built in the worker against its mirror of their namespace.
    assert needs_value(appends)


def test_share_state_replaces_containers_in_globals_and_closures() -> None:
    exported: dict[int, Any] = {}

    def export(obj: Any) -> int:
        exported[id(obj)] = obj
        return id(obj)

    seen: dict[str, int] = {}

    def hook(name: str) -> None:
        seen[name] = len(RECORD)

    shared = share_state(hook, export)  # type: ignore[arg-type]
    assert shared is not hook
    assert id(seen) in exported and id(RECORD) in exported
    # The copy refers to markers, not to copies of the containers.
    cell_value = shared.__closure__[0].cell_contents  # type: ignore[index]
    assert type(cell_value).__name__ == "_Shared" and cell_value.oid == id(seen)
    assert type(shared.__globals__["RECORD"]).__name__ == "_Shared"
    # Functions without containers are left alone.
    plain = share_state(lambda x: x + 1, export)  # type: ignore[arg-type]
    assert isinstance(plain, types.FunctionType) and plain(1) == 2


def test_stored_globals_finds_global_statements_in_nested_code() -> None:
    def outer() -> None:
        def inner() -> None:
            global TOTAL
            TOTAL = 3

        inner()

    assert _stored_globals(counts.__code__) == {"TOTAL"}
    assert _stored_globals(outer.__code__) == {"TOTAL"}
    assert _stored_globals(appends.__code__) == set()
