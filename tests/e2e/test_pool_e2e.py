"""The pool in the loop, with real processes: a pool, two acceptors, clients.

One pool (``tether pool serve`` on SQLite, short timeouts) and two acceptors
(``tether serve --pool``, nodes ``a`` and ``b`` on loopback, each offering this
machine's CPU as one device) are started once for the module. Clients are
``tether run --pool ... --gpus 0.5`` processes running small torch scripts, and
the test process itself (``tether.connect`` with a ticket). Scripts coordinate
with the test through marker files, never through sleeps; every subprocess has
a timeout and its whole process group is killed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import kill_group
from pool_world import START_TIMEOUT_S, World, running_world, wait_for, write_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("pool-e2e")) as w:
        yield w


# A script that announces itself with a marker file, waits for a go file, then
# does real torch work. With "crash" it raises at the end (exit status 1).
GATED = """\
    import sys, time
    from pathlib import Path
    import torch

    tag, mode = sys.argv[1], sys.argv[2]
    here = Path(__file__).parent
    x = torch.ones(64, 64)
    (here / f"started-{tag}").write_text("1")
    print(f"{tag} started", flush=True)
    deadline = time.monotonic() + 200
    while not (here / f"go-{tag}").exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.05)
    print(f"{tag} sum {float((x @ x).sum()):.0f}", flush=True)
    if mode == "crash":
        raise ValueError(f"{tag} crashed on purpose")
"""


def test_two_half_slices_share_a_device_and_a_third_waits_its_turn(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "gated.py", GATED)
    modes = {"1": "ok", "2": "ok", "3": "crash"}
    runs = {
        tag: world.run(script, "--gpus", "0.5", "--node", "a", name=f"gated-{tag}", args=(tag, m))
        for tag, m in modes.items()
    }

    def started() -> set[str]:
        return {t for t in runs if (tmp_path / f"started-{t}").exists()}

    logs = lambda: "\n".join(r.describe() for r in runs.values()) + world.logs()  # noqa: E731
    first = wait_for("two sessions to start", lambda: len(started()) >= 2 and started(),
                     START_TIMEOUT_S, logs())  # fmt: skip
    (waiting,) = set(runs) - first
    queued = runs[waiting]
    wait_for("the queue position line", lambda: "position 1 in the queue" in queued.stderr(),
             30, logs())  # fmt: skip
    assert started() == first, "a third half slice started on a device already full"

    # Asked not to wait, a fourth is refused at once with the pool's reason.
    refused = world.run(script, "--gpus", "0.5", "--node", "a", "--no-wait", name="nowait",
                        args=("4", "ok"))  # fmt: skip
    assert refused.wait(60) == 1, refused.describe()
    assert "tether: error:" in refused.stderr() and not (tmp_path / "started-4").exists()

    # One finishes; the waiting one gets its slice and starts.
    done = sorted(first)[0]
    (tmp_path / f"go-{done}").write_text("1")
    assert runs[done].wait() == (1 if modes[done] == "crash" else 0), runs[done].describe()
    wait_for("the queued session to start", lambda: waiting in started(), START_TIMEOUT_S, logs())
    for tag in runs:
        (tmp_path / f"go-{tag}").write_text("1")
    for tag, run in runs.items():
        code = run.wait()
        assert code == (1 if modes[tag] == "crash" else 0), run.describe()
        assert f"{tag} sum 262144" in run.stdout(), run.describe()
    assert "ValueError: 3 crashed on purpose" in runs["3"].stderr()

    # Every lease was released (the crashed one too), and usage shows the three.
    ended = {s["id"]: s for s in world.admin.sessions(state="ended", team="ml")}
    mine = [s for s in ended.values() if s["request"].get("node") == "a"]
    # Closed by the client's release, or (first, or moved back to it) by the
    # acceptor's report of when the session ended.
    released = [s for s in mine if s["end_reason"] in ("released", "finished")]
    assert len(released) >= 3, mine
    metered = [s for s in released if (s.get("metering") or {}).get("memory_hwm")]
    assert metered, f"no acceptor metering reached the pool: {released}"
    rows = world.admin.usage(team="ml")
    ann = [r for r in rows if r["user"] == "ann"]
    assert ann and ann[0]["sessions"] >= 3, rows
    assert ann[0]["device_seconds"] > 0, rows


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
            big = torch.ones(4 << 30, dtype=torch.uint8)  # 4 GiB against a 256 MiB slice
            print("hog got", big.numel(), flush=True)
        except RuntimeError as exc:
            print("hog caught out-of-memory:", "can't allocate memory" in str(exc), flush=True)
    small = torch.ones(8 << 20, dtype=torch.uint8)  # 8 MiB: well inside the slice
    print(tag, "still works:", int(small.sum()), flush=True)
"""


def test_a_session_over_its_memory_limit_gets_torchs_error_and_the_other_goes_on(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "oom.py", OOM)
    opts = ("--gpus", "0.5", "--gpu-memory", "256MiB", "--node", "b")
    hog = world.run(script, *opts, name="hog", args=("hog", "calm"))
    calm = world.run(script, *opts, name="calm", args=("calm", "hog"))
    assert hog.wait() == 0, hog.describe() + world.logs()
    assert calm.wait() == 0, calm.describe() + world.logs()
    assert "hog caught out-of-memory: True" in hog.stdout(), hog.describe()
    assert f"hog still works: {8 << 20}" in hog.stdout(), hog.describe()
    assert f"calm still works: {8 << 20}" in calm.stdout(), calm.describe()
    assert "hog got" not in hog.stdout()


def test_the_acceptor_admits_only_valid_tickets_for_itself(world: World) -> None:
    import tether
    from tether._errors import AuthenticationError

    with pytest.raises(AuthenticationError, match="not a Tether session ticket"):
        tether.connect(world.acceptors["a"], token="a plain acceptor token")
    lease = world.ann.request_slice(fraction=0.25, node="a", wait=False)
    try:
        ticket = lease["ticket"]
        head, body, _sig = ticket.split(".")
        forged = f"{head}.{body}.{'A' * 43}"
        with pytest.raises(AuthenticationError, match="signature does not match"):
            tether.connect(world.acceptors["a"], token=forged)
        with pytest.raises(AuthenticationError, match="this ticket is for node 'a'"):
            tether.connect(world.acceptors["b"], token=ticket)
        # A genuine ticket opens a session; replayed while it runs, it is refused.
        with (
            tether.connect(world.acceptors["a"], token=ticket, ordered_output=False),
            pytest.raises(AuthenticationError, match=r"already connected|used already"),
        ):
            tether.connect(world.acceptors["a"], token=ticket, ordered_output=False)
    finally:
        world.ann.release(lease["id"])


def test_a_killed_client_loses_its_lease_through_the_missing_heartbeat(
    world: World, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "gated.py", GATED)
    run = world.run(script, "--gpus", "0.5", "--node", "a", name="killed", args=("k", "ok"))
    wait_for("the session to start", (tmp_path / "started-k").exists, START_TIMEOUT_S,
             run.describe())  # fmt: skip
    live = [s for s in world.admin.sessions(state="placed", team="ml")]
    assert live, "no placed session"
    kill_group(run.popen)  # SIGKILL: nothing gets to release anything
    run.popen.wait(10)
    ids = {s["id"] for s in live}

    def all_ended() -> bool:
        now = {s["id"]: s for s in world.admin.sessions(state="ended", team="ml")}
        return ids <= set(now) and all(now[i]["end_reason"] != "released" for i in ids)

    wait_for("the pool to end the killed client's lease", all_ended, 60, world.logs())
