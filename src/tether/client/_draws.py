"""Draws from a remoted ``numpy.random``, one batch per run of single draws.

See :mod:`tether.acceptor._draws` for the worker's half and why the numbers are
exactly the local ones. The client notices a run: the same function called with
the same plain arguments :data:`STREAK` times with nothing else sent in between.
It then asks for a batch and answers the next calls from it. Before the session
sends any other call, :meth:`Draws.settle` tells the worker how many draws were
used (sent ahead of that call, no round trip). A batch grows from
:data:`FIRST` to :data:`MOST` while the run goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tether.client._session import Session

STREAK: Final = 4
FIRST: Final = 8
MOST: Final = 512
#: What :meth:`Draws.call` returns when the call must go to the worker as usual.
MISS: Final = object()
_PLAIN: Final = (int, float, str, bool, type(None))


def _key(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A hashable key of the call, or None if an argument is not plain data."""
    parts: list[Any] = [target._t_id]
    for a in args:
        t = type(a)
        if t in _PLAIN:
            parts.append(a)
        elif (t is list or t is tuple) and len(a) <= 64 and all(type(x) in _PLAIN for x in a):
            parts.append((t, tuple(a)))
        else:
            return None
    for name, a in kwargs.items():
        if type(a) not in _PLAIN:
            return None
        parts.append((name, a))
    return tuple(parts)


class Draws:
    """One session's batches of random draws (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self._key: Any = None
        self._streak = 0
        self._after = -1  # calls_sent right after the last call of the run
        self._refused: set[int] = set()  # functions that are not draws
        self._size = FIRST
        self._token = 0
        self._batch: list[Any] = []
        self._used = 0
        self._remote: tuple[Any, Any] | None = None

    def call(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if target._t_id in self._refused:
            return MISS
        key = _key(target, args, kwargs)
        if key is None:
            return MISS
        if self._token:
            if key == self._key and self._used < len(self._batch):
                value = self._batch[self._used]
                self._used += 1
                return value
            self.settle()
        sent = self._s.calls_sent
        if key == self._key and sent == self._after:
            self._streak += 1
        else:
            self._key, self._streak, self._size = key, 1, FIRST
        if self._streak > STREAK:
            got = self._prefetch(target, args, kwargs)
            self._after = self._s.calls_sent
            if got is None:
                self._refused.add(target._t_id)
                return MISS
            self._token, self._batch = got
            self._used = 1
            self._size = min(self._size * 2, MOST)
            self._s.draws_pending = True
            return self._batch[0]
        self._after = sent + 1  # the call the caller is about to send
        return MISS

    def _prefetch(self, target: Any, args: Any, kwargs: Any) -> Any:
        if self._remote is None:
            module = self._s.import_module("tether.acceptor._draws")
            self._remote = (module.prefetch, module.settle)
        return self._s.value_remote(self._remote[0], target, args, kwargs, self._size)

    def settle(self) -> None:
        """Tell the worker how many draws of the batch were used (before any call)."""
        token, used, batch = self._token, self._used, self._batch
        self._token, self._batch, self._used = 0, [], 0
        self._s.draws_pending = False
        if token and self._remote is not None and used < len(batch):
            # (All used: the generator is already where the single draws leave it.)
            self._s.apply_none(self._remote[1], token, used)
