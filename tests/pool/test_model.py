"""The pool's records validate when built and say clearly what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import PoolError
from tether.pool import (
    SHARE_SCALE,
    DeviceSpec,
    FrameworkRequirement,
    Lease,
    NodeSpec,
    PlacementPolicy,
    PoolConfig,
    PoolInputError,
    Quota,
    SliceRequest,
    format_memory,
    parse_fraction,
    parse_memory,
)
from tether.pool._model import PLACEMENT_POLICIES

from ._helpers import T0, GiB, dev, node, req


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * GiB),
        ("8 GiB", 8 * GiB),
        ("8G", 8 * GiB),
        ("8g", 8 * GiB),
        ("8GB", 8 * 10**9),
        ("512MiB", 512 << 20),
        ("1.5GiB", 3 * GiB // 2),
        ("4096", 4096),
        (4096, 4096),
        ("1TiB", 1 << 40),
    ],
)
def test_parse_memory(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-8GiB", "not a size"),
        ("0", "must be positive"),
        (0, "must be positive"),
        (-1, "must be positive"),
        ("8 bananas", "not a size"),
        ("", "not a size"),
        ("2PiB", "not a size"),  # PiB is not a unit we accept
        ("9000TiB", "absurd"),
        (10**20, "absurd"),
        (True, "must be a size"),
        (1.5, "must be a string"),
    ],
)
def test_parse_memory_rejects_with_a_clear_message(text: object, fragment: str) -> None:
    with pytest.raises(PoolInputError, match=fragment) as info:
        parse_memory(text)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, PoolError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.25, 0.25), ("0.5", 0.5), ("25%", 0.25), (1, 1.0), (1 / 3, 0.3333)],
)
def test_parse_fraction(value: object, expected: float) -> None:
    assert parse_fraction(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [0, -0.25, 1.01, 2, "abc", float("nan"), float("inf"), 1e-9, True, None]
)
def test_parse_fraction_rejects(value: object) -> None:
    with pytest.raises(PoolInputError):
        parse_fraction(value)  # type: ignore[arg-type]


def test_fraction_above_one_points_to_count() -> None:
    with pytest.raises(PoolInputError, match="count"):
        SliceRequest(id="r", fraction=1.5)


def test_format_memory() -> None:
    assert format_memory(8 * GiB) == "8GiB"
    assert format_memory(3 * GiB // 2) == "1.50GiB"
    assert format_memory(100) == "100B"


def test_device_normalises_vendor_and_frameworks() -> None:
    d = DeviceSpec(id="cuda:0", vendor=" NVIDIA ", model="H100", memory_bytes="80GiB",
                   frameworks={"Torch": "2.4.1"})  # fmt: skip
    assert d.vendor == "nvidia"
    assert d.memory_bytes == 80 * GiB
    assert dict(d.frameworks) == {"torch": "2.4.1"}
    with pytest.raises(TypeError):
        d.frameworks["torch"] = "3"  # type: ignore[index]
    assert DeviceSpec.from_dict(d.to_dict()) == d


def test_node_rejects_duplicate_devices_and_bad_addresses() -> None:
    with pytest.raises(PoolInputError, match="appears twice"):
        NodeSpec(id="n", address="tcp://n:1", devices=(dev(0), dev(0)))
    with pytest.raises(PoolInputError, match="URL"):
        NodeSpec(id="n", address="n:1")
    n = node("n1", 3)
    assert NodeSpec.from_dict(n.to_dict()) == n


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({}, "needs a fraction"),
        ({"count": 2, "fraction": 0.5}, "not both"),
        ({"count": 0}, "count"),
        ({"count": True}, "count"),
        ({"fraction": 0.5, "priority": 10**6}, "priority"),
        ({"fraction": 0.5, "queue_timeout_s": -1}, "queue timeout"),
        ({"fraction": 0.5, "frameworks": ("torch>=>2",)}, "not valid"),
        ({"fraction": 0.5, "frameworks": "torch"}, "list of requirements"),
        ({"fraction": 0.5, "team": ""}, "team"),
        ({"memory_bytes": "lots"}, "not a size"),
    ],
)
def test_slice_request_validation(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(PoolInputError, match=fragment):
        SliceRequest(id="r", **kw)  # type: ignore[arg-type]


def test_request_constraints_match_devices() -> None:
    h100 = dev(0)
    a100 = dev(1, model="A100 40GB", mem=40 * GiB, torch="2.1.0")
    mi = dev(2, vendor="amd", model="MI300X", mem=192 * GiB, torch="2.5.0+rocm6.2")
    r = req("r", fraction=0.5, model="*h100*")
    assert [r.matches(d) for d in (h100, a100, mi)] == [True, False, False]
    r = req("r", fraction=0.5, frameworks=("torch>=2.4",))
    assert [r.matches(d) for d in (h100, a100, mi)] == [True, False, True]
    r = req("r", fraction=0.5, vendor="AMD")
    assert [r.matches(d) for d in (h100, a100, mi)] == [False, False, True]
    r = req("r", fraction=0.5, min_memory_bytes="64GiB")
    assert [r.matches(d) for d in (h100, a100, mi)] == [True, False, True]
    r = req("r", memory_bytes="48GiB")  # memory asked must fit on the device
    assert [r.matches(d) for d in (h100, a100, mi)] == [True, False, True]
    r = req("r", fraction=0.5, frameworks=("jax",))
    assert not any(r.matches(d) for d in (h100, a100, mi))


def test_framework_requirement_parse() -> None:
    fr = FrameworkRequirement.parse("Torch >= 2.4, <3")
    assert (fr.name, fr.specifier) == ("torch", ">= 2.4, <3")
    assert fr.satisfied_by({"torch": "2.4.1+cu121"})
    assert not fr.satisfied_by({"torch": "3.0.0"})
    assert FrameworkRequirement.parse("torch").satisfied_by({"torch": "anything"})


def test_fallback_version_compare() -> None:
    from tether.pool._request import _fallback_matches

    assert _fallback_matches("2.4.1+cu121", ">=2.4")
    assert not _fallback_matches("2.3.9", ">=2.4")
    assert _fallback_matches("2.4", "==2.4.0")
    assert _fallback_matches("2.4.5", "~=2.4.0")
    assert not _fallback_matches("2.5.0", "~=2.4.0")


def test_request_round_trips_through_dicts() -> None:
    r = req("r1", fraction=0.25, memory_bytes="8GiB", vendor="nvidia", model="*H100*",
            frameworks=("torch>=2.4",), priority=3, wait=False, queue_timeout_s=60)  # fmt: skip
    assert SliceRequest.from_dict(r.to_dict()) == r
    with pytest.raises(PoolInputError, match="unknown field"):
        SliceRequest.from_dict({"id": "x", "fraction": 0.5, "gpus": 1})


def test_lease_share_and_validation() -> None:
    lease = Lease(id="l", node="n", device_ids=("a", "b"), fraction=1.0, memory_bytes=80 * GiB,
                  team="ml", user="ada", start=T0, last_heartbeat=T0)  # fmt: skip
    assert lease.share == 2.0 and lease.share_units == 2 * SHARE_SCALE
    assert lease.total_memory_bytes == 160 * GiB
    assert Lease.from_dict(lease.to_dict()) == lease
    with pytest.raises(PoolInputError, match="before its start"):
        Lease(id="l", node="n", device_ids=("a",), fraction=0.5, memory_bytes=GiB, team="t",
              user="u", start=T0, last_heartbeat=T0 - 1)  # fmt: skip
    with pytest.raises(PoolInputError, match="go together"):
        Lease(id="l", node="n", device_ids=("a",), fraction=0.5, memory_bytes=GiB, team="t",
              user="u", start=T0, last_heartbeat=T0, end=T0 + 1)  # fmt: skip


def test_quota_and_config_validation() -> None:
    assert Quota(team="ml", max_memory_bytes="64GiB").max_memory_bytes == 64 * GiB  # type: ignore[arg-type]
    with pytest.raises(PoolInputError):
        Quota(team="ml", max_share=-1)
    with pytest.raises(PoolInputError):
        Quota(team="ml", max_device_hours_per_month=float("nan"))
    with pytest.raises(PoolInputError, match="policy"):
        PoolConfig(policy="random")  # type: ignore[arg-type]
    with pytest.raises(PoolInputError, match="node_timeout_s"):
        PoolConfig(node_timeout_s=0)


@given(st.text(max_size=30))
def test_parse_memory_garbage_only_raises_pool_input_error(text: str) -> None:
    try:
        size = parse_memory(text)
    except PoolInputError:
        return
    assert 0 < size <= 1 << 50


@given(st.one_of(st.floats(), st.text(max_size=10), st.integers()))
def test_parse_fraction_garbage_only_raises_pool_input_error(value: object) -> None:
    try:
        f = parse_fraction(value)  # type: ignore[arg-type]
    except PoolInputError:
        return
    assert 0 < f <= 1


def test_the_placement_policy_is_parsed_once_and_reads_as_its_string() -> None:
    assert PlacementPolicy.parse("spread") is PlacementPolicy.SPREAD
    assert PoolConfig(policy="first-fit").policy is PlacementPolicy.FIRST_FIT  # type: ignore[arg-type]
    assert json.dumps({"policy": PlacementPolicy.BEST_FIT}) == '{"policy": "best-fit"}'
    assert PLACEMENT_POLICIES == ("best-fit", "spread", "first-fit")
    for bad in ("Spread", "", None, 1):
        with pytest.raises(PoolInputError, match="placement policy must be one of"):
            PlacementPolicy.parse(bad)
