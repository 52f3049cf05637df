"""A script's object lent to the worker, served by the client's real answers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from tether.acceptor._clientobj import ClientIterator, ClientObject, lent_iterator
from tether.client._namespace import ScriptNamespaces
from tether.client._serve import Lender
from tether.wire._requests import WorkerRequest, request_from_wire, request_to_wire


class Holder:
    def __init__(self) -> None:
        self.label = "__tether_callable__"  # the old in-band marker, as a plain value
        self.items: list[int] = []

    def add(self, x: int) -> int:
        self.items.append(x)
        return len(self.items)


def _lent(obj: Any, lender: Lender | None = None) -> ClientObject:
    lender = lender or Lender(frozenset(), ScriptNamespaces())
    oid = lender.export(obj)
    return ClientObject(_requests(lender), oid)


def _requests(lender: Lender) -> Any:

    def request(req: WorkerRequest) -> Any:
        # As on the wire: the (kind, payload) form, pickled both ways.
        wire = pickle.loads(pickle.dumps(request_to_wire(req)))
        return pickle.loads(pickle.dumps(lender.serve(request_from_wire(wire))))

    return request


def test_a_value_that_looks_like_the_old_method_marker_is_a_value() -> None:
    holder = Holder()
    remote = _lent(holder)
    assert remote.label == "__tether_callable__"
    assert remote.add(5) == 1 and holder.items == [5]


def test_attributes_and_items_change_the_script_object() -> None:
    holder = Holder()
    remote = _lent(holder)
    remote.label = "x"
    assert holder.label == "x"
    items = _lent(holder.items)
    items.append(3)
    assert holder.items == [3] and list(items) == [3] and len(items) == 1


def test_a_lent_iterator_advances_the_scripts_own_and_is_let_go_at_its_end() -> None:
    lender = Lender(frozenset(), ScriptNamespaces())
    taken: list[int] = []

    def gen() -> Any:
        for i in range(4):
            taken.append(i)
            yield i * 10

    it = gen()
    remote = ClientIterator(_requests(lender), lender.export(it))
    assert iter(remote) is remote
    assert next(remote) == 0 and taken == [0]  # lazily: one item a request
    assert next(it) == 10  # the script's own iterator moved
    assert list(remote) == [20, 30] and taken == [0, 1, 2, 3]
    assert id(it) not in lender.exported  # ran out: no longer lent
    assert next(remote, "end") == "end"


def test_a_lent_iterators_error_reaches_remote_code() -> None:
    lender = Lender(frozenset(), ScriptNamespaces())

    def gen() -> Any:
        yield 1
        raise KeyError("boom")

    remote = ClientIterator(_requests(lender), lender.export(gen()))
    assert next(remote) == 1
    with pytest.raises(KeyError, match="boom"):
        next(remote)


def test_a_lent_iterators_class_has_the_scripts_name_for_it() -> None:
    gen = lent_iterator("generator")
    assert gen.__name__ == "generator" and issubclass(gen, ClientIterator)
    assert lent_iterator("generator") is gen
    for odd in ("not a name", "", 3, "x" * 65):
        assert lent_iterator(odd) is ClientIterator
