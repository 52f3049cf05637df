"""Slices of a real GPU: memory enforced per session, neighbours unaffected, usage metered.

One pool and one acceptor offering ``nvidia:0``. Two sessions hold half the device each,
with 1 GiB of its memory: one allocates past its slice and gets torch's own
out-of-memory error (and goes on), the other keeps working; the pool's records show each
session's device memory high-water mark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pool_world import World, running_world, write_script


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("gpu-pool"), nodes=("g",), devices="nvidia:0") as w:
        yield w


OOM = """\
    import sys, time
    from pathlib import Path
    import torch

    tag, other = sys.argv[1], sys.argv[2]
    here = Path(__file__).parent
    (here / f"ready-{tag}").write_text("1")
    deadline = time.monotonic() + 200
    while not (here / f"ready-{other}").exists():  # both sessions live at once
        if time.monotonic() > deadline:
            sys.exit("the other session never started")
        time.sleep(0.05)
    if tag == "hog":
        try:
            big = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")  # 4 GiB > 1 GiB
            print("hog got", big.numel(), flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            print("hog caught out-of-memory:", "out of memory" in str(exc), flush=True)
    keep = torch.ones(256 << 20, dtype=torch.uint8, device="cuda")  # 256 MiB: inside
    torch.cuda.synchronize()
    print(tag, "still works:", int(keep.sum()), flush=True)
"""


def test_a_session_past_its_gpu_memory_gets_torchs_error_and_the_other_goes_on(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "oom.py", OOM)
    opts = ("--gpus", "0.5", "--gpu-memory", "1GiB", "--node", "g")
    hog = world.run(script, *opts, name="hog", args=("hog", "calm"))
    calm = world.run(script, *opts, name="calm", args=("calm", "hog"))
    assert hog.wait() == 0, hog.describe() + world.logs()
    assert calm.wait() == 0, calm.describe() + world.logs()
    assert "hog caught out-of-memory: True" in hog.stdout(), hog.describe()
    assert "hog got" not in hog.stdout()
    for tag, run in (("hog", hog), ("calm", calm)):
        assert f"{tag} still works: {256 << 20}" in run.stdout(), run.describe()

    ended = world.admin.sessions(state="ended", team="ml")
    mine = [s for s in ended if s["request"].get("node") == "g"]
    assert len(mine) >= 2, mine
    device_hwm = [(s.get("metering") or {}).get("device_memory_hwm") or 0 for s in mine]
    # Each held its 256 MiB on the device while it ran; NVML saw at least that.
    assert sum(1 for m in device_hwm if m >= 256 << 20) >= 2, mine
    rows = world.admin.usage(team="ml")
    assert rows and rows[0]["device_seconds"] > 0, rows
