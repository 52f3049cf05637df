"""The client's proxies of the worker's handles: one proxy per handle while the
script holds it, each receipt released (client/_mirrors.py). Real mirror classes,
a recording release in place of the protocol; no session, no sockets."""

from __future__ import annotations

import gc
from typing import Any

from tether.client._mirrors import Mirrors
from tether.wire._ops import TypeDesc

_TENSOR = TypeDesc(1, "torch", "Tensor", "Tensor", (), frozenset(), frozenset())


class _Owner:
    """What a proxy's ``_t_s`` must offer when it dies: ``forget``."""

    def __init__(self) -> None:
        self.released: list[int] = []
        self.mirrors = Mirrors(self, frozenset({"torch"}))  # type: ignore[arg-type]
        self.mirrors.types[1] = _TENSOR
        self.forget = self.mirrors.releasing(self.released.append)


def test_the_workers_handle_sent_twice_is_one_proxy_released_twice() -> None:
    owner = _Owner()
    first = owner.mirrors.handle(-3, 1)
    again = owner.mirrors.handle(-3, 1)
    assert again is first
    del first, again
    gc.collect()
    assert owner.released == [-3, -3]  # once per receipt: the worker counts them
    fresh: Any = owner.mirrors.handle(-3, 1)  # sent again after the release
    assert fresh._t_id == -3
    del fresh
    assert owner.released == [-3, -3, -3]


def test_client_numbered_results_are_each_their_own_proxy() -> None:
    owner = _Owner()
    a, b = owner.mirrors.handle(4, 1), owner.mirrors.handle(4, 1)
    assert a is not b  # a pipelined result: the client chose the id, once
    del a, b
    assert owner.released == [4, 4]
