"""What a module's proxy keeps alive: the proxies of the submodules and
parameters the script read from it.

In Python ``model.fc`` is the same object for as long as the model holds it, and
scripts lean on that through ``id``: the fine-tuning recipe takes
``ignored = list(map(id, model.fc.parameters()))``, drops the list's items, then
keeps ``p for p in model.parameters() if id(p) not in ignored``. A proxy is the
same object while the script holds it (the worker sends an object the client
holds under the same handle again), but a proxy the script drops dies, and a
later read makes another with another id: the recipe put the head's parameters
in both of its groups and the optimizer refused them.

So the proxy of a module keeps the proxies of the modules and parameters read
from it, by attribute (``model.fc``) or as the items of ``parameters()``,
``modules()`` and the like: one set per attribute or method, the latest read,
in a slot of the proxy (``_t_held``). They live as long as the module's proxy, as
the objects live as long as the module, and go with it: no worker memory is
kept past the script's own reach. Only modules and parameters, whose life is
their module's; a tensor read from one (``p.grad``, ``x.T``) may be a new object
at each read and stays the script's to keep. Assigning or deleting an attribute
of the module's proxy lets go of all it kept (its structure changed); a change
made by remote code (a method that swaps a submodule) is seen at the next read
of that attribute or method, until when the replaced object stays alive.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from tether.client._proxy import RemoteType
from tether.wire._ops import EXHAUSTED, TypeDesc

#: Methods of a module whose items are its modules and parameters.
ITEM_METHODS: Final = frozenset(
    {"parameters", "named_parameters", "modules", "named_modules", "children", "named_children"}
)

_NEITHER, _MODULE, _PARAMETER = 0, 1, 2
_KINDS: Final = {
    ("torch.nn.modules.module", "Module"): _MODULE,
    ("torch.nn.parameter", "Parameter"): _PARAMETER,
}


class Held:
    """One session's bookkeeping of what module proxies keep (see the module
    docstring); ``types`` is the session's table of class descriptions."""

    __slots__ = ("_iterators", "_kinds", "_types", "streams")

    def __init__(self, types: dict[int, TypeDesc]) -> None:
        self._types = types
        self._kinds: dict[int, int] = {}
        #: id of an iterator proxy (``model.parameters()``) -> (its weak
        #: reference, the module, the method), until it is iterated or dies.
        self._iterators: dict[int, tuple[Any, Any, str]] = {}
        #: id of the worker's iterator over such items, when they come one by one
        #: -> (its weak reference, the list its module keeps them in).
        #: Read on the items' path: empty, nothing to do.
        self.streams: dict[int, tuple[Any, list[Any]]] = {}

    def _kind(self, obj: Any) -> int:
        t = type(obj)
        if type(t) is not RemoteType:
            return _NEITHER
        tid = t._t_tid
        kind = self._kinds.get(tid)
        if kind is None:
            kind = self._kinds[tid] = self._walk(tid, set())
        return kind

    def _walk(self, tid: int, seen: set[int]) -> int:
        desc = self._types.get(tid)
        if desc is None or tid in seen:
            return _NEITHER
        seen.add(tid)
        kind = _KINDS.get((desc.module, desc.qualname))
        if kind is not None:
            return kind
        for base in desc.bases:
            kind = self._walk(base, seen)
            if kind:
                return kind
        return _NEITHER

    def attribute(self, owner: Any, name: str, value: Any) -> None:
        """``owner.name`` read ``value``."""
        if self._kind(value) and self._kind(owner) == _MODULE:
            _keep(owner, name, value)

    def iterating(self, owner: Any, method: str, iterator: Any) -> None:
        """``owner.method()`` (one of :data:`ITEM_METHODS`) returned ``iterator``."""
        if type(type(iterator)) is not RemoteType or self._kind(owner) != _MODULE:
            return
        self._iterators[id(iterator)] = (_watch(iterator, self._iterators), owner, method)

    def iterated(self, iterator: Any, reply: Any) -> None:
        """The worker's answer to iterating ``iterator`` (``acceptor/_iteration``'s
        reply): its items, kept by the module it came from; or, where they come
        one by one (``modules()``), the worker's iterator to watch."""
        entry = self._iterators.pop(id(iterator), None)
        if entry is None or entry[0]() is not iterator:
            return
        kept: list[Any] = []
        _keep(entry[1], entry[2] + "()", kept)
        items = reply[2]
        if isinstance(items, list | tuple):
            for item in items:
                self._add(kept, item)
        elif type(type(reply[0])) is RemoteType:
            self.streams[id(reply[0])] = (_watch(reply[0], self.streams), kept)

    def item(self, iterator: Any, item: Any) -> None:
        """``next(iterator)`` gave ``item`` (called while :attr:`streams` is not empty)."""
        entry = self.streams.get(id(iterator))
        if entry is not None and entry[0]() is iterator:
            if item is EXHAUSTED:
                del self.streams[id(iterator)]
            else:
                self._add(entry[1], item)

    def _add(self, kept: list[Any], item: Any) -> None:
        for part in item if type(item) is tuple else (item,):
            if self._kind(part):
                kept.append(part)


def _watch(proxy: Any, table: dict[int, Any]) -> Any:
    """A weak reference to ``proxy`` that takes its entry out of ``table`` when it dies."""
    key = id(proxy)

    def gone(ref: Any) -> None:
        entry = table.get(key)
        if entry is not None and entry[0] is ref:
            del table[key]

    return weakref.ref(proxy, gone)


def _keep(owner: Any, key: str, value: Any) -> None:
    try:
        held = owner._t_held
    except AttributeError:
        held = {}
        object.__setattr__(owner, "_t_held", held)
    held[key] = value
