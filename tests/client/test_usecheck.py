"""Whether the script uses the value of the call it is making (client/_usecheck.py)."""

from __future__ import annotations

from tether.client._usecheck import result_used

seen: list[bool] = []


def probe() -> None:
    """Stands for a proxy's method: records what the check says of its caller."""
    seen.append(result_used(skip=2))


def test_a_statement_drops_the_value_and_anything_else_uses_it() -> None:
    seen.clear()
    probe()  # an expression statement: POP_TOP
    value = probe()
    print(probe(), end="")
    values = [probe() for _ in range(2)]
    if probe() is None:
        pass
    assert seen == [False, True, True, True, True, True]
    assert value is None and values == [None, None]


def test_the_answer_is_per_call_site_not_per_function() -> None:
    seen.clear()
    for _ in range(3):
        probe()
        _ = probe()
    assert seen == [False, True] * 3
