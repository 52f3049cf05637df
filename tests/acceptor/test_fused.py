"""Fused lanes (acceptor/_fused.py): a pipelined lane call run by one function has
the effects and the outcome of the engine's general path, whatever happens.

Each case runs the same calls through two engines, one with its runners and one
whose runners are switched off, and compares the outcomes, the handle tables
and what was run. No sockets: the engine alone, fed the bytes the client's
compact encoder writes (the same bytes a lane's packer writes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from _protocol_pair import Proxy, encode
from tether.acceptor._engine import Engine
from tether.acceptor._events import CallFailed, Mispredicted
from tether.wire._lanes import NOT_RUN
from tether.wire._messages import RETURNED_NONE
from tether.wire._ops import NONE, Handle, Op
from tether.wire._requests import WorkerRequest

RAN: list[str] = []  # what the calls of the cases below did, in order


def _no_requests(request: WorkerRequest) -> Any:
    raise AssertionError(f"unexpected request {request}")


def _engine(*, fused: bool) -> tuple[Engine, list[int]]:
    """An engine, and a list that counts the calls its runners took."""
    engine = Engine(_no_requests, poisoned={7: ValueError("poisoned by an earlier call")})
    taken: list[int] = []
    run = engine.run_lane
    if fused:

        def counted(meta: bytes) -> Any:
            outcome = run(meta)
            if outcome is not NOT_RUN:
                taken.append(1)
            return outcome

        engine.run_lane = counted
    else:
        engine.run_lane = lambda meta: NOT_RUN
    engine.handles.update({1: Fraction(1, 2), 2: [1, 2], 3: _python_function, 4: len})
    return engine, taken


def _python_function(x: Any) -> Any:
    RAN.append(f"python {x!r}")
    return x


class _Interrupting:
    def __mul__(self, other: Any) -> Any:
        raise KeyboardInterrupt


def _tid(engine: Engine, cls: type) -> int:
    return engine.types.tid(cls)


#: (name, a function of the engine that gives (op, shape, fields) of each call).
Calls = Callable[[Engine], list[tuple[Op, Any, tuple[Any, ...]]]]
CASES: list[tuple[str, Calls]] = [
    (
        "an operator of a handle and a float",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(1), 3), {}))],
    ),
    (
        "a chain, each result the next operand",
        lambda e: [
            (Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(1), 3), {})),
            (Op.CALL, Handle(11, _tid(e, Fraction)), (operator.add, (Proxy(10), Proxy(1)), {})),
            (Op.CALL, Handle(12, _tid(e, Fraction)), (operator.sub, (Proxy(11), 2), {})),
        ],
    ),
    (
        "a call that raises",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.truediv, (Proxy(1), 0), {}))],
    ),
    (
        "a result of another class than predicted",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(1), 0.5), {}))],
    ),
    (
        "None where a handle was predicted",
        lambda e: [(Op.CALLMETHOD, Handle(10, _tid(e, list)), (Proxy(2), "append", (5,), {}))],
    ),
    (
        "None predicted and None returned",
        lambda e: [(Op.CALLMETHOD, NONE, (Proxy(2), "append", (5,), {}))],
    ),
    (
        "None predicted, a value returned",
        lambda e: [(Op.CALLMETHOD, NONE, (Proxy(2), "pop", (), {}))],
    ),
    (
        "a method with a handle operand",
        lambda e: [(Op.CALLMETHOD, Handle(10, _tid(e, int)), (Proxy(2), "index", (1,), {}))],
    ),
    (
        "a released operand",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(99), 3), {}))],
    ),
    (
        "a poisoned operand",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(7), 3), {}))],
    ),
    (
        "a function held as a handle",
        lambda e: [(Op.CALL, Handle(10, _tid(e, int)), (Proxy(4), (Proxy(2),), {}))],
    ),
    (
        "a Python function held as a handle (the engine's own way)",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (Proxy(3), (Proxy(1),), {}))],
    ),
    (
        # The client names builtins only; a name the worker resolves to a Python
        # function gets no runner (it may read its caller's frame).
        "a Python function named in the call",
        lambda e: [(Op.CALL, Handle(10, _tid(e, Fraction)), (operator.mul, (Proxy(1), 3), {}))],
    ),
]

#: The name the case above is sent with instead of ``_operator:mul`` (as long).
RENAMED = {"a Python function named in the call": b"copy:deepcopy"}


def _outcome(outcome: Any) -> Any:
    """An outcome in a form two engines' outcomes compare by (errors by class and text)."""
    if type(outcome) is CallFailed:
        return ("failed", outcome.shape, type(outcome.error), str(outcome.error))
    if type(outcome) is Mispredicted:
        err = outcome.error
        return ("mispredicted", outcome.why, outcome.poison, err and (type(err), str(err)))
    return outcome


def _run(
    engine: Engine, calls: list[tuple[Op, Any, tuple[Any, ...]]], rename: bytes = b""
) -> list[Any]:
    out = []
    for op, shape, fields in calls:
        meta = encode(int(op), shape, fields)
        assert meta is not None
        if rename:
            assert b"_operator:mul" in meta
            meta = meta.replace(b"_operator:mul", rename)
        for _ in range(3):  # a layout's first call is read whole; later ones take its runner
            out.append(_outcome(engine.call_pipelined(meta, ())))
    return out


@pytest.mark.parametrize(("name", "calls"), CASES, ids=[c[0] for c in CASES])
def test_a_fused_call_does_what_the_general_path_does(name: str, calls: Calls) -> None:
    results = []
    for fused in (True, False):
        RAN.clear()
        engine, _ = _engine(fused=fused)
        outcomes = _run(engine, calls(engine), RENAMED.get(name, b""))
        results.append((outcomes, dict(engine.handles), list(RAN)))
    assert results[0] == results[1]


def test_the_common_calls_take_a_runner() -> None:
    """The runners are taken where they should be (the comparison above would pass
    with none taken at all)."""
    engine, taken = _engine(fused=True)
    _run(engine, CASES[0][1](engine))
    assert len(taken) == 3
    engine, taken = _engine(fused=True)
    _run(engine, CASES[7][1](engine))  # a method
    assert len(taken) == 3
    for name in ("a released operand", "a Python function named in the call"):
        engine, taken = _engine(fused=True)
        outcomes = _run(engine, dict(CASES)[name](engine), RENAMED.get(name, b""))
        assert taken == [], name
        assert outcomes[-1][0] == "failed", outcomes


def test_outcomes_of_runners_are_the_notices_the_client_reads() -> None:
    engine, _ = _engine(fused=True)
    calls = dict(CASES)["None where a handle was predicted"](engine)
    assert _run(engine, calls)[-1] == ("mispredicted", RETURNED_NONE, None, None)


def test_keyboard_interrupt_and_system_exit_pass_through_a_runner() -> None:
    engine, taken = _engine(fused=True)
    engine.handles[5] = _Interrupting()
    meta = encode(int(Op.CALL), Handle(10, 0), (operator.mul, (Proxy(5), 2), {}))
    assert meta is not None
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            engine.call_pipelined(meta, ())
    assert taken == []  # raised through the runner, not an outcome of it
