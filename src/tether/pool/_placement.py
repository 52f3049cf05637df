"""Deterministic placement of slices onto devices.

(Over 400 lines on purpose: one data structure, the placement index, whose classes,
sorted lists and segment tree keep invariants that are stated and property-tested
together; cut apart, each piece would be wrong alone.)

:class:`Inventory` holds every registered device with its capacity and what
is allocated on it, and answers "where would this request go?" without
changing anything (:meth:`Inventory.find`); :meth:`Inventory.allocate` and
:meth:`Inventory.free` then move the counters. It is pure data structure: no
clock, no I/O, no randomness, so the same calls give the same answers.

Invariants (checked by the property tests): a device's allocated share never
exceeds one device (``SHARE_SCALE`` units) and its allocated memory never
exceeds its memory. A fraction ``f`` of a device takes ``f`` of its memory
unless the request names a memory size; a memory-only request takes the share
``memory / device memory``, rounded up.

How it stays fast at 8,000 devices. Devices are grouped into *classes*:
devices alike in everything a constraint can look at (vendor, model, memory,
arch, frameworks). A request's constraints are evaluated once per class (and
cached per constraint set), never per device. Each class keeps its eligible
devices (nodes up and not cordoned) in a list sorted by free share, so

- best-fit (the default) is a binary search for the first device whose free
  share covers the request, i.e. the one left fullest: O(log n) plus the few
  steps past devices whose memory is short;
- spread walks the same list from the emptiest end;
- first-fit asks a per-class segment tree of free share for the first device,
  in registration order, with enough room: O(log n);
- whole devices (``count``) look only at nodes that have fully free matching
  devices, kept per class in a dict.

When a request matches several classes (no constraint, or a loose one),
best-fit and spread first pick the matching class with the lowest load
(allocated share / capacity), then apply the policy inside it. Plain best-fit
across classes fills the nodes that picky requests (``vendor=amd``) already
opened with unconstrained work, and the scarce class runs out first: in
``bench/pool_scale.py`` that halved packing at the first refusal. Keeping the
classes evenly loaded lets every class's picky requests find room until the
whole pool is nearly full. First-fit stays the plain registration-order
baseline.

Ties are broken by registration order, so placements are reproducible.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.pool._model import DeviceSpec, NodeSpec, PlacementPolicy
from tether.pool._request import SliceRequest
from tether.pool._values import SHARE_SCALE, PoolInputError, share_units

__all__ = ["Inventory", "Placement", "slice_size"]

# The policies compared on every find: an enum member's lookup through its class
# costs about five times a module global's (measured: 137 vs 29 ns a compare).
_FIRST_FIT = PlacementPolicy.FIRST_FIT
_SPREAD = PlacementPolicy.SPREAD


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a request would go: a node, its device(s), and per-device share and memory."""

    node_id: str
    device_ids: tuple[str, ...]
    share_units: int
    memory_bytes: int

    @property
    def total_share_units(self) -> int:
        return self.share_units * len(self.device_ids)

    @property
    def total_memory_bytes(self) -> int:
        return self.memory_bytes * len(self.device_ids)

    @property
    def fraction(self) -> float:
        return self.share_units / SHARE_SCALE


def slice_size(request: SliceRequest, device_memory: int) -> tuple[int, int]:
    """The (share units, memory bytes) a request takes on *one* device of that memory.

    Whole devices take all of each; see :class:`SliceRequest` for the rest.
    """
    if request.count is not None:
        return SHARE_SCALE, device_memory
    if request.fraction is not None:
        units = share_units(request.fraction)
        if request.memory_bytes is not None:
            return units, request.memory_bytes
        # Round memory down with the share: f of a device must never claim more
        # than f of its memory, or f-slices would not tile a device exactly.
        return units, device_memory * units // SHARE_SCALE
    assert request.memory_bytes is not None
    units = min(SHARE_SCALE, max(1, math.ceil(request.memory_bytes * SHARE_SCALE / device_memory)))
    return units, request.memory_bytes


class _MaxTree:
    """Segment tree of per-slot free share: first slot at or after ``start`` with value >= x."""

    __slots__ = ("size", "tree")

    def __init__(self) -> None:
        self.size = 1
        self.tree = [0, 0]

    def _grow(self, n: int) -> None:
        size = self.size
        while size < n:
            size *= 2
        if size == self.size:
            return
        old = self.tree[self.size : 2 * self.size]
        self.size = size
        self.tree = [0] * (2 * size)
        self.tree[size : size + len(old)] = old
        for i in range(size - 1, 0, -1):
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])

    def set(self, slot: int, value: int) -> None:
        if slot >= self.size:
            self._grow(slot + 1)
        i = slot + self.size
        self.tree[i] = value
        i //= 2
        while i:
            v = max(self.tree[2 * i], self.tree[2 * i + 1])
            if self.tree[i] == v:
                break
            self.tree[i] = v
            i //= 2

    def first_at_least(self, x: int, start: int = 0) -> int:
        """The first slot >= start whose value is >= x, or -1."""
        return self._find(1, 0, self.size, x, start)

    def _find(self, node: int, lo: int, hi: int, x: int, start: int) -> int:
        if hi <= start or self.tree[node] < x:
            return -1
        if hi - lo == 1:
            return lo
        mid = (lo + hi) // 2
        found = self._find(2 * node, lo, mid, x, start)
        if found >= 0:
            return found
        return self._find(2 * node + 1, mid, hi, x, start)


@dataclass(slots=True, eq=False)
class _Device:
    node_id: str
    spec: DeviceSpec
    order: int  # registration order across the pool: the tie-breaker
    cls: _Class
    slot: int  # position in the class's segment tree
    used_units: int = 0
    used_memory: int = 0
    eligible: bool = False

    @property
    def free_units(self) -> int:
        return SHARE_SCALE - self.used_units

    @property
    def free_memory(self) -> int:
        return self.spec.memory_bytes - self.used_memory

    @property
    def whole_free(self) -> bool:
        return self.used_units == 0 and self.used_memory == 0


@dataclass(slots=True, eq=False)
class _Class:
    sample: DeviceSpec
    memory_bytes: int
    by_free: list[tuple[int, int]] = field(
        default_factory=list
    )  # (free units, order), eligible only
    tree: _MaxTree = field(default_factory=_MaxTree)
    slots: list[_Device | None] = field(default_factory=list)
    whole_free: dict[str, set[int]] = field(default_factory=dict)  # node -> orders, eligible only
    # k -> sorted ranks of the nodes with exactly k whole free devices of this class
    by_whole: dict[int, list[int]] = field(default_factory=dict)
    per_node: dict[str, int] = field(default_factory=dict)  # node -> devices (all)
    capacity_units: int = 0  # eligible devices only
    used_units: int = 0  # eligible devices only

    @property
    def load(self) -> float:
        return self.used_units / self.capacity_units if self.capacity_units else 2.0


class Inventory:
    """Every registered device, its allocation, and the placement index over eligible ones.

    A node's devices are *eligible* for new slices when the caller says so
    (:meth:`set_eligible`: the state machine makes a node eligible when it is up
    and not cordoned or drained). Allocation counters are kept for every device,
    eligible or not, so a cordoned node still knows what it holds.
    """

    def __init__(self) -> None:
        self._classes: dict[tuple[Any, ...], _Class] = {}
        self._devices: dict[tuple[str, str], _Device] = {}
        self._by_order: dict[int, _Device] = {}
        self._nodes: dict[str, list[_Device]] = {}
        self._node_order: dict[str, int] = {}  # node -> rank (registration order)
        self._rank_node: list[str] = []
        self._mixed_nodes: set[str] = set()  # nodes with devices of several classes
        self._eligible_nodes: set[str] = set()
        self._next_order = 0
        self._match_cache: dict[tuple[Any, ...], list[_Class]] = {}
        # could_ever_fit answers; they change only when devices come or go.
        self._fit_cache: dict[tuple[Any, ...], bool] = {}
        self.capacity_units = 0  # eligible devices only
        self.allocated_units = 0  # all devices

    # ------------------------------------------------------------------ inventory changes

    def devices_removed_by(self, node: NodeSpec) -> list[str]:
        """The ids of devices that registering ``node`` anew would drop (changes nothing).

        A device whose description changed counts as removed (and is re-added
        empty), so its leases must end: they were placed on another device.
        """
        old = {d.spec.id: d for d in self._nodes.get(node.id, [])}
        new_ids = {d.id for d in node.devices}
        removed = [
            dev_id
            for dev_id, dev in old.items()
            if dev_id not in new_ids or dev.spec != node.device(dev_id)
        ]
        return removed

    def set_node(self, node: NodeSpec) -> None:
        """Add a node or make it hold exactly ``node``'s devices.

        Devices kept (same id, same description) keep their allocation and the
        node keeps its eligibility; a new node starts ineligible. The caller
        ends the leases on :meth:`devices_removed_by` devices first.
        """
        eligible = node.id in self._eligible_nodes
        if node.id not in self._node_order:
            self._node_order[node.id] = len(self._rank_node)
            self._rank_node.append(node.id)
        old = {d.spec.id: d for d in self._nodes.get(node.id, [])}
        kept: list[_Device] = []
        for spec in node.devices:
            dev = old.pop(spec.id, None)
            if dev is not None and dev.spec == spec:
                kept.append(dev)
                continue
            if dev is not None:
                old[spec.id] = dev  # changed description: drop below, add anew
            kept.append(self._add_device(node.id, spec))
        for dev in old.values():
            self._remove_device(dev)
        self._nodes[node.id] = kept
        if len({id(d.cls) for d in kept}) > 1:
            self._mixed_nodes.add(node.id)
        else:
            self._mixed_nodes.discard(node.id)
        for dev in kept:
            self._set_device_eligible(dev, eligible)

    def remove_device(self, node_id: str, device_id: str) -> None:
        """Forget one device (the caller has ended its leases)."""
        dev = self._devices.get((node_id, device_id))
        if dev is None:
            return
        self._remove_device(dev)
        self._nodes[node_id] = [d for d in self._nodes[node_id] if d is not dev]

    def set_eligible(self, node_id: str, eligible: bool) -> None:
        """Let (or stop) the node's devices take new slices."""
        if eligible:
            self._eligible_nodes.add(node_id)
        else:
            self._eligible_nodes.discard(node_id)
        for dev in self._nodes.get(node_id, []):
            self._set_device_eligible(dev, eligible)

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes

    def device_ids(self, node_id: str) -> list[str]:
        return [d.spec.id for d in self._nodes.get(node_id, [])]

    def usage(self, node_id: str, device_id: str) -> tuple[int, int]:
        """(allocated share units, allocated memory bytes) of one device."""
        dev = self._devices[(node_id, device_id)]
        return dev.used_units, dev.used_memory

    @property
    def device_count(self) -> int:
        return len(self._devices)

    @property
    def eligible_device_count(self) -> int:
        return self.capacity_units // SHARE_SCALE

    # ------------------------------------------------------------------ allocation

    def allocate(self, placement: Placement) -> None:
        """Take ``placement``'s share and memory on its devices.

        Raises :class:`PoolInputError` (and changes nothing) if a device is
        unknown or the placement does not fit: the no-over-commit guard.
        """
        devs = [self._devices.get((placement.node_id, d)) for d in placement.device_ids]
        for dev_id, dev in zip(placement.device_ids, devs, strict=True):
            if dev is None:
                raise PoolInputError(f"node {placement.node_id} has no device {dev_id!r}")
            if dev.free_units < placement.share_units or dev.free_memory < placement.memory_bytes:
                raise PoolInputError(
                    f"device {placement.node_id}/{dev_id} has no room for share "
                    f"{placement.share_units}/{SHARE_SCALE} and {placement.memory_bytes} bytes"
                )
        for dev in devs:
            assert dev is not None
            self._change(dev, placement.share_units, placement.memory_bytes)

    def free(self, node_id: str, device_ids: Iterable[str], units: int, memory: int) -> None:
        """Give back what :meth:`allocate` took (devices already forgotten are skipped)."""
        for dev_id in device_ids:
            dev = self._devices.get((node_id, dev_id))
            if dev is None:
                continue
            if dev.used_units < units or dev.used_memory < memory:
                raise PoolInputError(f"device {node_id}/{dev_id}: freeing more than was allocated")
            self._change(dev, -units, -memory)

    # ------------------------------------------------------------------ queries

    def find(
        self, request: SliceRequest, policy: PlacementPolicy = PlacementPolicy.BEST_FIT
    ) -> Placement | None:
        """Where ``request`` would go now under ``policy``, or None if nowhere fits.

        Considers eligible devices only; never returns a placement that would
        over-commit share or memory. Changes nothing.
        """
        classes = self._matching_classes(request)
        if not classes:
            return None
        if request.count is not None:
            return self._find_whole(request, classes, policy)
        if request.node is not None:
            return self._find_on_node(request, classes, policy)
        if policy != _FIRST_FIT and len(classes) > 1:
            # Least-loaded class first (see the module docstring), then the
            # policy within the class.
            for cls in sorted(classes, key=lambda c: c.load):
                found = self._find_slice([cls], request, policy)
                if found is not None:
                    return found
            return None
        return self._find_slice(classes, request, policy)

    def _find_slice(
        self, classes: list[_Class], request: SliceRequest, policy: PlacementPolicy
    ) -> Placement | None:
        best: tuple[tuple[int, int], _Device, int, int] | None = None
        for cls in classes:
            units, memory = slice_size(request, cls.memory_bytes)
            if policy == _FIRST_FIT:
                dev = self._first_fit(cls, units, memory)
                key = (dev.order, 0) if dev else None
            elif policy == _SPREAD:
                dev = self._spread(cls, units, memory)
                key = (-dev.free_units, dev.order) if dev else None
            else:
                dev = self._best_fit(cls, units, memory)
                key = (dev.free_units - units, dev.order) if dev else None
            if dev is not None and key is not None and (best is None or key < best[0]):
                best = (key, dev, units, memory)
        if best is None:
            return None
        _, dev, units, memory = best
        return Placement(
            node_id=dev.node_id, device_ids=(dev.spec.id,), share_units=units, memory_bytes=memory
        )

    def could_ever_fit(self, request: SliceRequest) -> bool:
        """Whether some registered device (eligible or not, free or not) could hold ``request``."""
        key = (request.constraint_key(), request.node, request.count)
        known = self._fit_cache.get(key)
        if known is None:
            known = self._fit_cache[key] = self._could_ever_fit(request)
        return known

    def _could_ever_fit(self, request: SliceRequest) -> bool:
        classes = self._matching_classes(request)
        if request.node is not None:
            total = sum(cls.per_node.get(request.node, 0) for cls in classes)
            return total >= request.devices_wanted
        if request.count is None:
            return bool(classes)
        counts: dict[str, int] = {}
        for cls in classes:
            for node_id, n in cls.per_node.items():
                counts[node_id] = counts.get(node_id, 0) + n
        return any(n >= request.count for n in counts.values())

    def capacity_for(self, request: SliceRequest) -> int:
        """How many slices like ``request`` the registered devices could hold if all
        were empty (eligible or not): what no amount of waiting can raise."""
        classes = self._matching_classes(request)
        if request.count is not None:
            per_node: dict[str, int] = {}
            for cls in classes:
                for node_id, n in cls.per_node.items():
                    if request.node is None or node_id == request.node:
                        per_node[node_id] = per_node.get(node_id, 0) + n
            return sum(n // request.count for n in per_node.values())
        total = 0
        for cls in classes:
            devices = (
                cls.per_node.get(request.node, 0)
                if request.node is not None
                else sum(cls.per_node.values())
            )
            units, memory = slice_size(request, cls.memory_bytes)
            per_device = SHARE_SCALE // units
            if memory > 0:
                per_device = min(per_device, cls.memory_bytes // memory)
            total += devices * per_device
        return total

    # ------------------------------------------------------------------ internals

    def _matching_classes(self, request: SliceRequest) -> list[_Class]:
        key = request.constraint_key()
        found = self._match_cache.get(key)
        if found is None:
            found = [c for c in self._classes.values() if request.matches(c.sample)]
            self._match_cache[key] = found
        return found

    def _best_fit(self, cls: _Class, units: int, memory: int) -> _Device | None:
        entries = cls.by_free
        i = bisect.bisect_left(entries, (units, -1))
        while i < len(entries):
            dev = self._by_order[entries[i][1]]
            if dev.free_memory >= memory:
                return dev
            i += 1
        return None

    def _spread(self, cls: _Class, units: int, memory: int) -> _Device | None:
        # Emptiest first; among equally empty devices, registration order.
        entries = cls.by_free
        hi = len(entries)
        while hi > 0 and entries[hi - 1][0] >= units:
            free = entries[hi - 1][0]
            lo = bisect.bisect_left(entries, (free, -1), 0, hi)
            for i in range(lo, hi):
                dev = self._by_order[entries[i][1]]
                if dev.free_memory >= memory:
                    return dev
            hi = lo
        return None

    def _first_fit(self, cls: _Class, units: int, memory: int) -> _Device | None:
        slot = cls.tree.first_at_least(units)
        while slot >= 0:
            dev = cls.slots[slot]
            if dev is not None and dev.free_memory >= memory:
                return dev
            slot = cls.tree.first_at_least(units, slot + 1)
        return None

    def _find_on_node(
        self, request: SliceRequest, classes: list[_Class], policy: PlacementPolicy
    ) -> Placement | None:
        assert request.node is not None
        if request.node not in self._eligible_nodes:
            return None
        wanted = {id(c) for c in classes}
        best: tuple[tuple[int, int], _Device, int, int] | None = None
        for dev in self._nodes.get(request.node, []):
            if id(dev.cls) not in wanted:
                continue
            units, memory = slice_size(request, dev.spec.memory_bytes)
            if dev.free_units < units or dev.free_memory < memory:
                continue
            if policy == _FIRST_FIT:
                key = (dev.order, 0)
            elif policy == _SPREAD:
                key = (-dev.free_units, dev.order)
            else:
                key = (dev.free_units - units, dev.order)
            if best is None or key < best[0]:
                best = (key, dev, units, memory)
        if best is None:
            return None
        _, dev, units, memory = best
        return Placement(
            node_id=dev.node_id, device_ids=(dev.spec.id,), share_units=units, memory_bytes=memory
        )

    def _find_whole(
        self, request: SliceRequest, classes: list[_Class], policy: PlacementPolicy
    ) -> Placement | None:
        count = request.count
        assert count is not None
        if request.node is not None:
            return self._whole_on_nodes(count, classes, [request.node], policy)
        if policy != _FIRST_FIT:
            # Least-loaded class first, as for slices.
            for cls in sorted(classes, key=lambda c: c.load) if len(classes) > 1 else classes:
                rank = self._whole_pick(cls, count, policy)
                if rank is not None:
                    return self._whole_on_nodes(count, [cls], [self._rank_node[rank]], policy)
            found = None
        else:
            ranks = [
                r for r in (self._whole_pick(c, count, policy) for c in classes) if r is not None
            ]
            found = (
                self._whole_on_nodes(count, classes, [self._rank_node[min(ranks)]], policy)
                if ranks
                else None
            )
        if len(classes) > 1 and self._mixed_nodes:
            # Nodes with devices of several matching classes may hold it only
            # by mixing them; there are few such nodes, so look at each.
            mixed = self._whole_on_nodes(count, classes, sorted(self._mixed_nodes), policy)
            if found is None or (
                mixed is not None
                and policy == _FIRST_FIT
                and self._node_order[mixed.node_id] < self._node_order[found.node_id]
            ):
                found = mixed
        return found

    def _whole_pick(self, cls: _Class, count: int, policy: PlacementPolicy) -> int | None:
        """The rank of the node of ``cls`` that the policy picks for ``count`` whole devices."""
        sizes = [k for k, ranks in cls.by_whole.items() if k >= count and ranks]
        if not sizes:
            return None
        if policy == _FIRST_FIT:
            return min(cls.by_whole[k][0] for k in sizes)
        k = max(sizes) if policy == _SPREAD else min(sizes)
        return cls.by_whole[k][0]

    def _whole_on_nodes(
        self, count: int, classes: list[_Class], node_ids: Iterable[str], policy: PlacementPolicy
    ) -> Placement | None:
        best: tuple[tuple[int, int], str, list[int]] | None = None
        for node_id in node_ids:
            orders: list[int] = []
            for cls in classes:
                orders.extend(cls.whole_free.get(node_id, ()))
            n = len(orders)
            if n < count:
                continue
            rank = self._node_order[node_id]
            if policy == _FIRST_FIT:
                key = (rank, 0)
            elif policy == _SPREAD:
                key = (-n, rank)
            else:
                key = (n - count, rank)
            if best is None or key < best[0]:
                best = (key, node_id, orders)
        if best is None:
            return None
        _, node_id, orders = best
        devs = [self._by_order[o] for o in sorted(orders)[:count]]
        # A lease records one memory size per device: on a node with mixed
        # devices that is the smallest; each device is still taken whole.
        memory = min(d.spec.memory_bytes for d in devs)
        return Placement(
            node_id=node_id,
            device_ids=tuple(d.spec.id for d in devs),
            share_units=SHARE_SCALE,
            memory_bytes=memory,
        )

    def _add_device(self, node_id: str, spec: DeviceSpec) -> _Device:
        key = spec.class_key()
        cls = self._classes.get(key)
        if cls is None:
            cls = _Class(sample=spec, memory_bytes=spec.memory_bytes)
            self._classes[key] = cls
            self._match_cache.clear()
        order = self._next_order
        self._next_order += 1
        dev = _Device(node_id=node_id, spec=spec, order=order, cls=cls, slot=len(cls.slots))
        self._fit_cache.clear()
        cls.slots.append(dev)
        cls.per_node[node_id] = cls.per_node.get(node_id, 0) + 1
        self._devices[(node_id, spec.id)] = dev
        self._by_order[order] = dev
        return dev

    def _remove_device(self, dev: _Device) -> None:
        self._fit_cache.clear()
        self._set_device_eligible(dev, False)
        self.allocated_units -= dev.used_units
        cls = dev.cls
        cls.slots[dev.slot] = None
        cls.per_node[dev.node_id] -= 1
        if not cls.per_node[dev.node_id]:
            del cls.per_node[dev.node_id]
        del self._devices[(dev.node_id, dev.spec.id)]
        del self._by_order[dev.order]

    def _set_device_eligible(self, dev: _Device, eligible: bool) -> None:
        if dev.eligible == eligible:
            return
        if eligible:
            dev.eligible = True
            self._index(dev)
            self.capacity_units += SHARE_SCALE
            dev.cls.capacity_units += SHARE_SCALE
            dev.cls.used_units += dev.used_units
        else:
            self._unindex(dev)
            dev.eligible = False
            self.capacity_units -= SHARE_SCALE
            dev.cls.capacity_units -= SHARE_SCALE
            dev.cls.used_units -= dev.used_units

    def _index(self, dev: _Device) -> None:
        cls = dev.cls
        bisect.insort(cls.by_free, (dev.free_units, dev.order))
        cls.tree.set(dev.slot, dev.free_units)
        if dev.whole_free:
            orders = cls.whole_free.setdefault(dev.node_id, set())
            self._move_whole(cls, dev.node_id, len(orders), len(orders) + 1)
            orders.add(dev.order)

    def _unindex(self, dev: _Device) -> None:
        cls = dev.cls
        entries = cls.by_free
        i = bisect.bisect_left(entries, (dev.free_units, dev.order))
        if i < len(entries) and entries[i] == (dev.free_units, dev.order):
            del entries[i]
        cls.tree.set(dev.slot, 0)
        orders = cls.whole_free.get(dev.node_id)
        if orders is not None and dev.order in orders:
            self._move_whole(cls, dev.node_id, len(orders), len(orders) - 1)
            orders.discard(dev.order)
            if not orders:
                del cls.whole_free[dev.node_id]

    def _move_whole(self, cls: _Class, node_id: str, old: int, new: int) -> None:
        rank = self._node_order[node_id]
        if old:
            ranks = cls.by_whole[old]
            del ranks[bisect.bisect_left(ranks, rank)]
        if new:
            bisect.insort(cls.by_whole.setdefault(new, []), rank)

    def _change(self, dev: _Device, units: int, memory: int) -> None:
        if dev.eligible:
            self._unindex(dev)
        dev.used_units += units
        dev.used_memory += memory
        self.allocated_units += units
        if dev.eligible:
            dev.cls.used_units += units
            self._index(dev)
