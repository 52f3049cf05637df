"""Facts about code objects (tether/_code.py), read off real functions."""

from __future__ import annotations

from tether._code import global_names, read_globals


def _sample(x):  # type: ignore[no-untyped-def]
    if x:
        return len(x) * SCALE + x.weight  # type: ignore[name-defined]  # noqa: F821
    return [item.bias for item in ITEMS]  # type: ignore[name-defined]  # noqa: F821


def test_read_globals_are_the_loads_of_globals_not_attribute_names() -> None:
    names = read_globals(_sample.__code__)
    assert names == {"len", "SCALE", "ITEMS"}  # ITEMS: read in the nested comprehension
    assert {"weight", "bias"} <= global_names(_sample.__code__)  # co_names has them too


def test_a_class_body_inside_a_function_reads_through_load_name() -> None:
    def make():  # type: ignore[no-untyped-def]
        class Inner:
            size = DEFAULT_SIZE  # type: ignore[name-defined]  # noqa: F821

        return Inner

    assert "DEFAULT_SIZE" in read_globals(make.__code__)
