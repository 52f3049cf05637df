"""A session's handle table in the worker: the objects the client names, by id.

Three kinds of ids. The client numbers the results of its pipelined calls itself
(positive ids, bound when the call runs). The worker numbers the results it sends
back (negative ids): an object it sends again while the client still holds it goes
under the same id (:meth:`Handles.share`), so the client gets the same proxy
(``m.weight is m.weight``); the table counts how many times it sent each, and the
client releases each id once per receipt, so a release in flight cannot free what a
reply sent meanwhile names again. Classes, modules and module constants are
interned: one id each for the session's life, never released.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tether._errors import ObjectReleased


class Handles:
    """The table (see the module docstring). ``objects`` is the plain dict the
    engine's hot paths read and bind into."""

    def __init__(self, poisoned: Mapping[int, BaseException]) -> None:
        self.objects: dict[int, Any] = {}
        self._poisoned = poisoned  # the protocol's: result ids of calls that failed
        self._next = -1
        #: id(obj) -> id, for classes, modules and module constants.
        self.interned: dict[int, int] = {}
        self._interned_ids: set[int] = set()  # never released: the client shares them
        # Results sent under the worker's own ids: id(obj) -> its handle, and how
        # many more times than once each was sent.
        self._shared: dict[int, int] = {}
        self._resent: dict[int, int] = {}

    def new(self, obj: Any) -> int:
        hid = self._next
        self._next -= 1
        self.objects[hid] = obj
        return hid

    def share(self, obj: Any) -> int:
        """The id a result goes to the client under: the one ``obj`` went under
        before if the client still holds it, counted once more; else a new one."""
        hid = self._shared.get(id(obj))
        if hid is not None and self.objects.get(hid) is obj:
            self._resent[hid] = self._resent.get(hid, 0) + 1
            return hid
        hid = self.new(obj)
        self._shared[id(obj)] = hid
        return hid

    def sent_again(self, obj: Any) -> int | None:
        """How many more times than once ``obj`` went out under its shared id."""
        hid = self._shared.get(id(obj))
        return None if hid is None else self._resent.get(hid, 0)

    def intern(self, obj: Any) -> int:
        hid = self.interned.get(id(obj))
        if hid is None:
            hid = self.new(obj)
            self.interned[id(obj)] = hid
            self._interned_ids.add(hid)
        return hid

    def lookup(self, hid: int) -> Any:
        try:
            return self.objects[hid]
        except KeyError:
            pass
        err = self._poisoned.get(hid)
        if err is not None:
            raise err
        raise ObjectReleased(f"remote object #{hid} was released or never existed")

    def release(self, hids: Sequence[int]) -> None:
        """The client let these ids go, once per time each was sent."""
        interned = self._interned_ids
        objects = self.objects
        resent = self._resent
        shared = self._shared
        for hid in hids:
            if hid in interned:
                continue
            more = resent.get(hid)
            if more:  # sent again since: the client holds it still
                if more == 1:
                    del resent[hid]
                else:
                    resent[hid] = more - 1
                continue
            obj = objects.pop(hid, None)
            if obj is not None and shared.get(id(obj)) == hid:
                del shared[id(obj)]
