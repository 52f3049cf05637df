"""The worker's engine, driven with frames through its protocol and shell, no sockets."""

from __future__ import annotations

import operator
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memory_link import MemoryLink, pump

from tether import _refs
from tether.acceptor._shell import WorkerShell
from tether.client._codec import dumps
from tether.client._shipcode import CodeContext
from tether.wire import Flag, Kind
from tether.wire._messages import NONE_NOTICE
from tether.wire._ops import ANY, NONE, Handle, Items, Op, TypeDesc, pack_ids, shape_to_wire
from tether.wire._requests import ReadGlobal, WorkerRequest
from tether.wire._values import VALUE_TAG
from tether.wire._values import decode as decode_value


class Ref:
    """A client-side reference to handle ``hid`` (what a proxy pickles as)."""

    def __init__(self, hid: int) -> None:
        self.hid = hid

    def __reduce__(self) -> Any:
        return (_refs.ref, (self.hid,))


class Harness:
    def __init__(self) -> None:
        self.link = MemoryLink(lambda link, request: self._request(request))
        self.shell = WorkerShell(self.link)
        self.engine = self.shell.engine
        self.protocol = self.shell.protocol
        self.sent: list[tuple[int, int, int, bytes]] = []
        self.seq = 0

    def _request(self, request: WorkerRequest) -> Any:
        raise AssertionError(f"unexpected request {request}")

    def frame(self, kind: int, flags: int = 0, seq: int = 0, meta: bytes = b"") -> None:
        """One frame from the client, carried out; what the worker sent lands in ``sent``."""
        self.link.push(kind, flags, seq, meta)
        pump(self.shell)
        self.sent += self.link.sent
        self.link.frames.clear()

    def call(self, op: Op, shape: Any, *fields: Any, sync: bool = False) -> int:
        self.seq += 1
        meta, _ = dumps((op, shape_to_wire(shape), *fields), CodeContext(lambda obj: 0))
        self.frame(Kind.CALL, Flag.SYNC if sync else 0, self.seq, meta)
        return self.seq

    def reply(self) -> tuple[int, Any]:
        """The last reply's flags and what it carries: the error's description,
        the value (compact, or pickled), or for one that names handles (only a
        session resolves those) its pickle's bytes."""
        kind, flags, _seq, meta = self.sent.pop()
        assert kind == Kind.REPLY
        if flags & Flag.ERROR:
            return flags, pickle.loads(meta)
        if meta[:1] == VALUE_TAG:
            return flags, decode_value(meta)
        _types, blob = pickle.loads(meta)
        try:
            return flags, pickle.loads(blob)
        except RuntimeError:  # tether._refs outside a session
            return flags, blob


def test_pipelined_results_are_bound_to_the_client_ids_without_a_reply() -> None:
    h = Harness()
    h.call(Op.CALL, Handle(1, h.engine.types.tid(list)), list, ((1, 2),), {})
    h.call(Op.CALL, NONE, operator.setitem, (Ref(1), 0, 5), {})
    assert h.sent == []
    assert h.engine.handles[1] == [5, 2]
    h.call(Op.CALL, ANY, len, (Ref(1),), {}, sync=True)
    flags, value = h.reply()
    assert flags == 0 and value == 2


def test_a_failed_pipelined_call_is_deferred_to_the_next_sync_and_skips_the_rest() -> None:
    h = Harness()
    h.call(Op.CALL, Handle(1, 0), operator.truediv, (1, 0), {})  # fails
    h.call(Op.CALL, NONE, print, ("never runs",), {})
    h.call(Op.CALL, ANY, len, ((1, 2, 3),), {}, sync=True)
    flags, info = h.reply()
    assert flags & Flag.ERROR and flags & Flag.DEFERRED
    assert info["lineage"][0] == ("builtins", "ZeroDivisionError")
    assert "division by zero" in info["traceback"]
    assert h.protocol.output == []  # the print was skipped
    # Until the client resumes, everything is answered with the same error.
    h.call(Op.PING, ANY, sync=True)
    assert h.reply()[0] & Flag.DEFERRED
    h.frame(Kind.RESUME)
    h.call(Op.CALL, ANY, len, ((1, 2, 3),), {}, sync=True)
    assert h.reply()[1] == 3
    # The failed call's result stays poisoned with its error.
    h.call(Op.CALL, ANY, len, (Ref(1),), {}, sync=True)
    flags, info = h.reply()
    assert flags & Flag.ERROR and info["lineage"][0] == ("builtins", "ZeroDivisionError")


def test_released_handles_raise_object_released() -> None:
    h = Harness()
    h.call(Op.CALL, Handle(7, h.engine.types.tid(list)), list, (), {})
    h.frame(Kind.RELEASE, 0, 0, pack_ids([7]))
    assert 7 not in h.engine.handles
    h.call(Op.CALL, ANY, len, (Ref(7),), {}, sync=True)
    flags, info = h.reply()
    assert flags & Flag.ERROR
    assert info["lineage"][0] == ("tether._errors", "ObjectReleased")


def test_non_plain_results_come_back_as_handles_with_type_descriptors() -> None:
    h = Harness()

    h.call(Op.CALL, ANY, dict, (), {}, sync=True)  # plain: by value
    assert h.reply()[1] == {}
    h.call(Op.CALL, ANY, iter, ([1],), {}, sync=True)
    _kind, _flags, _seq, meta = h.sent.pop()
    types_, blob = pickle.loads(meta)
    assert [t[2] for t in types_] == ["list_iterator"]
    assert b"tether._refs" in blob and b"handle" in blob


class TypeRef:
    """A class the client knows only by the type id the worker described it under."""

    def __init__(self, tid: int) -> None:
        self.tid = tid

    def __reduce__(self) -> Any:
        return (_refs.type_id, (self.tid,))


def test_a_class_known_only_by_its_type_id_is_the_workers_class() -> None:
    h = Harness()
    h.call(Op.CALL, Handle(1, h.engine.types.tid(bytearray)), bytearray, (b"ab",), {})
    tid = h.engine.types.tid(bytearray)  # (what the client got for the result's class)
    h.call(Op.CALL, ANY, getattr, (TypeRef(tid), "__name__"), {}, sync=True)
    assert h.reply()[1] == "bytearray"
    h.call(Op.CALL, ANY, isinstance, (Ref(1), TypeRef(tid)), {}, sync=True)
    assert h.reply()[1] is True
    for bad in (len(h.engine.types.classes), -1):  # never described: refused, not guessed
        h.call(Op.CALL, ANY, getattr, (TypeRef(bad), "__name__"), {}, sync=True)
        flags, info = h.reply()
        assert flags & Flag.ERROR, info
        assert "no remote class has type id" in info["traceback"], info


class Base:
    def hello(self) -> str:
        return "base"

    def bye(self) -> str:
        return "bye"


def test_make_class_fills_every_super_cell() -> None:
    import cloudpickle

    captured: dict[str, Any] = {}

    class Capture(type):
        # Stands in for the client's metaclass: keeps the class body, builds nothing.
        def __new__(mcls, name: str, bases: Any, ns: dict[str, Any]) -> Any:  # type: ignore[misc]
            captured.update(ns)
            return None

    class Child(Base, metaclass=Capture):
        def hello(self) -> str:
            return "child of " + super().hello()

        def bye(self) -> str:
            return "child says " + super().bye()

    ns = pickle.loads(
        cloudpickle.dumps({k: v for k, v in captured.items() if k != "__classcell__"})
    )
    h = Harness()
    cls = h.engine._make_class("Child", (Base,), ns, {})
    obj = cls()
    assert (obj.hello(), obj.bye()) == ("child of base", "child says bye")


@pytest.mark.parametrize(
    "shape", [Items(True, (Handle(1, 0),)), Items(False, (Handle(1, 0), Handle(2, 0)))]
)
def test_a_result_that_changes_shape_poisons_its_ids(shape: Any) -> None:
    h = Harness()
    h.call(Op.CALL, shape, int, (3,), {})
    notice = h.sent.pop()
    assert notice[0] == Kind.NOTICE
    assert 1 in h.protocol.poisoned


def test_a_batch_of_pipelined_calls_runs_in_order() -> None:
    from tether.wire._ops import pack_batch

    h = Harness()
    tid = h.engine.types.tid(list)
    metas = [
        dumps(
            (Op.CALL, shape_to_wire(Handle(1, tid)), list, ((),), {}), CodeContext(lambda obj: 0)
        )[0],
        dumps(
            (Op.CALLMETHOD, shape_to_wire(NONE), Ref(1), "append", (5,), {}),
            CodeContext(lambda obj: 0),
        )[0],
        dumps(
            (Op.CALLMETHOD, shape_to_wire(NONE), Ref(1), "append", (6,), {}),
            CodeContext(lambda obj: 0),
        )[0],
    ]
    h.frame(Kind.CALL, Flag.BATCH, 10, pack_batch(metas))
    assert h.engine.handles[1] == [5, 6]
    assert h.sent == []


def test_release_entries_in_a_batch_free_in_place_and_take_no_sequence_number() -> None:
    from tether.wire._ops import RELEASE_TAG, pack_batch

    h = Harness()
    tid = h.engine.types.tid(list)
    h.call(Op.CALL, Handle(1, tid), list, ((1,),), {})
    metas = [
        RELEASE_TAG + pack_ids([99]),  # released before the first call: nothing to free
        dumps(
            (Op.CALL, shape_to_wire(Handle(2, tid)), list, (Ref(1),), {}),
            CodeContext(lambda obj: 0),
        )[0],
        RELEASE_TAG + pack_ids([1]),  # the proxy of 1 died after the copy was made
        # A mispredicted call: its NOTICE names its own number, 21 (the release
        # entries before it take none).
        dumps((Op.CALL, shape_to_wire(NONE), len, (Ref(2),), {}), CodeContext(lambda obj: 0))[0],
    ]
    h.frame(Kind.CALL, Flag.BATCH, 20, pack_batch(metas))
    assert 1 not in h.engine.handles and h.engine.handles[2] == [1]
    kind, _flags, seq, _meta = h.sent.pop()
    assert (kind, seq) == (Kind.NOTICE, 21)


class PagingHarness(Harness):
    """A harness whose client answers the worker's name requests from a dict."""

    def __init__(self, names: dict[str, Any]) -> None:
        super().__init__()
        self.names = names
        self.requests: list[WorkerRequest] = []

    def _request(self, request: WorkerRequest) -> Any:
        self.requests.append(request)
        if isinstance(request, ReadGlobal):
            return (request.name in self.names, self.names.get(request.name))
        raise AssertionError(f"unexpected request {request}")


def _script_function(h: Harness, source: str, name: str) -> Any:
    """Build a function of module ``script_mod`` in the engine, as the client ships it."""
    code = compile(source, "script_mod.py", "exec")
    fn_code = next(c for c in code.co_consts if getattr(c, "co_name", None) == name)
    return h.engine.script.function(7, ("script_mod", "script_mod.py", "", False), fn_code, None)


def test_script_code_pages_names_in_once_and_falls_back_to_builtins() -> None:
    h = PagingHarness({"k": 3})
    f = _script_function(h, "def f(x):\n    return len(x) * k\n", "f")
    assert f([1, 2]) == 6
    assert f([1]) == 3
    assert h.requests == [ReadGlobal("script_mod", "len"), ReadGlobal("script_mod", "k")]
    assert h.engine.script.ref(7) is f


def test_namespace_entries_update_names_even_after_a_failed_call() -> None:
    from tether.wire._ops import NAMESPACE_TAG, pack_batch

    h = PagingHarness({"k": 1})
    f = _script_function(h, "def f():\n    return k\n", "f")
    assert f() == 1
    h.call(Op.CALL, Handle(1, 0), operator.truediv, (1, 0), {})  # the engine is now failed
    blob = dumps(5, CodeContext(lambda obj: 0))[0]
    entry = NAMESPACE_TAG + pickle.dumps([("script_mod", [("k", blob)])])
    forget = NAMESPACE_TAG + pickle.dumps([("script_mod", [("gone", None)])])
    h.frame(Kind.CALL, Flag.BATCH, 10, pack_batch([entry, forget]))
    assert f() == 5  # the script's rebind, though every call is being skipped
    assert len(h.requests) == 1


def test_a_malformed_namespace_entry_is_a_protocol_error() -> None:
    from tether._errors import ProtocolError
    from tether.wire._ops import NAMESPACE_TAG

    h = Harness()
    with pytest.raises(ProtocolError):
        h.frame(Kind.CALL, 0, 1, NAMESPACE_TAG + b"garbage")


def test_a_pipelined_call_that_returned_none_says_so_in_its_notice() -> None:
    # The client must know a guess met None (not another class): such a site
    # is never learnt again by place (client/_predict.Predictions.by_place).
    h = Harness()
    tid = h.engine.types.tid(list)
    h.call(Op.CALL, Handle(1, tid), list, ((1,),), {})
    h.call(Op.CALLMETHOD, Handle(2, tid), Ref(1), "clear", (), {})
    kind, _flags, _seq, meta = h.sent.pop()
    assert kind == Kind.NOTICE and bytes(meta) == NONE_NOTICE
    assert h.engine.handles[2] is None  # the proxy made on the guess is None's
    h.call(Op.CALL, Handle(3, tid), dict, (), {})
    kind, _flags, _seq, meta = h.sent.pop()
    assert kind == Kind.NOTICE and bytes(meta) != NONE_NOTICE


def _meta(op: Op, shape: Any, *fields: Any) -> bytes:
    return dumps((op, shape_to_wire(shape), *fields), CodeContext(lambda obj: 0))[0]


def test_a_failure_in_a_batch_skips_the_rest_of_it_and_its_releases_still_apply() -> None:
    from tether.wire._ops import RELEASE_TAG, pack_batch

    h = Harness()
    tid = h.engine.types.tid(list)
    h.call(Op.CALL, Handle(5, tid), list, ((1,),), {})
    metas = [
        _meta(Op.CALL, Handle(1, tid), list, ((),), {}),
        _meta(Op.CALL, Handle(2, 0), operator.truediv, (1, 0), {}),  # fails
        _meta(Op.CALL, Handle(3, tid), list, ((),), {}),  # skipped
        RELEASE_TAG + pack_ids([5]),  # still applies
        _meta(Op.CALLMETHOD, NONE, Ref(1), "append", (7,), {}),  # skipped
    ]
    h.frame(Kind.CALL, Flag.BATCH, 20, pack_batch(metas))
    assert h.engine.handles[1] == [] and 3 not in h.engine.handles and 5 not in h.engine.handles
    assert set(h.protocol.poisoned) == {2, 3}
    h.seq = 30
    h.call(Op.CALL, ANY, len, (Ref(1),), {}, sync=True)
    flags, error = h.reply()
    assert flags & Flag.DEFERRED and "division by zero" in repr(error)


def test_a_call_of_a_batch_that_asks_the_client_says_so_and_the_rest_runs_after() -> None:
    from tether.wire._messages import TOUCHED_NOTICE
    from tether.wire._ops import pack_batch

    h = PagingHarness({"k": 41})
    h.engine.handles[50] = _script_function(h, "def f():\n    return k\n", "f")
    tid = h.engine.types.tid(int)
    metas = [
        _meta(Op.CALL, Handle(1, tid), Ref(50), (), {}),  # pages k in
        _meta(Op.CALL, Handle(2, tid), operator.add, (Ref(1), 1), {}),
        _meta(Op.CALL, Handle(3, tid), Ref(50), (), {}),  # k is known now
    ]
    h.frame(Kind.CALL, Flag.BATCH, 10, pack_batch(metas))
    assert [h.engine.handles[i] for i in (1, 2, 3)] == [41, 42, 41]
    assert h.requests == [ReadGlobal("script_mod", "k")]
    notices = [(seq, meta) for kind, _f, seq, meta in h.sent if kind == Kind.NOTICE]
    assert notices == [(10, TOUCHED_NOTICE)]


def test_an_empty_entry_in_a_batch_fails_as_a_call_and_the_rest_is_skipped() -> None:
    from tether.wire._ops import pack_batch

    h = Harness()
    tid = h.engine.types.tid(list)
    h.frame(
        Kind.CALL, Flag.BATCH, 5, pack_batch([b"", _meta(Op.CALL, Handle(1, tid), list, ((),), {})])
    )
    assert h.protocol.failed is not None and set(h.protocol.poisoned) == {1}


_ENTRY_HEADS = [b"", b"\x01", b"\x02", b"\x03", b"\x80"]  # none, compact, release, names, pickle


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_ENTRY_HEADS), st.binary(max_size=40)), min_size=1, max_size=8
    ),
    st.booleans(),
)
def test_garbage_batches_fail_as_calls_or_protocol_errors(
    entries: list[tuple[bytes, bytes]], valid_first: bool
) -> None:
    """The shell's batch loop, fed entries of every kind with random bodies (after a
    valid call or not): the worker survives, and only a ProtocolError escapes."""
    from tether._errors import ProtocolError
    from tether.wire._ops import pack_batch

    h = Harness()
    subs = [head + body for head, body in entries]
    if valid_first:
        subs.insert(0, _meta(Op.CALL, Handle(1, h.engine.types.tid(list)), list, ((),), {}))
    try:
        h.frame(Kind.CALL, Flag.BATCH, 1, pack_batch(subs))
    except ProtocolError:
        return
    h.seq = 100
    h.call(Op.CALL, ANY, len, ((1, 2),), {}, sync=True)  # the session still answers
    flags, _ = h.reply()
    assert flags in (0, int(Flag.ERROR | Flag.DEFERRED))


def test_a_pipelined_result_of_another_class_names_it_in_the_notice() -> None:
    """The client made a proxy of the class it guessed; the notice tells it the class
    the result has (and describes it, the first time), so it can fix its proxy."""
    h = Harness()
    list_tid = h.engine.types.tid(list)
    h.engine.types.take_pending()  # the client knows list already
    h.call(Op.CALL, Handle(1, list_tid), sorted, ({3, 1, 2},), {})  # guessed right
    h.call(Op.CALL, Handle(2, list_tid), frozenset, ((1, 2),), {})  # guessed wrong
    assert h.engine.handles[2] == frozenset({1, 2})  # bound all the same
    [(kind, _flags, seq, meta)] = h.sent
    tag, why, tid, types = pickle.loads(meta)
    assert (kind, seq, tag) == (Kind.NOTICE, 2, "mispredicted") and "frozenset" in why
    assert tid == h.engine.types.tid(frozenset) and tid != list_tid
    assert [TypeDesc(*t).name for t in types] == ["frozenset"]


def test_an_object_sent_twice_goes_under_one_handle_freed_by_the_last_release() -> None:
    import types as _types

    h = Harness()
    tid = h.engine.types.tid(_types.SimpleNamespace)
    h.call(Op.CALL, Handle(1, tid), _types.SimpleNamespace, (), {})
    h.call(Op.CALL, Handle(2, tid), _types.SimpleNamespace, (), {})
    h.call(Op.CALL, NONE, setattr, (Ref(1), "inner", Ref(2)), {})
    inner = h.engine.handles[2]
    for _ in range(2):  # model.inner read twice: the same worker handle both times
        h.call(Op.CALL, ANY, getattr, (Ref(1), "inner"), {}, sync=True)
        h.reply()
    hid = h.engine.table._shared[id(inner)]
    assert hid < 0 and h.engine.handles[hid] is inner and h.engine.table.sent_again(inner) == 1
    h.frame(Kind.RELEASE, 0, 0, pack_ids([hid]))  # one of the two receipts
    assert h.engine.handles[hid] is inner
    h.frame(Kind.RELEASE, 0, 0, pack_ids([hid]))
    assert hid not in h.engine.handles and h.engine.table.sent_again(inner) is None
    h.call(Op.CALL, ANY, getattr, (Ref(1), "inner"), {}, sync=True)  # read again: a new one
    h.reply()
    assert h.engine.table._shared[id(inner)] not in (hid, None)
