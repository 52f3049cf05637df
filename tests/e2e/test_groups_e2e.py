"""Group requests and sweeps with real processes: a pool, four CPU acceptors, ``tether submit``.

One pool (``tether pool serve`` on SQLite) and four acceptors (``tether serve
--pool``, nodes ``cpu0``..``cpu3`` on loopback, each offering this machine's CPU
as one device: the embedded default's device, four times) are started once for
the module. The tests ask for groups through the API and run ``tether submit``
as a user would, with a small real script whose ``statistics`` calls run in the
members' workers. Scripts coordinate with the test through marker files, never
through sleeps; every subprocess has a timeout and its process group is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import kill_group
from pool_world import World, running_world, wait_for

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
NODES = ("cpu0", "cpu1", "cpu2", "cpu3")


def submit_argv(world: World, *args: str) -> list[str]:
    """``tether submit`` as ann, against the world's pool."""
    return [
        sys.executable, "-m", "tether", "submit", "--pool", world.url,
        "--token-file", str(world.root / "ann-token"), *args,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(
        tmp_path_factory.mktemp("groups-e2e"), nodes=NODES, node_timeout=10, lease_timeout=30
    ) as w:
        yield w


@pytest.fixture(autouse=True)
def no_lease_left(world: World) -> Iterator[None]:
    yield
    # Every test ends with the pool empty, or the next one would wait.
    for group in world.ann.groups():
        if group["state"] != "ended":
            world.ann.cancel_group(group["id"])
    assert world.open_leases() == []


def test_sixteen_quarter_slices_in_one_call_and_a_gang_that_waits_as_a_unit(world: World) -> None:
    from tether.poolapi._problems import Refused

    first = world.ann.request_group(name="quarters", max_count=16, fraction=0.25)
    assert (first["state"], first["placed_count"], first["running"]) == ("placed", 16, 16)
    per_node: dict[str, int] = {}
    for m in first["members"]:
        per_node[m["node"]] = per_node.get(m["node"], 0) + 1
        assert m["ticket"] and m["address"].startswith("tcp://127.0.0.1:")
    assert per_node == dict.fromkeys(NODES, 4)
    assert sorted(d["allocated_share"] for d in world.admin.devices()) == [1.0] * 4

    # 17 quarters can never fit on four devices: refused at once, waiting or not.
    with pytest.raises(Refused, match=r"hold at most 16 of 0\.25 of a device") as never:
        world.ann.request_group(name="seventeen", max_count=17, fraction=0.25)
    assert never.value.detail["reason"] == "unsatisfiable"

    # Another gang of 16 waits as one unit while the first holds every device...
    second = world.ann.request_group(name="second", max_count=16, fraction=0.25)
    assert (second["state"], second["position"], second["members"]) == ("queued", 1, [])
    assert len(world.open_leases()) == 16  # nothing of the second is held
    # ... and `tether submit --no-wait` is refused at once, with the reason.
    done = subprocess.run(
        submit_argv(world, "--count", "16", "--gpus", "0.25", "--name", "nowait", "--no-wait",
                     "--remote", "statistics", "--", sys.executable, "-c", "pass"),
        env=world.env, cwd=world.root, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "room for 0 of 0.25 of a device now, needs 16" in done.stderr

    # Cancelling the first places the second, whole, in the same transaction.
    world.ann.cancel_group("quarters")
    placed = world.ann.group("second")
    assert (placed["state"], placed["placed_count"]) == ("placed", 16)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "tether", *args, "--pool", world.url,
             "--token-file", str(world.root / "ann-token")],
            env=world.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    shown = json.loads(cli("group", "show", "second", "--json").stdout)
    assert shown["running"] == 16 and len(shown["members"]) == 16
    assert all("ticket" not in m for m in shown["members"])  # tickets are never printed
    table = cli("group", "show", "second").stdout
    assert "second" in table and "INDEX" in table and "cpu3" in table
    listed = cli("groups").stdout
    assert "quarters" in listed and "second" in listed and "seventeen" in listed
    assert "group second" in cli("group", "cancel", "second").stdout
    assert world.open_leases() == []
    rows = {r["group"]: r for r in world.ann.group_usage()}
    assert rows["quarters"]["members"] == 16 and rows["second"]["members"] == 16
    assert rows["quarters"]["peak_share"] == pytest.approx(4.0)
    csv_text = world.ann.group_usage_csv()
    assert csv_text.splitlines()[0].startswith("month,team,group,group_id,user,members")
    # The CLI's group view, too.
    out = subprocess.run(
        [sys.executable, "-m", "tether", "usage", "--groups", "--pool", world.url,
         "--token-file", str(world.root / "ann-token")],
        env=world.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "quarters" in out.stdout and "GROUP" in out.stdout


SWEEP = """\
    import statistics, sys
    seed = int(sys.argv[1])
    # statistics runs in the member's worker, on its slice
    print(f"seed {seed} mean {statistics.mean([seed, seed + 2])}", flush=True)
    sys.exit(3 if seed == 13 else 0)
"""


def test_submit_runs_a_sixteen_way_sweep_to_completion(world: World, tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(SWEEP))
    done = subprocess.run(
        submit_argv(world, "--count", "16", "--gpus", "0.25", "--name", "sweep", "--json",
                     "--remote", "statistics", "--", sys.executable, str(script), "{index}"),
        env=world.env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # member 13 exits 3
    report = json.loads(done.stdout)
    assert report["counts"]["done"] == 15 and report["counts"]["failed"] == 1, done.stderr
    for m in report["members"]:
        i = m["index"]
        output = (tmp_path / "tether-groups" / "sweep" / f"{i}.out").read_text()
        assert f"seed {i} mean {i + 1}" in output, output
        assert m["exit_code"] == (3 if i == 13 else 0)
        assert m["node"] in NODES
    assert "group sweep" in done.stderr and "15 done, 1 failed" in done.stderr
    assert "member 13 exited 3" in done.stderr
    assert world.open_leases() == []  # each member's lease ended with its process
    shown = world.ann.group("sweep")
    assert (shown["state"], shown["placed_count"], shown["ended"]) == ("ended", 16, 16)
    logs = subprocess.run(
        [sys.executable, "-m", "tether", "group", "logs", "sweep", "7"],
        env=world.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert logs.returncode == 0 and "seed 7 mean 8" in logs.stdout


def test_submit_sweeps_a_parameter_grid(world: World, tmp_path: Path) -> None:
    done = subprocess.run(
        submit_argv(world, "--param", "lr=0.1,0.01", "--param", "bs=32,64", "--gpus", "0.5",
                     "--name", "grid", "--remote", "statistics", "--parallel", "2", "--",
                     sys.executable, "-c", "import sys; print('run', sys.argv[1:])",
                     "--lr", "{lr}", "--bs", "{bs}", "{index}"),
        env=world.env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs = [(tmp_path / "tether-groups" / "grid" / f"{i}.out").read_text() for i in range(4)]
    assert "run ['--lr', '0.1', '--bs', '32', '0']" in outputs[0]
    assert "run ['--lr', '0.01', '--bs', '64', '3']" in outputs[3]
    assert "4 done" in done.stderr


HANG = """\
    import os, statistics, sys, time
    from pathlib import Path
    statistics.mean([1, 2])  # the member's session is open
    Path(sys.argv[1], sys.argv[2]).write_text(str(os.getpid()))
    time.sleep(600)
"""


def test_ctrl_c_cancels_every_member_and_leaves_no_lease_open(world: World, tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(HANG))
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = world.spawn(
        submit_argv(world, "--count", "8", "--gpus", "0.5", "--name", "hang",
                    "--remote", "statistics",
                    "--", sys.executable, str(script), str(markers), "{index}"),
        "submit-hang", cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for("all 8 members running", lambda: len(list(markers.iterdir())) == 8,
                 RUN_TIMEOUT_S, lambda: world.log("submit-hang") + world.logs())  # fmt: skip
        assert len(world.open_leases()) == 8
        pids = [int(p.read_text()) for p in markers.iterdir()]
        proc.popen.send_signal(signal.SIGINT)
        assert proc.popen.wait(60) == 130, world.log("submit-hang")
    finally:
        kill_group(proc.popen)
    assert world.open_leases() == []
    group = world.ann.group("hang")
    assert group["state"] == "ended" and group["running"] == 0
    # Released by the cancel, or finished first when the acceptor saw the script end.
    assert {m["state"] for m in group["members"]} == {"ended"}
    assert {m["end_reason"] for m in group["members"]} <= {"released", "finished"}
    assert "cancelling the group" in world.log("submit-hang")

    def all_gone() -> bool:
        alive = 0
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive += 1
            except ProcessLookupError:
                pass
        return alive == 0

    wait_for("the members' scripts to end", all_gone, 30, lambda: world.log("submit-hang"))


def test_group_member_runs_one_member_as_a_kubernetes_pod_would(
    world: World, tmp_path: Path
) -> None:
    world.ann.request_group(name="pods", max_count=4, fraction=0.25)
    env = dict(world.env)
    env.update(
        JOB_COMPLETION_INDEX="2",
        TETHER_POOL=world.url,
        TETHER_POOL_TOKEN_FILE=str(world.root / "ann-token"),
        TETHER_GROUP_PARAMS=json.dumps(
            [{"lr": "0.1"}, {"lr": "0.2"}, {"lr": "0.3"}, {"lr": "0.4"}]
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "tether", "group", "member", "--remote", "statistics", "pods",
         "--", sys.executable, "-c",
         "import statistics, sys; print('member', sys.argv[1], 'lr', sys.argv[2], "
         "statistics.mean([1, 3]))", "{index}", "{lr}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "member 2 lr 0.3 2\n"
    members = {m["index"]: m for m in world.ann.group("pods")["members"]}
    assert members[2]["state"] == "ended"  # released when the command ended
    assert [members[i]["state"] for i in (0, 1, 3)] == ["placed"] * 3
    # A member that has ended cannot be run again.
    again = subprocess.run(
        [sys.executable, "-m", "tether", "group", "member", "pods", "--", "true"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert again.returncode == 1 and "member 2 of group pods has ended" in again.stderr


def test_the_python_api_submits_waits_and_reports(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tether

    monkeypatch.setenv("PYTHONPATH", world.env["PYTHONPATH"])
    monkeypatch.setenv("XDG_CONFIG_HOME", world.env["XDG_CONFIG_HOME"])
    sweep = tether.submit(
        [sys.executable, "-c", "import statistics, sys; print('lr', sys.argv[1])", "{lr}"],
        params={"lr": [0.1, 0.01, 0.001]}, gpus=0.5, name="notebook", remote=["statistics"],
        out_dir=tmp_path / "out", pool=world.url, token=world.ann_token,
    )  # fmt: skip
    results = sweep.wait(timeout=RUN_TIMEOUT_S)
    assert [(r.index, r.state, r.exit_code) for r in results] == [
        (0, "done", 0), (1, "done", 0), (2, "done", 0),
    ]  # fmt: skip
    assert Path(results[2].output or "").read_text().strip().endswith("lr 0.001")
    assert sweep.results() == results and sweep.counts()["done"] == 3


def test_the_table_refreshes_in_place_on_a_terminal(world: World, tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        submit_argv(world, "--count", "4", "--gpus", "0.25", "--name", "tty",
                    "--remote", "statistics", "--", sys.executable, "-c", "print('hi')"),
        env=world.env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=follower, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the other end closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(RUN_TIMEOUT_S) == 0
    finally:
        os.close(leader)
        kill_group(proc)
    screen = b"".join(chunks).decode(errors="replace")
    assert "INDEX" in screen and "STATE" in screen  # the table's header
    assert "\x1b[" in screen  # redrawn in place, not appended
    assert "tether: group tty: 4 done" in screen
