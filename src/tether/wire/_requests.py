"""What a worker may ask its client for: typed records, and their wire form.

A REQUEST frame's meta is the worker's pickle of ``(kind, payload)``, kind a
short string (the form the protocol has always used, so the bytes do not
change); both ends build and read it only through :func:`request_to_wire` and
:func:`request_from_wire`, and everything else handles the records:

================  =====================================  ==================================
kind              record                                 answer
================  =====================================  ==================================
``global``        :class:`ReadGlobal`                    ``(found, value)``
``setglobal``     :class:`WriteGlobal`                   None
``source``        :class:`Source`                        the text, or None
``module``        :class:`ModuleSource`                  ``(filename, source, is_package,
                                                         sha256)`` or None
``objattr``       :class:`ObjectAttr`                    ``(False, value)``, or ``(True,
                                                         None)`` for a method
``objsetattr``    :class:`ObjectSetAttr`                 None
``objcall``       :class:`ObjectCall`                    the method's result
``objsnapshot``   :class:`ObjectSnapshot`                the object's items, as a list
``listdir``       :class:`ListDir`                       ``os.listdir``
``stat``          :class:`Stat`                          ``os.stat``
``isdir``         :class:`IsDir`                         ``os.path.isdir``
``read``          :class:`ReadFile`                      the file's bytes
``write``         :class:`WriteFile`                     None
``flush``         :class:`FlushOutput`                   None
================  =====================================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tether._errors import ProtocolError


@dataclass(frozen=True, slots=True)
class ReadGlobal:
    """A name of a script module, read by code running in the worker."""

    module: str
    name: str


@dataclass(frozen=True, slots=True)
class WriteGlobal:
    """Shipped code rebound (or, ``present`` false, deleted) a module's name."""

    module: str
    name: str
    present: bool
    value: Any


@dataclass(frozen=True, slots=True)
class Source:
    """A script file's text, for ``inspect``, ``linecache`` and tracebacks."""

    filename: str


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """One of the user's own modules, which the worker cannot import."""

    name: str


@dataclass(frozen=True, slots=True)
class ObjectAttr:
    """An attribute of a lent object. The answer says whether it is a method
    (then call it with :class:`ObjectCall`) beside the value, so that no value
    can pass for a method."""

    oid: int
    name: str


@dataclass(frozen=True, slots=True)
class ObjectSetAttr:
    oid: int
    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class ObjectCall:
    """``method(*args, **kwargs)`` of an object the client lent (``kwargs``
    None: a call that never passes keywords, such as a file's methods)."""

    oid: int
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ObjectSnapshot:
    oid: int


@dataclass(frozen=True, slots=True)
class ListDir:
    path: str


@dataclass(frozen=True, slots=True)
class Stat:
    path: str


@dataclass(frozen=True, slots=True)
class IsDir:
    path: str


@dataclass(frozen=True, slots=True)
class ReadFile:
    path: str


@dataclass(frozen=True, slots=True)
class WriteFile:
    path: str
    data: bytes
    append: bool


@dataclass(frozen=True, slots=True)
class FlushOutput:
    """Write out what the script printed so far (the worker is about to fork a
    process that prints to the same terminal, as multiprocessing flushes first)."""


WorkerRequest = (
    ReadGlobal
    | WriteGlobal
    | Source
    | ModuleSource
    | ObjectAttr
    | ObjectSetAttr
    | ObjectCall
    | ObjectSnapshot
    | ListDir
    | Stat
    | IsDir
    | ReadFile
    | WriteFile
    | FlushOutput
)


#: How the worker's code asks the client (a blocking round trip).
RequestFn = Callable[[WorkerRequest], Any]


def request_to_wire(request: WorkerRequest) -> tuple[str, Any]:
    """``(kind, payload)``, as the REQUEST frame carries it."""
    match request:
        case ReadGlobal(module, name):
            return "global", (module, name)
        case WriteGlobal(module, name, present, value):
            return "setglobal", (module, name, present, value)
        case Source(filename):
            return "source", filename
        case ModuleSource(name):
            return "module", name
        case ObjectAttr(oid, name):
            return "objattr", (oid, name)
        case ObjectSetAttr(oid, name, value):
            return "objsetattr", (oid, name, value)
        case ObjectCall(oid, method, args, None):
            return "objcall", (oid, method, args)
        case ObjectCall(oid, method, args, kwargs):
            return "objcall", (oid, method, args, kwargs)
        case ObjectSnapshot(oid):
            return "objsnapshot", oid
        case ListDir(path):
            return "listdir", path
        case Stat(path):
            return "stat", path
        case IsDir(path):
            return "isdir", path
        case ReadFile(path):
            return "read", path
        case WriteFile(path, data, append):
            return "write", (path, data, append)
        case FlushOutput():
            return "flush", None
    raise TypeError(f"not a worker request: {request!r}")


_SINGLE: Final[dict[str, Any]] = {
    "source": Source,
    "module": ModuleSource,
    "objsnapshot": ObjectSnapshot,
    "listdir": ListDir,
    "stat": Stat,
    "isdir": IsDir,
    "read": ReadFile,
}
_TUPLE: Final[dict[str, tuple[Any, tuple[int, ...]]]] = {
    "global": (ReadGlobal, (2,)),
    "setglobal": (WriteGlobal, (4,)),
    "objattr": (ObjectAttr, (2,)),
    "objsetattr": (ObjectSetAttr, (3,)),
    "objcall": (ObjectCall, (3, 4)),
    "write": (WriteFile, (3,)),
}


def request_from_wire(message: Any) -> WorkerRequest:
    """The record a decoded REQUEST carries; ProtocolError if it is none."""
    if type(message) is not tuple or len(message) != 2 or type(message[0]) is not str:
        raise ProtocolError(f"malformed worker request {message!r:.80}")
    kind, payload = message
    if kind == "flush" and payload is None:
        return FlushOutput()
    single = _SINGLE.get(kind)
    if single is not None:
        return single(payload)  # type: ignore[no-any-return]
    shaped = _TUPLE.get(kind)
    if shaped is None:
        raise ProtocolError(f"unknown worker request {kind!r}")
    cls, sizes = shaped
    if type(payload) is not tuple or len(payload) not in sizes:
        raise ProtocolError(f"malformed worker request {kind!r}")
    return cls(*payload)  # type: ignore[no-any-return]
