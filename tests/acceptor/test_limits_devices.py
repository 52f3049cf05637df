"""Slices of several whole devices: the worker sees all of them, in order.

The environment is built by the real functions (the pool authorizer's
``TETHER_SLICE``, then :func:`apply_slice_env` in a fresh process), and once
end to end: a real Acceptor spawns a real worker, and a client asks it what
it sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptor_thread import running_acceptor

from tether._ticket import SessionTicket, issue, node_key
from tether.acceptor import _limits
from tether.acceptor._authorizer import TicketAuthorizer
from tether.acceptor._devices import Device
from tether.acceptor._limits import SLICE_ENV, SliceError, SliceLimits
from tether.acceptor._server import POOL_SESSION_ENV
from tether.wire import PROTOCOL_VERSION, Hello

SRC = str(Path(_limits.__file__).resolve().parents[2])
KEY = node_key(b"m" * 32, "multi")
GiB = 1 << 30


def _device(vendor: str, index: int, ident: str) -> Device:
    return Device(
        id=f"{vendor}:{ident}",
        vendor=vendor,
        model="test",
        index=index,
        pin=ident if vendor == "nvidia" else str(index),
        memory_total=16 * GiB,
        memory_free=16 * GiB,
    )


CPU = Device(
    id="cpu:0", vendor="cpu", model="cpu", index=0, pin="", memory_total=8 * GiB,
    memory_free=8 * GiB,
)  # fmt: skip
NV = [_device("nvidia", 0, "GPU-aaaa"), _device("nvidia", 1, "GPU-bbbb")]
AMD = [_device("amd", 0, "0xa0"), _device("amd", 1, "0xa1")]
INTEL = [_device("intel", 0, "x0"), _device("intel", 1, "x1")]
HOST = [CPU, *NV, *AMD, *INTEL]


def _ticket(*device_ids: str, session: str = "s-multi") -> str:
    now = time.time()
    return issue(
        KEY,
        SessionTicket(
            session_id=session, node="multi", device_ids=device_ids, fraction=1.0,
            memory_bytes=4 * GiB, team="ml", user="ann", issued_at=now, expires_at=now + 300,
        ),
    )  # fmt: skip


def _authorizer() -> TicketAuthorizer:
    auth = TicketAuthorizer("multi", HOST)
    auth.key = KEY
    return auth


def _admit(*device_ids: str) -> dict[str, str]:
    ok, reason, env = _authorizer()(Hello(protocol=PROTOCOL_VERSION, token=_ticket(*device_ids)))
    assert ok, reason
    return dict(env)


# ------------------------------------------------------------------ the record


def test_a_slice_of_two_devices_keeps_their_order_and_round_trips() -> None:
    slice = SliceLimits.for_devices([NV[1], NV[0]], memory_limit=4 * GiB)
    assert slice.device_ids == ("nvidia:GPU-bbbb", "nvidia:GPU-aaaa")
    assert slice.pins == ("GPU-bbbb", "GPU-aaaa")
    assert slice.device_id == "nvidia:GPU-bbbb"
    assert SliceLimits.from_env(slice.to_env()) == slice


def test_the_cpu_in_a_gpu_lease_adds_nothing_and_vendors_do_not_mix() -> None:
    assert SliceLimits.for_devices([CPU, *AMD]).device_ids == ("amd:0xa0", "amd:0xa1")
    assert SliceLimits.for_devices([CPU]).pins == ()
    with pytest.raises(SliceError, match=r"several vendors \(amd, nvidia\)"):
        SliceLimits.for_devices([NV[0], AMD[0]])
    with pytest.raises(SliceError, match="at least one device"):
        SliceLimits.for_devices([])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vendor": "nvidia", "device_ids": ("a", "b"), "pins": ("GPU-a",)}, "2 device"),
        ({"vendor": "nvidia", "device_ids": ("a", "a"), "pins": ("x", "y")}, "distinct"),
        ({"vendor": "amd", "device_ids": ("a",), "pins": ("0,1",)}, "without commas"),
        ({"device_ids": ("cpu:0", "cpu:1")}, "one device"),
        ({"device_ids": ()}, "distinct"),
    ],
)
def test_inconsistent_device_lists_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SliceError, match=message):
        SliceLimits(**fields)  # type: ignore[arg-type]


def test_visibility_lists_every_device_in_slice_order() -> None:
    nv = _limits.visibility_env(SliceLimits.for_devices([NV[1], NV[0]]))
    assert nv == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "GPU-bbbb,GPU-aaaa"}
    amd = _limits.visibility_env(SliceLimits.for_devices(AMD))
    assert amd == {"HIP_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": None}
    intel = _limits.visibility_env(SliceLimits.for_devices(INTEL))
    assert intel["ZE_AFFINITY_MASK"] == "0,1" and intel["CUDA_VISIBLE_DEVICES"] == "-1"


# ------------------------------------------------- the authorizer, then a process

SHOW = """
import json, os
from tether.acceptor._enforce import apply_slice_env
enf = apply_slice_env()
names = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
print(json.dumps({"env": {n: os.environ.get(n) for n in names}, "memory": enf.memory}))
"""


def _worker_env(slice_env: dict[str, str]) -> dict[str, Any]:
    """What a fresh process sees after applying ``slice_env`` as a worker does."""
    env = {k: v for k, v in os.environ.items() if k != SLICE_ENV}
    # Set beforehand, as on a GPU host: the slice must override or remove it.
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"
    env.update(slice_env, PYTHONPATH=SRC)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SHOW)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_a_two_gpu_ticket_shows_the_worker_both_gpus_in_the_tickets_order() -> None:
    slice_env = _admit("nvidia:GPU-bbbb", "nvidia:GPU-aaaa")
    assert slice_env[POOL_SESSION_ENV] == "s-multi"
    seen = _worker_env(slice_env)
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb,GPU-aaaa"
    assert seen["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "4096 MiB on each of its devices" in seen["memory"]


def test_a_two_amd_ticket_shows_hip_both_and_drops_cuda() -> None:
    seen = _worker_env(_admit("amd:0xa1", "amd:0xa0"))
    assert seen["env"]["HIP_VISIBLE_DEVICES"] == "1,0"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] is None


def test_a_two_xpu_ticket_sets_the_level_zero_mask() -> None:
    seen = _worker_env(_admit("intel:x0", "intel:x1"))
    assert seen["env"]["ZE_AFFINITY_MASK"] == "0,1"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "-1"


@pytest.mark.parametrize(
    ("device_ids", "message"),
    [
        (("nvidia:GPU-aaaa", "nvidia:GPU-gone"), "names device 'nvidia:GPU-gone'"),
        (("nvidia:GPU-aaaa", "amd:0xa0"), "several vendors"),
    ],
)
def test_tickets_the_worker_cannot_honour_are_refused(
    device_ids: tuple[str, ...], message: str
) -> None:
    token = _ticket(*device_ids)
    ok, reason, env = _authorizer()(Hello(protocol=PROTOCOL_VERSION, token=token))
    assert not ok and message in reason and env == {}


# ------------------------------------------------------ a real acceptor and worker


@pytest.fixture
def acceptor_url() -> Iterator[str]:
    """A real Acceptor on loopback with the pool's authorizer, in a thread."""
    with running_acceptor(_authorizer()) as url:
        yield url


def test_the_acceptors_worker_sees_every_gpu_of_its_lease(acceptor_url: str) -> None:
    import tether

    token = _ticket("nvidia:GPU-bbbb", "nvidia:GPU-aaaa")
    with tether.connect(acceptor_url, token=token, ordered_output=False) as session:
        remote_os = session.import_module("os")
        enforce = session.import_module("tether.acceptor._enforce")
        assert remote_os.getpid() != os.getpid()
        assert remote_os.environ.get("CUDA_VISIBLE_DEVICES") == "GPU-bbbb,GPU-aaaa"
        assert remote_os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
        assert remote_os.environ.get(POOL_SESSION_ENV) == "s-multi"
        assert "on each of its devices" in enforce.current_enforcement().memory
