"""Anchors for references inside pickles exchanged by client and worker.

Both ends import this module, so a pickle can name ``tether._refs.handle`` as a
global. The functions here are never called during a session: each end's
unpickler maps these names to its own resolver (the client builds proxies, the
worker looks objects up in its handle table). Called directly they explain
that, instead of doing something surprising.
"""

from __future__ import annotations

from typing import Any, NoReturn

NAMES = frozenset(
    {"handle", "interned", "cls", "module", "ref", "attr", "code", "exc_class", "tuple_mirror",
     "tuple_of", "client_file", "client_obj", "client_iter", "local", "script_fn", "script_cls",
     "script_ref", "script_synced", "script_module", "np_scalar", "type_id", "array"}
)  # fmt: skip


def _outside(name: str) -> NoReturn:
    raise RuntimeError(
        f"tether._refs.{name} can only be resolved while a Tether session decodes a "
        "message; this object refers to a remote session's state"
    )


def handle(*args: Any) -> NoReturn:
    _outside("handle")


def cls(*args: Any) -> NoReturn:
    _outside("cls")


def module(*args: Any) -> NoReturn:
    _outside("module")


def ref(*args: Any) -> NoReturn:
    _outside("ref")


def attr(*args: Any) -> NoReturn:
    _outside("attr")


def code(*args: Any) -> NoReturn:
    _outside("code")


def exc_class(*args: Any) -> NoReturn:
    _outside("exc_class")


def tuple_mirror(*args: Any) -> NoReturn:
    """Worker to client: ``(class hid, class tid, items, repr, str)`` of a tuple of a
    remote class (a named tuple such as ``torch.return_types.max``); the client
    makes a local mirror that holds the items."""
    _outside("tuple_mirror")


def tuple_of(*args: Any) -> NoReturn:
    """Client to worker: ``(class hid, items)`` of such a mirror; the worker makes
    the tuple of its class again."""
    _outside("tuple_of")


def type_id(*args: Any) -> NoReturn:
    """Client to worker: ``(tid,)`` of a remote class the client knows only by the type
    id the worker described it under (a mirror made for a result, never named): the
    worker's class of that id."""
    _outside("type_id")


def interned(*args: Any) -> NoReturn:
    _outside("interned")


def client_file(*args: Any) -> NoReturn:
    _outside("client_file")


def client_obj(*args: Any) -> NoReturn:
    _outside("client_obj")


def client_iter(*args: Any) -> NoReturn:
    _outside("client_iter")


def local(*args: Any) -> NoReturn:
    _outside("local")


def script_fn(*args: Any) -> NoReturn:
    _outside("script_fn")


def script_cls(*args: Any) -> NoReturn:
    _outside("script_cls")


def script_ref(*args: Any) -> NoReturn:
    _outside("script_ref")


def script_synced(*args: Any) -> NoReturn:
    _outside("script_synced")


def script_module(*args: Any) -> NoReturn:
    _outside("script_module")


def np_scalar(*args: Any) -> NoReturn:
    _outside("np_scalar")


def array(*args: Any) -> NoReturn:
    """Client to worker: ``(buffer, dtype str, shape)`` of one of the client's own
    numpy arrays of a plain dtype (numbers, strings), the buffer out of band;
    the worker makes its numpy's array of the same contents (numpy's own reduction
    would pickle the dtype object too, at three times the cost)."""
    _outside("array")
