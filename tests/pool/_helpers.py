"""Builders shared by the pool's unit tests (no I/O, no clock)."""

from __future__ import annotations

from tether.pool import DeviceSpec, NodeSpec, SliceRequest

GiB = 1 << 30
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: mid-month, so month splits are explicit


def dev(i: int = 0, *, vendor: str = "nvidia", model: str = "H100 80GB", mem: int = 80 * GiB,
        torch: str | None = "2.4.1+cu121") -> DeviceSpec:  # fmt: skip
    return DeviceSpec(
        id=f"cuda:{i}",
        vendor=vendor,
        model=model,
        memory_bytes=mem,
        arch="9.0",
        frameworks={"torch": torch} if torch else {},
    )


def node(name: str, n: int = 2, **kw: object) -> NodeSpec:
    return NodeSpec(
        id=name,
        address=f"tcp://{name}:7447",
        devices=tuple(dev(i, **kw) for i in range(n)),  # type: ignore[arg-type]
    )


def req(rid: str, **kw: object) -> SliceRequest:
    kw.setdefault("team", "ml")
    kw.setdefault("user", "ada")
    return SliceRequest(id=rid, **kw)  # type: ignore[arg-type]
