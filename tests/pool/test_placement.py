"""Placement: deterministic, honours constraints, never over-commits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.pool import SHARE_SCALE, Inventory, NodeSpec, Placement, PoolInputError
from tether.pool._placement import slice_size

from ._helpers import GiB, dev, node, req


def inventory(*nodes: NodeSpec) -> Inventory:
    inv = Inventory()
    for n in nodes:
        inv.set_node(n)
        inv.set_eligible(n.id, True)
    return inv


def take(inv: Inventory, rid: str, policy: str = "best-fit", **kw: object) -> Placement | None:
    p = inv.find(req(rid, **kw), policy)  # type: ignore[arg-type]
    if p is not None:
        inv.allocate(p)
    return p


def where(p: Placement | None) -> tuple[str, tuple[str, ...]] | None:
    return None if p is None else (p.node_id, p.device_ids)


def test_slice_size() -> None:
    assert slice_size(req("r", fraction=0.25), 80 * GiB) == (2500, 20 * GiB)
    assert slice_size(req("r", fraction=0.25, memory_bytes="8GiB"), 80 * GiB) == (2500, 8 * GiB)
    assert slice_size(req("r", memory_bytes="8GiB"), 80 * GiB) == (1000, 8 * GiB)
    assert slice_size(req("r", memory_bytes="7GiB"), 80 * GiB) == (875, 7 * GiB)
    assert slice_size(req("r", count=2), 80 * GiB) == (SHARE_SCALE, 80 * GiB)


def test_best_fit_packs_onto_the_fullest_device_that_fits() -> None:
    inv = inventory(node("a", 2), node("b", 2))
    assert where(take(inv, "r1", fraction=0.5)) == ("a", ("cuda:0",))
    assert where(take(inv, "r2", fraction=0.25)) == ("a", ("cuda:0",))  # fullest that fits
    assert where(take(inv, "r3", fraction=0.5)) == ("a", ("cuda:1",))  # 0.25 left on cuda:0
    assert where(take(inv, "r4", fraction=0.25)) == ("a", ("cuda:0",))  # exactly fills it
    assert inv.usage("a", "cuda:0") == (SHARE_SCALE, 80 * GiB)


def test_spread_puts_slices_on_the_emptiest_devices() -> None:
    inv = inventory(node("a", 2), node("b", 1))
    got = [where(take(inv, f"r{i}", "spread", fraction=0.25)) for i in range(4)]
    assert got == [
        ("a", ("cuda:0",)),
        ("a", ("cuda:1",)),
        ("b", ("cuda:0",)),
        ("a", ("cuda:0",)),
    ]


def test_first_fit_takes_the_first_device_in_registration_order() -> None:
    inv = inventory(node("a", 2), node("b", 2))
    assert where(take(inv, "r1", "first-fit", fraction=0.75)) == ("a", ("cuda:0",))
    assert where(take(inv, "r2", "first-fit", fraction=0.5)) == ("a", ("cuda:1",))
    assert where(take(inv, "r3", "first-fit", fraction=0.25)) == ("a", ("cuda:0",))
    assert where(take(inv, "r4", "first-fit", fraction=0.75)) == ("b", ("cuda:0",))


def test_best_fit_keeps_whole_devices_free_where_first_fit_does_not() -> None:
    # 0.6 then 0.4 then 0.4: best-fit puts the second 0.4 next to the 0.6.
    inv = inventory(node("a", 2))
    take(inv, "r1", fraction=0.6)
    take(inv, "r2", fraction=0.4)  # onto cuda:0 (leaves it full)
    take(inv, "r3", fraction=0.4)
    assert where(take(inv, "r4", fraction=0.6)) == ("a", ("cuda:1",))


def test_memory_is_never_over_committed() -> None:
    inv = inventory(node("a", 1))
    assert take(inv, "r1", fraction=0.25, memory_bytes="70GiB") is not None
    # Share is left (0.75), memory is not (10GiB).
    assert take(inv, "r2", fraction=0.25) is None  # implies 20GiB
    assert take(inv, "r3", fraction=0.5, memory_bytes="10GiB") is not None
    assert take(inv, "r4", memory_bytes="1GiB") is None


def test_memory_only_request_takes_proportional_share() -> None:
    inv = inventory(node("a", 1))
    p = take(inv, "r1", memory_bytes="40GiB")
    assert p is not None and (p.share_units, p.memory_bytes) == (5000, 40 * GiB)


def test_constraints_choose_the_device_class() -> None:
    mixed = NodeSpec(
        id="m",
        address="tcp://m:1",
        devices=(
            dev(0, model="A100 40GB", mem=40 * GiB, torch="2.1.0"),
            dev(1),
            dev(2, vendor="amd", model="MI300X", mem=192 * GiB, torch="2.5.0+rocm6.2"),
        ),
    )
    inv = inventory(mixed)
    assert where(take(inv, "r1", fraction=0.5, model="*H100*")) == ("m", ("cuda:1",))
    assert where(take(inv, "r2", fraction=0.5, vendor="amd")) == ("m", ("cuda:2",))
    assert where(take(inv, "r3", fraction=0.5, frameworks=("torch<2.2",))) == ("m", ("cuda:0",))
    assert where(take(inv, "r4", fraction=0.5, min_memory_bytes="100GiB")) == ("m", ("cuda:2",))
    assert take(inv, "r5", fraction=0.5, vendor="intel") is None


def test_whole_devices_on_one_node_best_fit() -> None:
    inv = inventory(node("a", 8), node("b", 4), node("c", 2))
    p = take(inv, "r1", count=2)
    assert where(p) == ("c", ("cuda:0", "cuda:1"))  # the node left fullest
    assert p is not None and p.total_share_units == 2 * SHARE_SCALE
    assert where(take(inv, "r2", count=3)) == ("b", ("cuda:0", "cuda:1", "cuda:2"))
    assert take(inv, "r3", count=9) is None
    # A partly used device is not a whole device.
    take(inv, "r4", fraction=0.1, node="a")
    assert where(take(inv, "r5", count=7)) == ("a", tuple(f"cuda:{i}" for i in range(1, 8)))


def test_whole_devices_spread_and_first_fit() -> None:
    inv = inventory(node("a", 2), node("b", 4))
    assert where(take(inv, "r1", "spread", count=1)) == ("b", ("cuda:0",))
    assert where(take(inv, "r2", "first-fit", count=1)) == ("a", ("cuda:0",))


def test_whole_devices_of_several_classes_on_one_node() -> None:
    mixed = NodeSpec(
        id="m", address="tcp://m:1", devices=(dev(0), dev(1, model="A100 40GB", mem=40 * GiB))
    )
    for policy in ("best-fit", "spread", "first-fit"):
        inv = inventory(node("a", 1), mixed)
        p = take(inv, "r1", policy, count=2)
        assert p is not None and where(p) == ("m", ("cuda:0", "cuda:1"))
        assert p.memory_bytes == 40 * GiB  # the smaller device's
        assert take(inv, "r2", policy, count=2) is None
        assert where(take(inv, "r3", policy, count=1)) == ("a", ("cuda:0",))


def test_unconstrained_work_goes_to_the_least_loaded_class() -> None:
    amd = NodeSpec(id="x", address="tcp://x:1",
                   devices=(dev(0, vendor="amd", model="MI300X", mem=192 * GiB),))  # fmt: skip
    inv = inventory(node("a", 2), amd)
    assert where(take(inv, "r1", fraction=0.5, vendor="amd")) == ("x", ("cuda:0",))
    # Plain best-fit would fill the AMD device (fullest); its class is at 50%,
    # the NVIDIA class at 0%, so the slice goes there.
    assert where(take(inv, "r2", fraction=0.5)) == ("a", ("cuda:0",))
    assert where(take(inv, "r3", "first-fit", fraction=0.25)) == ("a", ("cuda:0",))


def test_pinned_node() -> None:
    inv = inventory(node("a", 1), node("b", 1))
    assert where(take(inv, "r1", fraction=0.5, node="b")) == ("b", ("cuda:0",))
    assert take(inv, "r2", fraction=0.5, node="zz") is None


def test_ineligible_nodes_get_nothing_but_keep_their_counters() -> None:
    inv = inventory(node("a", 1), node("b", 1))
    take(inv, "r1", fraction=0.5)
    inv.set_eligible("a", False)
    assert inv.capacity_units == SHARE_SCALE
    assert where(take(inv, "r2", fraction=0.5)) == ("b", ("cuda:0",))
    assert take(inv, "r3", fraction=0.75) is None
    assert inv.usage("a", "cuda:0") == (5000, 40 * GiB)
    inv.set_eligible("a", True)
    assert where(take(inv, "r3", fraction=0.5)) == ("a", ("cuda:0",))  # best fit again


def test_could_ever_fit_ignores_current_use() -> None:
    inv = inventory(node("a", 2))
    take(inv, "r1", count=2)
    assert inv.find(req("x", count=1)) is None
    assert inv.could_ever_fit(req("x", count=2))
    assert not inv.could_ever_fit(req("x", count=3))
    assert not inv.could_ever_fit(req("x", memory_bytes="81GiB"))
    assert not inv.could_ever_fit(req("x", fraction=0.1, model="*A100*"))


def test_allocate_refuses_to_over_commit() -> None:
    inv = inventory(node("a", 1))
    p = Placement(node_id="a", device_ids=("cuda:0",), share_units=6000, memory_bytes=GiB)
    inv.allocate(p)
    try:
        inv.allocate(p)
    except PoolInputError as exc:
        assert "no room" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("over-commit was allowed")
    assert inv.usage("a", "cuda:0") == (6000, GiB)


def test_re_registering_a_changed_device_drops_it() -> None:
    inv = inventory(node("a", 2))
    bigger = NodeSpec(id="a", address="tcp://a:1", devices=(dev(0), dev(1, mem=96 * GiB)))
    assert inv.devices_removed_by(bigger) == ["cuda:1"]
    assert inv.devices_removed_by(node("a", 1)) == ["cuda:1"]


_request = st.one_of(
    st.builds(lambda f: {"fraction": f}, st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 0.75, 1.0])),
    st.builds(lambda m: {"memory_bytes": m * GiB}, st.integers(1, 80)),
    st.builds(
        lambda f, m: {"fraction": f, "memory_bytes": m * GiB},
        st.sampled_from([0.1, 0.25, 0.5]),
        st.integers(1, 60),
    ),
    st.builds(lambda n: {"count": n}, st.integers(1, 3)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["take", "release", "cordon"]), _request, st.integers(0, 10**6)),
        max_size=60,
    ),
    st.sampled_from(["best-fit", "spread", "first-fit"]),
)
def test_never_over_commits_whatever_the_sequence(ops: list, policy: str) -> None:  # type: ignore[type-arg]
    nodes = [
        node("a", 2),
        NodeSpec(id="b", address="tcp://b:1", devices=(dev(0, mem=40 * GiB), dev(1, mem=24 * GiB))),
        node("c", 3, mem=48 * GiB),
    ]
    inv = inventory(*nodes)
    held: list[Placement] = []
    for i, (op, kw, pick) in enumerate(ops):
        if op == "take":
            p = inv.find(req(f"r{i}", **kw), policy)  # type: ignore[arg-type]
            if p is not None:
                inv.allocate(p)  # raises if the placement over-commits
                held.append(p)
        elif op == "release" and held:
            p = held.pop(pick % len(held))
            inv.free(p.node_id, p.device_ids, p.share_units, p.memory_bytes)
        elif op == "cordon":
            name = "abc"[pick % 3]
            inv.set_eligible(name, pick % 2 == 0)
        # Counters equal the sum of what is held, and stay within capacity.
        for n in nodes:
            for d in n.devices:
                units = sum(
                    p.share_units for p in held if p.node_id == n.id and d.id in p.device_ids
                )
                mem = sum(
                    p.memory_bytes for p in held if p.node_id == n.id and d.id in p.device_ids
                )
                assert inv.usage(n.id, d.id) == (units, mem)
                assert units <= SHARE_SCALE and mem <= d.memory_bytes
