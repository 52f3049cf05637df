"""Prediction: what a call site returned before, so its next call need not wait.

Theory of operation
-------------------
A *site* is a key the session builds for a call (the remote type and method
name, the function and its argument kinds, the operator and operand types).
Each site remembers a :data:`Template` of its last result: None (the call
returned None), :class:`HandleOf` one remote object of a type, or
:class:`ItemsOf` a small list or tuple of those. A site is predictable once
it has a template (None only after :data:`NONE_AFTER` times in a row: a
method that returns None once may return a tensor next time), the worker
never said otherwise, and its last synchronous call did not use the client.
A site that returned None one time and an object another (``dict.get``) is
never predictable again; and the protocol uses a None prediction only where
the script drops the result (:mod:`tether.client._usecheck`), since a
pipelined None is the value itself.

A predicted call is pipelined: the template is *instantiated* into a
:data:`~tether.wire._ops.Shape` with fresh client-allocated handle ids, and
the call is sent without waiting. The worker checks the shape when it runs
the call; when the result differs it sends a NOTICE for that call's sequence
number, and the site is never pipelined again (:meth:`Predictions.mispredicted`).

A call that used the client (asked it for a name, a file or an object's state,
or warned) must have its answer while the script is where the call was made,
so the site's next call waits, and the site pipelines again once one of its
synchronous calls did not use the client. The first call of a method of the
script's class pages in the globals it reads and the calls after it need
nothing from the client; a ``forward`` that reads ``args.lr`` asks every time,
and every call of it waits. A synchronous reply says so with the NOPIPE flag;
a pipelined call that used the client (a branch that reads a global for the
first time) gets a NOTICE saying so (:meth:`Predictions.touched`): that call
was answered late, when the client next waited, so a site that does this
:data:`TOUCHES_ALLOWED` times is never pipelined again.

Pure: keys and templates in, templates and shapes out. No proxies, no
session, no I/O; the session turns results into templates and shapes into
proxies.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final, NamedTuple

from tether.wire._ops import NONE, Handle, Items, Returns, Shape

#: A site must return None this often in a row before None is assumed.
NONE_AFTER: Final = 3

#: How often a site's pipelined calls may use the client before it always waits.
TOUCHES_ALLOWED: Final = 3

#: Pipelined calls remembered (for their NOTICEs) before the session makes sure they ran.
MAX_PENDING: Final = 1 << 16


class HandleOf(NamedTuple):
    """The site returns one remote object of type ``tid``."""

    tid: int


class ItemsOf(NamedTuple):
    """The site returns a list (``is_list``) or tuple of these."""

    is_list: bool
    parts: tuple[Template, ...]


#: What a site returned last: ``NONE``, one handle, or a list or tuple of handles.
Template = HandleOf | ItemsOf | Returns


class Site:
    """One site: its last template, how many times in a row, and whether it
    is never to be pipelined. ``version`` changes whenever its prediction may
    (a new template, never): what was planned from it is good while it stays."""

    __slots__ = ("count", "never", "saw_none", "template", "touched", "touches", "version")

    def __init__(self) -> None:
        self.template: Template | None = None
        self.count = 0
        self.never = False
        self.touched = False  # its last call used the client: the next one waits
        self.touches = 0  # how many of its pipelined calls used the client
        self.saw_none = False  # it returned None at least once
        self.version = 0


class Predictions:
    """The table of sites: see the module docstring."""

    __slots__ = ("_pending", "_results", "_sites")

    def __init__(self) -> None:
        self._sites: dict[Hashable, Site] = {}
        self._pending: dict[int, Hashable] = {}  # seq of a pipelined call -> its site
        # seq of a pipelined call -> what stands for its result (opaque here: the
        # session's weak reference to its proxy), for a NOTICE to find
        self._results: dict[int, object] = {}

    def predict(self, key: Hashable) -> Template | None:
        """The template to pipeline a call of ``key`` with, or None: call it
        synchronously and :meth:`learn` from the result."""
        p = self._sites.get(key)
        if p is None or p.never or p.touched:
            return None
        template = p.template
        if template is NONE and p.count < NONE_AFTER:
            return None
        return template

    def learn(self, key: Hashable, template: Template | None, *, nopipe: bool = False) -> None:
        """A synchronous call of ``key`` returned a value of ``template`` (None:
        one that cannot be predicted); ``nopipe``: the call used the client, so
        the next call of the site waits too."""
        p = self._sites.get(key)
        if p is None:
            p = self._sites[key] = Site()
        if template is NONE:
            p.saw_none = True
        if nopipe:
            if not p.touched:
                p.touched = True
                p.version += 1
            return
        if p.touched:
            p.touched = False
            p.version += 1
        if template == p.template:
            p.count += 1
            return
        old = p.template
        p.template, p.count = template, 1
        p.version += 1
        if old is not None and template is not None and (old is NONE) != (template is NONE):
            # None one time, an object another (dict.get): a pipelined call would
            # hand the script a guess either way, so this site always waits.
            p.never = True

    def sent(self, seq: int, key: Hashable, result: object = None) -> bool:
        """Call ``seq`` was pipelined as a prediction of ``key``; ``result``
        stands for what the script was handed (see :meth:`mispredicted`).

        True when :data:`MAX_PENDING` calls are remembered: the session then
        makes sure they ran (a round trip), and :meth:`synced` forgets them. A
        loop that never reads a value would otherwise grow the table for good
        (200,000 pipelined calls: 44 MB)."""
        pending = self._pending
        pending[seq] = key
        if result is not None:
            self._results[seq] = result
        return len(pending) >= MAX_PENDING

    def mispredicted(self, seq: int, *, none: bool = False) -> object:
        """The worker found call ``seq``'s result unlike its prediction
        (``none``: it was None). Returns what :meth:`sent` was given for it."""
        key = self._pending.get(seq)
        if key is not None:
            p = self._sites.get(key)
            if p is not None:
                p.never = True
                p.saw_none = p.saw_none or none
                p.version += 1
        return self._results.pop(seq, None)

    def touched(self, seq: int) -> None:
        """Pipelined call ``seq`` ran as predicted but used the client."""
        key = self._pending.get(seq)
        p = self._sites.get(key) if key is not None else None
        if p is None:
            return
        p.touches += 1
        if p.touches >= TOUCHES_ALLOWED:
            p.never = True
        p.touched = True
        p.version += 1

    def synced(self) -> None:
        """Every call sent has run: no NOTICE can come for them any more."""
        self._pending.clear()
        self._results.clear()

    def site(self, key: Hashable) -> Site | None:
        """The record of site ``key`` (what a fast lane watches), if it has one."""
        return self._sites.get(key)

    def by_place(self, key: Hashable) -> bool:
        """Whether the calls of never-pipelined site ``key`` are to be learnt
        apart by their place in the script: its results varied in class, never
        between None and an object (one place may too, and a None guessed at
        the place's first object would be a wrong value), and it stopped for no
        use of the client."""
        p = self._sites.get(key)
        return p is not None and p.never and not p.saw_none and p.touches < TOUCHES_ALLOWED

    def is_never(self, key: Hashable) -> bool:
        p = self._sites.get(key)
        return p is not None and p.never


def instantiate(template: Template, next_id: int) -> tuple[Shape, int]:
    """``template`` with handle ids from ``next_id`` on, and the next free id."""
    if type(template) is HandleOf:
        return Handle(next_id, template.tid), next_id + 1
    if type(template) is ItemsOf:
        parts: list[Shape] = []
        for sub in template.parts:
            shape, next_id = instantiate(sub, next_id)
            parts.append(shape)
        return Items(template.is_list, tuple(parts)), next_id
    return NONE, next_id
