"""Which call sites may pipeline a tuple: the arity of code, not of data
(client/_sites.code_arity). Keys as the session builds them; no session needed."""

from __future__ import annotations

from tether.client._sites import DATA_ARITY_METHODS, code_arity, template_of
from tether.wire._ops import NONE


def test_objects_operators_iterators_and_most_methods_return_the_codes_arity() -> None:
    assert code_arity(("ct", 7, 8, 8))  # lstm(x), model(x, y)
    assert code_arity(("o", divmod, 8, 8))
    assert code_arity(("n", 9))  # next(iter(loader))
    assert code_arity(("m", 8, "max"))


def test_methods_that_cut_by_the_data_and_functions_do_not() -> None:
    for name in ("split", "chunk", "unbind", "nonzero"):
        assert name in DATA_ARITY_METHODS
        assert not code_arity(("m", 8, name))
    assert not code_arity(("c", 12, 8, int))  # torch.split(x, 2): a function
    assert not code_arity(("ct-class", 3))


def test_a_site_learnt_apart_by_place_is_judged_by_its_site() -> None:
    assert not code_arity((("m", 8, "split"), ("script.py", 3)))
    assert code_arity((("ct", 7, 8), ("script.py", 3)))


def test_lists_and_unpredictable_tuples_have_no_template() -> None:
    assert template_of(None) is NONE
    assert template_of([1, 2]) is None
    assert template_of((1, 2)) is None  # plain values: nothing to pipeline
    assert template_of(()) is None
