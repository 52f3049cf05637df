"""Objects of the script's that remote code uses in place: its lists, dicts, sets,
and its iterators.

A callback shipped from the script (a forward hook, a gradient hook, a
collate function) that records into a list or dict of the script's must change
the script's own object, not a copy. Such containers reach the worker as
:class:`ClientObject`: every operation on it is a request to the client, which
applies it to the real object. Iteration and ``repr`` read a snapshot.

An iterator of the script's (``filter(lambda p: p.requires_grad,
model.parameters())`` handed to an optimizer, a generator) reaches the worker
as :class:`ClientIterator`: each ``next`` is a request, so the script's
iterator advances as far as remote code takes it, no further, and its code
(the lambda, the generator's body) runs in the script, as it would locally.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tether.wire._requests import (
    ObjectAttr,
    ObjectCall,
    ObjectSetAttr,
    ObjectSnapshot,
    RequestFn,
)


class _Lent:
    """An object the client lent: its attributes and methods, by request."""

    __slots__ = ("_oid", "_request")

    def __init__(self, request: RequestFn, oid: int) -> None:
        self._request = request
        self._oid = oid

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._request(ObjectCall(self._oid, method, args, kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        is_method, value = self._request(ObjectAttr(self._oid, name))
        if not is_method:
            return value

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

        method.__name__ = name
        return method

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _Lent.__slots__:
            object.__setattr__(self, name, value)
        else:
            self._request(ObjectSetAttr(self._oid, name, value))


class ClientObject(_Lent):
    """A container or object of the script's (see the module docstring)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("__call__", *args, **kwargs)

    def __enter__(self) -> Any:
        return self._call("__enter__")

    def __exit__(self, et: Any, ev: Any, tb: Any) -> Any:
        return self._call("__exit__", et, ev, None)  # a traceback does not travel

    def __getitem__(self, key: Any) -> Any:
        return self._call("__getitem__", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._call("__setitem__", key, value)

    def __delitem__(self, key: Any) -> None:
        self._call("__delitem__", key)

    def __len__(self) -> int:
        return self._call("__len__")  # type: ignore[no-any-return]

    def __contains__(self, item: Any) -> bool:
        return self._call("__contains__", item)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._request(ObjectSnapshot(self._oid)))

    def __bool__(self) -> bool:
        return bool(self._call("__len__"))

    def __eq__(self, other: object) -> bool:
        return self._call("__eq__", other)  # type: ignore[no-any-return]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return self._call("__repr__")  # type: ignore[no-any-return]

    def __iadd__(self, other: Any) -> ClientObject:
        self._call("__iadd__", other)
        return self

    def __ior__(self, other: Any) -> ClientObject:
        self._call("__ior__", other)
        return self


class ClientIterator(_Lent):
    """An iterator of the script's: ``next`` asks the client for one item. (Not a
    :class:`ClientObject`: ``list()`` must not find a ``__len__`` to ask for.)"""

    __slots__ = ()

    def __iter__(self) -> ClientIterator:
        return self

    def __next__(self) -> Any:
        return self._call("__next__")

    def __repr__(self) -> str:
        return self._call("__repr__")  # type: ignore[no-any-return]


_NAMED: dict[str, type[ClientIterator]] = {}


def lent_iterator(name: Any) -> type[ClientIterator]:
    """The class of a lent iterator whose class is called ``name`` in the script
    (``generator``, ``filter``): what remote code's errors name, as locally
    (``stack(): argument 'tensors' must be tuple of Tensors, not generator``)."""
    if type(name) is not str or not name.isidentifier() or len(name) > 64:
        return ClientIterator
    cls = _NAMED.get(name)
    if cls is None:
        if len(_NAMED) >= 256:
            return ClientIterator
        cls = _NAMED[name] = type(name, (ClientIterator,), {"__slots__": ()})
    return cls
