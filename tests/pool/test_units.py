"""One parse and one message for each unit of the pool, wherever it enters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.pool import PoolInputError, parse_fraction
from tether.pool._schemas import SliceIn
from tether.pool._usage import month_range


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("inf")])
def test_a_request_bodys_fraction_gets_the_pools_one_message(bad: float) -> None:
    with pytest.raises(PoolInputError) as direct:
        parse_fraction(float(bad))  # the body's number is a float by then
    with pytest.raises(ValidationError) as body:
        SliceIn(fraction=bad)
    assert body.value.errors()[0]["msg"] == f"Value error, {direct.value}"


def test_a_request_bodys_policy_is_the_enum_and_keeps_its_string() -> None:
    assert SliceIn(policy="first-fit").model_dump(mode="json")["policy"] == "first-fit"  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SliceIn(policy="random")  # type: ignore[arg-type]


def test_a_month_is_parsed_in_one_place() -> None:
    start, end = month_range("2026-12")
    assert end - start == 31 * 86400
    for bad in ("2026-13", "26-12", "december", ""):
        with pytest.raises(PoolInputError, match="give a UTC month as YYYY-MM"):
            month_range(bad)
