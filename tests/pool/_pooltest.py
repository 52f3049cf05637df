"""Fixtures for the pool service tests: real SQLite, real PostgreSQL, a real server.

PostgreSQL is the one at 127.0.0.1:5432 (trust auth, database ``test``). If it is
down, the fixtures try to start it once; if it still cannot be had, the tests
that need it are skipped with the reason. Each test gets a fresh schema, dropped
afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tether.pool._orders import device_specs

PG_BASE = os.environ.get("TETHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SERVER_START_TIMEOUT_S = 60.0

_pg_state: dict[str, str | None] = {}


def _pg_reason() -> str | None:
    """None when PostgreSQL answers; otherwise why not (tried starting it once)."""
    if "reason" in _pg_state:
        return _pg_state["reason"]
    try:
        import psycopg
    except ImportError:
        _pg_state["reason"] = "psycopg is not installed (pip install 'tether[pool]')"
        return _pg_state["reason"]

    def answers() -> str | None:
        try:
            with psycopg.connect(PG_BASE, connect_timeout=3):
                return None
        except Exception as exc:
            return str(exc).strip()

    reason = answers()
    if reason is not None:
        with contextlib.suppress(Exception):
            versions = os.listdir("/etc/postgresql")
            for version in versions:
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            for _ in range(20):
                reason = answers()
                if reason is None:
                    break
                time.sleep(0.5)
    _pg_state["reason"] = (
        None if reason is None else f"PostgreSQL at {PG_BASE} unavailable: {reason}"
    )
    return _pg_state["reason"]


def require_postgres() -> None:
    reason = _pg_reason()
    if reason is not None:
        pytest.skip(reason)


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A database URL whose search_path is a new, empty schema (dropped afterwards)."""
    import psycopg

    require_postgres()
    schema = f"tether_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "pool.db")
    else:
        with fresh_pg_schema() as url:
            yield url


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- a real server


@dataclass
class PoolServer:
    url: str
    admin_token: str
    log: Path
    proc: subprocess.Popen[Any]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def repo_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for key in ("TETHER_POOL", "TETHER_POOL_TOKEN", "TETHER_CONFIG"):
        env.pop(key, None)
    # Pools started without --secret-file take their ticket secret from here,
    # not from a file they would create in the home directory.
    env["TETHER_POOL_SECRET"] = "ab" * 32
    return env


@contextlib.contextmanager
def run_pool_server(root: Path, db: str | None = None, *extra: str) -> Iterator[PoolServer]:
    """``python -m tether pool serve`` on 127.0.0.1:<free port> until the block ends."""
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="the pool service needs pip install 'tether[pool]'")
    root.mkdir(parents=True, exist_ok=True)
    ready, token_file, log = root / "ready", root / "admin-token", root / "pool.log"
    ready.unlink(missing_ok=True)  # a restart on the same root must not read the old URL
    argv = [
        sys.executable, "-m", "tether", "pool", "serve",
        "--listen", "127.0.0.1:0",
        "--db", db or str(root / "pool.db"),
        "--bootstrap-token-file", str(token_file),
        "--ready-file", str(ready),
        *(() if "--secret-file" in extra else ("--secret-file", str(root / "pool-secret"))),
        *extra,
    ]  # fmt: skip
    with log.open("w") as log_fh:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=repo_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"pool exited with {proc.returncode}:\n{log.read_text()}", pytrace=False
                )
            if time.monotonic() > deadline:
                pytest.fail(f"pool did not start:\n{log.read_text()}", pytrace=False)
            time.sleep(0.05)
        yield PoolServer(
            url=ready.read_text().strip(),
            # Only a first start (empty database) writes an admin token.
            admin_token=token_file.read_text().strip() if token_file.exists() else "",
            log=log,
            proc=proc,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def http(
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
    *,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One raw HTTP call (no client library in the way): (status, decoded JSON or text)."""
    data = (
        raw_body
        if raw_body is not None
        else (json.dumps(body).encode() if body is not None else None)
    )
    h = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        exc.close()
    if "json" in ctype:
        return status, json.loads(payload) if payload else None
    return status, payload.decode()


def wait_until(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:.0f}s", pytrace=False)
        time.sleep(interval)


DEVICES = [
    {
        "id": "cuda:0", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3", "memory": "80GiB",
        "arch": "9.0", "frameworks": {"torch": "2.4.1+cu121", "cuda": "12.1"},
    },
    {
        "id": "cuda:1", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3", "memory": "80GiB",
        "arch": "9.0", "frameworks": {"torch": "2.4.1+cu121", "cuda": "12.1"},
    },
]  # fmt: skip
#: The same devices as the service takes them (the API builds these from the JSON).
DEVICE_SPECS = device_specs(DEVICES)
