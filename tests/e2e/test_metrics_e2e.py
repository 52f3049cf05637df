"""Operators' and users' views with real processes: a pool, an acceptor with its
``/metrics`` port, a running ``tether run --name`` session, and the CLI
(``tether top``, ``tether sessions``, ``tether session show|logs``), plus the
Grafana dashboard in deploy/ checked against what the two actually export.

The session's script signals the test through a marker file and waits for a
"go" file; every subprocess is bounded and its process group killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import REPO, base_env, kill_group

from _serving import sandbox_flags

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 90.0
STEP_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 60.0


def wait_for(what: str, check: Callable[[], Any], on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{on_fail()}")
        time.sleep(0.1)


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        out.append((labels, float(m.group(2))))
    return out


def families(text: str) -> set[str]:
    """Every metric name a scrape declares (from its TYPE lines), with the
    series names a histogram adds."""
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(m.group(1))
        if m.group(2) == "histogram":
            names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


@dataclass
class World:
    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pool_url: str = ""
    admin_token: str = ""
    ann_token: str = ""
    metrics_url: str = ""
    metrics_token: str = ""
    acceptor: str = ""

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        with (
            (self.root / f"{name}.out").open("wb") as o,
            (self.root / f"{name}.err").open("wb") as e,
        ):
            proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def text(self, name: str, stream: str = "err") -> str:
        path = self.root / f"{name}.{stream}"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {n}.{s}\n{self.text(n, s)[-3000:]}"
            for n in ("pool", "acceptor", "run")
            for s in ("out", "err")
        )

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tether", *args]
        if args[0] != "top" or "--connect" not in args:
            argv += ["--pool", self.pool_url, "--token", token or self.ann_token]
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tether.poolapi._client import PoolClient

    root = tmp_path_factory.mktemp("metrics-e2e")
    env = base_env(with_src=True)
    env["XDG_CONFIG_HOME"] = str(root / "config")
    env["TETHER_LEASE_HEARTBEAT_S"] = "1"
    w = World(root, env)
    try:
        ready = root / "pool.url"
        pool = w.spawn(
            [
                sys.executable,
                "-m",
                "tether",
                "pool",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                str(root / "pool.db"),
                "--bootstrap-token-file",
                str(root / "admin-token"),
                "--ready-file",
                str(ready),
            ],
            "pool",
        )
        wait_for("the pool", lambda: ready.exists() or pool.poll() is not None, w.logs)
        w.pool_url = ready.read_text().strip()
        w.admin_token = (root / "admin-token").read_text().strip()
        admin = PoolClient(w.pool_url, w.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        admin.set_quota("ml", max_share=2.0, device_hours_per_month=100.0)
        w.ann_token = admin.create_token(user="ann")["token"]
        node_token = root / "node-token"
        node_token.write_text(admin.create_token(kind="node", node="a")["token"])
        w.metrics_token = "scrape-me-" + os.urandom(8).hex()
        (root / "metrics-token").write_text(w.metrics_token + "\n")
        node_ready = root / "acceptor.addr"
        acc = w.spawn(
            [
                sys.executable,
                "-m",
                "tether",
                "serve",
                "--listen",
                "tcp://127.0.0.1:0",
                "--pool",
                w.pool_url,
                "--node-token-file",
                str(node_token),
                "--name",
                "a",
                "--heartbeat-interval",
                "1",
                "--ready-file",
                str(node_ready),
                "--metrics-listen",
                "127.0.0.1:0",
                "--metrics-token-file",
                str(root / "metrics-token"),
                *sandbox_flags(),
            ],
            "acceptor",
        )
        wait_for("the acceptor", lambda: node_ready.exists() or acc.poll() is not None, w.logs)
        w.acceptor = node_ready.read_text().strip()
        m = wait_for(
            "the metrics line",
            lambda: re.search(r"metrics on (http://\S+)", w.text("acceptor")),
            w.logs,
        )
        w.metrics_url = m.group(1)
        yield w
    finally:
        for proc in reversed(w.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(w.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.wait(5)
            kill_group(proc)


SCRIPT = """\
    import pathlib, sys, time
    import torch
    here = pathlib.Path(__file__).parent
    held = torch.ones(8 * 1024 * 1024)  # 32 MiB in the worker
    print("sum", int(held[:10].sum().item()))
    (here / "started").write_text("1")
    for _ in range(1200):
        if (here / "go").exists():
            break
        time.sleep(0.1)
    print("done", held.numel())
"""


def test_metrics_top_names_and_logs_of_a_running_session(world: World) -> None:
    w = world
    script = w.root / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    run = w.spawn(
        [
            sys.executable,
            "-m",
            "tether",
            "run",
            "--pool",
            w.pool_url,
            "--token",
            w.ann_token,
            "--name",
            "train-1",
            "--gpus",
            "0.5",
            "--remote",
            "torch",
            "--",
            sys.executable,
            str(script),
        ],
        "run",
    )
    try:
        wait_for(
            "the session to start",
            lambda: (w.root / "started").exists() or run.poll() is not None,
            w.logs,
        )
        assert run.poll() is None, w.logs()

        # --- the acceptor's /metrics: a token is needed, and garbage is counted
        status, _ = get(w.metrics_url)
        assert status == 401
        status, _ = get(w.metrics_url, "wrong")
        assert status == 401
        host, port = w.acceptor.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as bad:
            bad.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 64)
            with contextlib.suppress(OSError):
                bad.recv(4096)

        def scrape() -> str:
            status, text = get(w.metrics_url, w.metrics_token)
            assert status == 200, text
            return text

        def session_figures() -> str | None:
            text = scrape()
            mem = samples(text, "tether_acceptor_session_memory_bytes")
            dropped = samples(text, "tether_acceptor_connections_dropped_total")
            if mem and dropped:
                return text
            return None

        text = wait_for("per-session figures", session_figures, w.logs)
        assert samples(text, "tether_acceptor_sessions_open") == [({}, 1.0)]
        assert samples(text, "tether_acceptor_sessions_started_total") == [({}, 1.0)]
        [(labels, rss)] = samples(text, "tether_acceptor_session_memory_bytes")
        session_id, device = labels["session"], labels["device"]
        assert device.startswith("cpu:") and rss > 32 * 2**20  # it holds the 32 MiB tensor
        assert ({"reason": "protocol"}, 1.0) in samples(
            text, "tether_acceptor_connections_dropped_total"
        )
        [(_, sent)] = samples(text, "tether_acceptor_session_sent_bytes_total")
        [(_, received)] = samples(text, "tether_acceptor_session_received_bytes_total")
        assert sent > 0 and received > 0
        [(_, calls)] = samples(text, "tether_acceptor_session_call_frames_total")
        assert calls >= 1  # pipelined calls may travel as one batch frame
        assert samples(text, "tether_acceptor_device_worker_memory_bytes") == [
            ({"device": device}, rss)
        ]

        # --- tether top, from the pool (the acceptor's heartbeats) and from the acceptor
        def top_row() -> dict[str, Any] | None:
            out = w.cli("top", "--json")
            assert out.returncode == 0, out.stderr
            rows = [r for r in json.loads(out.stdout) if r.get("session") == session_id]
            return rows[0] if rows and rows[0].get("host_memory_bytes") else None

        row = wait_for("tether top to see the session's memory", top_row, w.logs)
        assert row["name"] == "train-1" and row["user"] == "ann" and row["node"] == "a"
        assert row["fraction"] == 0.5 and row["host_memory_bytes"] > 32 * 2**20
        table = w.cli("top", "--once")
        assert table.returncode == 0, table.stderr
        assert "train-1" in table.stdout and "DEV MEM" in table.stdout
        direct = w.cli(
            "top",
            "--connect",
            w.metrics_url,
            "--metrics-token-file",
            str(w.root / "metrics-token"),
            "--json",
        )
        assert direct.returncode == 0, direct.stderr
        [one] = json.loads(direct.stdout)
        assert one["session"] == session_id and one["host_memory_bytes"] > 32 * 2**20
        # without --once it redraws until interrupted
        live = w.spawn(
            [
                sys.executable,
                "-m",
                "tether",
                "top",
                "--interval",
                "0.2",
                "--pool",
                w.pool_url,
                "--token",
                w.ann_token,
            ],
            "top",
        )
        try:
            wait_for(
                "two frames of tether top",
                lambda: w.text("top", "out").count("train-1") >= 2 or live.poll() is not None,
                lambda: w.text("top", "out") + w.text("top"),
            )
            assert live.poll() is None, w.text("top")
        finally:
            live.send_signal(signal.SIGINT)
        assert live.wait(STEP_TIMEOUT_S) == 0, w.text("top")
        assert w.text("top", "out").count("tether top  ") >= 2
        refused = w.cli("top", "--connect", w.metrics_url, "--once")
        assert refused.returncode != 0 and "401" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        # --- the session's name, in lists and in place of its id
        listed = w.cli("sessions")
        assert listed.returncode == 0, listed.stderr
        assert "train-1" in listed.stdout and session_id in listed.stdout
        shown = w.cli("session", "show", "train-1")
        assert shown.returncode == 0, shown.stderr
        assert f"session {session_id} 'train-1'" in shown.stdout

        # --- a request that must wait: its line says what the pool can know
        waiter = w.spawn(
            [sys.executable, "-m", "tether", "run", "--pool", w.pool_url, "--token",
             w.ann_token, "--name", "waiting-1", "--gpus", "1", "--queue-timeout", "600",
             "--remote", "torch", "--", sys.executable, "-c", "pass"],
            "waiter",
        )  # fmt: skip
        try:
            line = wait_for(
                "the queue line",
                lambda: (
                    next((x for x in w.text("waiter").splitlines() if "ETA" in x), None)
                    or waiter.poll() is not None
                ),
                lambda: w.logs() + w.text("waiter"),
            )
            assert isinstance(line, str), w.text("waiter")
            assert "position 1 in the queue" in line
            assert "ETA unknown (running sessions set no end time), gives up in " in line
            left = line.rsplit("gives up in ", 1)[1]
            assert left.endswith("s") and left[0].isdigit(), line
            # cancelled by its name: the queued request is withdrawn, its run fails
            cancel = w.cli("session", "cancel", "waiting-1")
            assert cancel.returncode == 0, cancel.stderr
            assert cancel.stdout.startswith("withdrew the queued request "), cancel.stdout
            assert waiter.wait(STEP_TIMEOUT_S) == 1, w.text("waiter")
        finally:
            if waiter.poll() is None:
                os.killpg(waiter.pid, signal.SIGTERM)  # withdraws the request
                waiter.wait(STEP_TIMEOUT_S)
        unknown = w.cli("session", "show", "no-such-name")
        assert unknown.returncode != 0
        assert "no session with id or name 'no-such-name'" in unknown.stderr, unknown.stderr

        (w.root / "go").write_text("1")
        assert run.wait(STEP_TIMEOUT_S) == 0, w.logs()
    finally:
        if run.poll() is None:
            kill_group(run)
            run.wait(5)
    assert "done 8388608" in w.text("run", "out")

    # --- after the session: its log as the pool knows it, and the pool's usage series
    logs = wait_for(
        "the session to end in the pool",
        lambda: (
            (out := w.cli("session", "logs", "train-1")).returncode == 0
            and "ended:" in out.stdout
            and out.stdout
        ),
        w.logs,
    )
    assert "requested" in logs and "placed on a" in logs and "worker memory peak" in logs
    assert "output went to its client" in logs
    status, refused = get(w.pool_url + "/metrics")
    assert status == 401 and "--public-metrics" in refused and "credentials_file" in refused
    status, pool_text = get(w.pool_url + "/metrics", w.ann_token)
    assert status == 200
    [(_, device_s)] = samples(pool_text, "tether_pool_team_device_seconds_total")
    assert device_s > 0
    assert samples(pool_text, "tether_pool_queue_wait_seconds_count") == [({"team": "ml"}, 1.0)]
    # two requests answered: the placed one and the one that queued
    assert samples(pool_text, "tether_pool_placement_duration_seconds_count") == [({}, 2.0)]
    assert samples(pool_text, "tether_pool_team_quota_month_device_seconds") == [
        ({"team": "ml"}, 360000.0)
    ]
    text = get(w.metrics_url, w.metrics_token)[1]
    assert samples(text, "tether_acceptor_sessions_open") == [({}, 0.0)]
    assert samples(text, "tether_acceptor_sessions_ended_total") == [({}, 1.0)]
    assert samples(text, "tether_acceptor_sent_bytes_total")[0][1] >= sent
    assert samples(text, "tether_acceptor_call_frames_total")[0][1] >= calls


def test_the_grafana_dashboard_draws_only_metrics_that_exist(world: World) -> None:
    """Every query in deploy/grafana/tether.json names series a real pool and
    acceptor export (so a rename here cannot silently blank a panel)."""
    dashboard = json.loads((REPO / "deploy" / "grafana" / "tether.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    exprs += [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "query"
    ]
    assert len(exprs) >= 8
    status, pool_text = get(world.pool_url + "/metrics", world.admin_token)
    assert status == 200
    exported = families(pool_text) | families(get(world.metrics_url, world.metrics_token)[1])
    used = {name for e in exprs for name in re.findall(r"\btether_[a-z_]+\b", e)}
    assert used, exprs
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    monthly = [e for e in exprs if "tether_pool_team_device_seconds_total" in e]
    assert any("increase(" in e and "[30d]" in e and "3600" in e for e in monthly), monthly
