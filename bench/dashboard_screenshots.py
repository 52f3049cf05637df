"""Take the screenshots of the pool's dashboard in docs/ (docs/dashboard-*.png).

    .venv/bin/python -m bench.dashboard_screenshots [--out docs]

Builds a pool in memory with a made-up but plausible history -- three teams,
two nodes, five months of leases, live sessions with metering, a queue -- on a
clock this script moves by hand (so the charts have months to show), serves
only the dashboard on loopback, and photographs each page in headless
Chromium as the admin (all teams) and the login form. Everything goes through
the service's public methods, as the dashboard itself does. Needs the
``[pool]`` extra and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import io
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the DevTools driver the browser test uses

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from pool._browser import open_browser  # noqa: E402
from tether.pool._model import PoolConfig  # noqa: E402
from tether.pool._server import bootstrap_admin  # noqa: E402
from tether.pool._service import PoolService, ServiceConfig  # noqa: E402
from tether.pool._store import Store  # noqa: E402
from tether.pool._ui import mount_ui  # noqa: E402

HOUR = 3600.0
PAGES = ("devices", "sessions", "queue", "quotas", "usage")


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _device(i: int, model: str, memory: str) -> dict[str, Any]:
    return {
        "id": f"cuda:{i}", "vendor": "nvidia", "model": model, "memory": memory, "arch": "9.0",
        "frameworks": {"torch": "2.13.0+cu126", "cuda": "12.6"},
    }  # fmt: skip


def build(db: Path) -> tuple[PoolService, Clock, str]:
    """A pool with a history; returns it, its clock and the admin's token."""
    store = Store.open(str(db))
    admin_token = bootstrap_admin(store, None, io.StringIO())
    assert admin_token is not None
    clock = Clock(_at("2026-06-02T09:00:00"))
    # Timeouts far beyond the hours this script skips: nothing expires behind its back.
    policy = PoolConfig(node_timeout_s=1e9, lease_timeout_s=1e9, max_queue_timeout_s=1e9)
    service = PoolService(store, ServiceConfig(policy=policy), clock=clock)
    service.start()
    admin = service.authenticate(admin_token)
    users = {"ann": "ml", "dan": "ml", "bob": "vision", "cho": "speech"}
    for team in ("ml", "vision", "speech"):
        service.create_team(admin, team)
    who = {}
    for user, team in users.items():
        service.create_user(admin, name=user, admin=False, teams=[team])
        token = service.create_token(admin, kind="user", user=user, node=None, label="")
        who[user] = service.authenticate(token["token"])
    service.set_quota(admin, "ml", max_share=4, max_memory="240GiB", device_hours_per_month=1500)
    service.set_quota(admin, "vision", max_share=2, max_memory=None, device_hours_per_month=600)
    service.set_quota(admin, "speech", max_share=1, max_memory="60GiB", device_hours_per_month=None)
    nodes = {
        "gpu1": [_device(i, "NVIDIA H100 80GB HBM3", "80GiB") for i in range(2)],
        "gpu2": [_device(i, "NVIDIA A100-SXM4-40GB", "40GiB") for i in range(4)],
    }
    registrations = {}
    node_principals = {}
    for name, devices in nodes.items():
        token = service.create_token(admin, kind="node", user=None, node=name, label="")
        node_principals[name] = service.authenticate(token["token"])
        reg = service.register_node(
            node_principals[name], name=name, address=f"tcp://{name}.lab:7447",
            devices=devices, replace=False, sent_at=None,
        )  # fmt: skip
        registrations[name] = reg["registration"]

    def beat(sessions: list[dict[str, Any]] | None = None) -> None:
        for name in nodes:
            mine = [s for s in sessions or [] if s.pop("_node", name) == name]
            service.node_heartbeat(
                node_principals[name], name, sent_at=clock(), device_ids=None,
                sessions=mine, registration=registrations[name],
            )  # fmt: skip

    # Five months of history: each team's work, one lease at a time per user.
    months = ("2026-06", "2026-07", "2026-08", "2026-09", "2026-10")
    plan = {  # user: (fraction, memory, hours per lease, leases per month growth)
        "ann": (0.5, "24GiB", 30.0, 1.2),
        "dan": (0.25, "10GiB", 20.0, 1.5),
        "bob": (1.0, "40GiB", 14.0, 0.8),
        "cho": (0.5, "16GiB", 9.0, 1.1),
    }
    for m, month in enumerate(months):
        clock.now = _at(f"{month}-03T08:00:00")
        for user, (fraction, memory, hours, growth) in plan.items():
            for _ in range(1 + round(m * growth)):
                s = service.request_slice(who[user], {"fraction": fraction, "memory": memory})
                clock.now += hours * HOUR
                beat()
                service.release(who[user], s["id"])
                clock.now += HOUR

    # Now: live sessions with metering, and a queue.
    clock.now = _at("2026-11-01T08:00:00")
    live = []
    for user, body, held in (
        ("ann", {"fraction": 0.5, "memory": "24GiB", "name": "llm-finetune"}, 190.0),
        ("dan", {"fraction": 0.25, "memory": "10GiB"}, 120.0),
        ("bob", {"count": 1, "name": "detector-v4"}, 96.0),
        ("cho", {"fraction": 0.5, "memory": "16GiB", "name": "notebook"}, 30.0),
        ("ann", {"fraction": 0.5, "memory": "30GiB", "model": "*A100*", "name": "eval"}, 3.5),
    ):
        clock.now = _at("2026-11-20T14:00:00") - held * HOUR
        beat()
        live.append((user, service.request_slice(who[user], body)))
    clock.now = _at("2026-11-20T14:00:00") - 0.4 * HOUR
    beat()
    service.request_slice(who["bob"], {"count": 2, "model": "*H100*", "queue_timeout_s": 4 * HOUR})
    clock.now += 0.25 * HOUR
    service.request_slice(who["cho"], {"fraction": 0.75, "queue_timeout_s": 2 * HOUR})
    clock.now = _at("2026-11-20T14:00:00")
    meters = []
    for i, (_user, s) in enumerate(live):
        gib = 1 << 30
        meters.append(
            {
                "_node": s["node"], "session_id": s["id"], "wall_seconds": 60.0,
                "memory_hwm": (3 + i) * gib, "memory_byte_seconds": 60.0 * (3 + i) * gib,
                "device_memory_hwm": int((5.5 + 3.1 * i) * gib),
                "device_memory_byte_seconds": 60.0 * (5 + 3 * i) * gib,
                "device_util_mean": 23.0 + 14 * i, "device_util_max": 97.0, "samples": 12,
            }
        )  # fmt: skip
    beat(meters)
    return service, clock, admin_token


def serve(app: FastAPI) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the dashboard did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        service, clock, admin_token = build(Path(tmp) / "pool.db")
        app = FastAPI()
        mount_ui(app, service, clock=clock)
        url, server, thread = serve(app)
        try:
            with open_browser(width=1280, height=760) as browser:
                browser.goto(url + "/ui/login")
                browser.screenshot(args.out / "dashboard-login.png")
                browser.evaluate(
                    f"document.querySelector('#token').value = {admin_token!r};"
                    "document.querySelector('#login-submit').click()"
                )
                browser.wait_for("location.pathname === '/ui/devices'")
                for page in PAGES:
                    browser.goto(f"{url}/ui/{page}")
                    path = args.out / f"dashboard-{page}.png"
                    browser.screenshot(path)
                    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            service.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
