"""The state machine's shape: one owner of the data, transitions as a table."""

from __future__ import annotations

import typing

import pytest

from tether.pool import PoolInputError, PoolState, Tick
from tether.pool._events import Event
from tether.pool._state import _TRANSITIONS
from tether.pool._tables import PoolTables

from ._helpers import T0, node


def test_every_event_type_has_one_transition_and_nothing_else_does() -> None:
    assert set(_TRANSITIONS) == set(typing.get_args(Event))


def test_what_is_not_an_event_is_refused_before_anything_changes() -> None:
    state = PoolState()
    with pytest.raises(PoolInputError, match="not a pool event"):
        state.handle(node("a"))  # type: ignore[arg-type]
    assert state.now == 0.0

    class Late(Tick):  # an event type the table does not name: not guessed from its name
        pass

    with pytest.raises(PoolInputError, match="not a pool event"):
        state.handle(Late(now=T0))
    assert state.now == 0.0


def test_the_tables_refer_to_no_other_table() -> None:
    tables = PoolTables(PoolState().config)
    parts = [tables.inventory, tables.books, tables.queue, tables.nodes, tables.leases]
    ids = {id(p) for p in parts}
    for part in parts:
        names = getattr(part, "__slots__", ()) or vars(part)
        for name in names:
            value = getattr(part, name, None)
            assert id(value) not in ids, f"{type(part).__name__}.{name} aliases another table"
            assert not callable(value) or isinstance(value, type), (
                f"{type(part).__name__}.{name} holds a callback"
            )
