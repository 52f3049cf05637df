"""A script's object lent to the worker, served by the client's real answers."""

from __future__ import annotations

import pickle
from typing import Any

from tether.acceptor._clientobj import ClientObject
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


def _lent(obj: Any) -> ClientObject:
    lender = Lender(frozenset(), ScriptNamespaces())
    oid = lender.export(obj)

    def request(req: WorkerRequest) -> Any:
        # As on the wire: the (kind, payload) form, pickled both ways.
        wire = pickle.loads(pickle.dumps(request_to_wire(req)))
        return pickle.loads(pickle.dumps(lender.serve(request_from_wire(wire))))

    return ClientObject(request, oid)


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
