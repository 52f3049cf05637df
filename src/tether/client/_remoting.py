"""What proxies ask of their session: the one interface between them.

Proxies, mirror classes, the unpickler, local array copies and local random
draws hold a session and call these members only; they import no session
class (only this protocol, for types), so ``_session`` depends on ``_proxy``
and ``_codec`` and nothing runs the other way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tether.wire._ops import Op, TypeDesc


class Remoting(Protocol):
    """A session as the objects of its worker see it (see
    :class:`tether.client._session.Session` for what each member does)."""

    address: str
    types: dict[int, TypeDesc]
    resolvers: dict[str, Callable[..., Any]]
    draws_pending: bool

    @property
    def calls_sent(self) -> int: ...

    # Values the script needs now: a round trip each.
    def getattr(self, obj: Any, name: str) -> Any: ...
    def value(self, fn: Any, *args: Any) -> Any: ...
    def value_remote(self, fn: Any, *args: Any) -> Any: ...
    def value_op(self, op: Op, target: Any) -> Any: ...
    def value_method(self, obj: Any, name: str, args: Any, kwargs: Any = None) -> Any: ...

    # Results that stay remote: pipelined once their call site is predictable.
    def apply(self, fn: Any, *args: Any) -> Any: ...
    def apply_remote(self, fn: Any, *args: Any) -> Any: ...
    def apply_none(self, fn: Any, *args: Any) -> None: ...
    def call(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...
    def callmethod(
        self,
        obj: Any,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        discard: bool = False,
    ) -> Any: ...
    def next_item(self, it: Any, *, more: bool) -> Any: ...
    def make_class(
        self, name: str, bases: tuple[type, ...], ns: dict[str, Any], kwds: dict[str, Any]
    ) -> Any: ...
    def import_module(self, name: str) -> Any: ...

    # Script state the worker's code uses; handles the script let go of.
    def share(self, value: Any) -> Any: ...
    def forget(self, hid: int) -> None: ...
