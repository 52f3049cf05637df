"""`tether pool|admin|usage|node` through the real entry point against a real pool."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tether.cli import main
from tether.poolapi import PoolClient

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
DEVICES = [
    {"id": "cuda:0", "vendor": "nvidia", "model": "H100", "memory": "80GiB"},
    {"id": "cuda:1", "vendor": "nvidia", "model": "H100", "memory": "80GiB"},
]


@dataclass
class Pool:
    url: str
    admin_token: str
    root: Path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(SRC)
    env["TETHER_CONFIG"] = "/nonexistent/tether-config.toml"
    env["TETHER_POOL_SECRET"] = "cd" * 32  # not a file in the home directory
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="the pool service needs pip install 'tether[pool]'")
    root = tmp_path_factory.mktemp("clipool")
    ready, token = root / "ready", root / "admin-token"
    with (root / "pool.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tether", "pool", "serve", "--listen", "127.0.0.1:0",
                "--db", str(root / "pool.db"), "--bootstrap-token-file", str(token),
                "--ready-file", str(ready),
            ],
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (root / "pool.log").read_text()
            assert time.monotonic() < deadline, (root / "pool.log").read_text()
            time.sleep(0.05)
        yield Pool(url=ready.read_text().strip(), admin_token=token.read_text().strip(), root=root)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in (root / "pool.log").read_text()


def tether(pool: Pool, *argv: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tether ARGV`` with the pool and token in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "tether", *argv],
        env=_env(TETHER_POOL=pool.url, TETHER_POOL_TOKEN=token or pool.admin_token),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_admin_flow_through_the_real_entry_point(pool: Pool) -> None:
    r = tether(pool, "admin", "team", "create", "ml")
    assert r.returncode == 0, r.stderr
    assert "created team ml" in r.stdout
    r = tether(pool, "admin", "user", "create", "ann", "--team", "ml")
    assert r.returncode == 0 and "created user ann (ml)" in r.stdout
    r = tether(pool, "admin", "token", "create", "--user", "ann", "--json")
    issued = json.loads(r.stdout)
    assert issued["token"].startswith("tu_") and issued["user"] == "ann"
    r = tether(pool, "admin", "quota", "set", "ml", "--max-share", "1.5", "--max-memory", "100GiB")
    assert r.returncode == 0 and "1.5 devices" in r.stdout and "100GiB" in r.stdout
    r = tether(pool, "admin", "token", "list", "--json")
    assert issued["id"] in {t["id"] for t in json.loads(r.stdout)}
    assert issued["token"] not in r.stdout  # secrets are shown once, at creation

    # ann cannot administer: the CLI says why, exit status 1, no traceback.
    r = tether(pool, "admin", "team", "create", "hackers", token=issued["token"])
    assert r.returncode == 1
    assert r.stderr.startswith("tether: error: this needs an admin token")
    assert "Traceback" not in r.stderr


def test_token_create_prints_the_token_alone_on_stdout(pool: Pool, tmp_path: Path) -> None:
    """``tether admin token create ... > file`` writes a file the token readers accept."""
    token_file = tmp_path / "node-token"
    with token_file.open("w") as out:
        r = subprocess.run(
            [sys.executable, "-m", "tether", "admin", "token", "create", "--node", "gpu8"],
            env=_env(TETHER_POOL=pool.url, TETHER_POOL_TOKEN=pool.admin_token),
            stdout=out, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = token_file.read_text()
    assert text.startswith("tn_") and text.count("\n") == 1 and text.endswith("\n"), text
    token = text.strip()
    token_id = token.split("_")[1]
    assert f"token {token_id} for node gpu8 (shown once" in r.stderr
    assert "safe channel" not in r.stderr  # the hint is for terminals only
    # The file works as it is: the node registers with it.
    node = PoolClient(pool.url, token)
    node.register_node("gpu8", "tcp://127.0.0.1:7448", DEVICES)
    assert any(n["name"] == "gpu8" for n in PoolClient(pool.url, pool.admin_token).nodes())


def test_token_create_on_a_terminal_still_keeps_stdout_to_the_token(pool: Pool) -> None:
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "admin", "token", "create", "--user", "admin"],
            env=_env(TETHER_POOL=pool.url, TETHER_POOL_TOKEN=pool.admin_token),
            stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0, err
    finally:
        os.close(controller)
    lines = seen.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tu_"), seen
    assert "(shown once" in err and "safe channel" in err, err
    assert PoolClient(pool.url, lines[0]).me()["user"] == "admin"


def test_status_draws_allocated_share_as_bars(pool: Pool) -> None:
    admin = PoolClient(pool.url, pool.admin_token)
    with contextlib.suppress(Exception):
        admin.create_team("vision")
    admin.create_user("carl", teams=["vision"])
    carl = PoolClient(pool.url, admin.create_token(user="carl")["token"])
    node = PoolClient(pool.url, admin.create_token(kind="node")["token"])
    node.register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
    s = carl.request_slice(fraction=0.5)

    r = tether(pool, "pool", "status", token=carl.token)
    assert r.returncode == 0, r.stderr
    assert "[##########----------]" in r.stdout  # cuda:0, half allocated
    assert "[--------------------]" in r.stdout  # cuda:1, free
    assert s["id"] in r.stdout and "placed" in r.stdout
    data = json.loads(tether(pool, "pool", "status", "--json", token=carl.token).stdout)
    assert [x["id"] for x in data["sessions"]] == [s["id"]]

    carl.release(s["id"])
    r = tether(pool, "usage", "--team", "vision", token=carl.token)
    assert r.returncode == 0 and "DEVICE-HOURS" in r.stdout and "carl" in r.stdout
    rows = json.loads(tether(pool, "usage", "--json", token=carl.token).stdout)
    assert {r["team"] for r in rows} == {"vision"}  # carl sees only his team
    csv_out = tether(pool, "usage", "--team", "vision", "--csv", token=carl.token).stdout
    assert csv_out.startswith("month,team,user,") and ",carl," in csv_out


def test_node_commands(pool: Pool, capsys: pytest.CaptureFixture[str]) -> None:
    admin = PoolClient(pool.url, pool.admin_token)
    node = PoolClient(pool.url, admin.create_token(kind="node", node="gpu9")["token"])
    node.register_node("gpu9", "tcp://127.0.0.1:7448", DEVICES[:1])
    with environ(TETHER_POOL=pool.url, TETHER_POOL_TOKEN=pool.admin_token):
        assert main(["node", "cordon", "gpu9"]) == 0
        assert "node gpu9 is now cordoned" in capsys.readouterr().out
        assert main(["node", "drain", "gpu9", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "drained"
        assert main(["node", "uncordon", "gpu9"]) == 0
        assert "now ready" in capsys.readouterr().out
        assert main(["node", "list"]) == 0
        assert "gpu9" in capsys.readouterr().out
        assert main(["node", "cordon", "nope"]) == 1
        assert "not registered" in capsys.readouterr().err


def test_where_the_pool_is_comes_from_flags_env_or_config(
    pool: Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    with environ(TETHER_CONFIG=str(config), TETHER_POOL="", TETHER_POOL_TOKEN=""):
        assert main(["admin", "team", "list"]) == 1
        err = capsys.readouterr().err
        assert "no pool configured" in err and str(config) in err

        from tether._config import write_pool

        write_pool(pool.url, pool.admin_token, config)
        assert (config.stat().st_mode & 0o777) == 0o600
        assert main(["admin", "team", "list", "--json"]) == 0
        assert isinstance(json.loads(capsys.readouterr().out), list)

        # A flag beats the file.
        assert main(["admin", "team", "list", "--token", "tu_000000000000_nope"]) == 1
        assert "tether: error: invalid token" in capsys.readouterr().err


def test_unreachable_pool_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pool", "status", "--pool", "http://127.0.0.1:9", "--token", "tu_x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tether: error: cannot reach the pool at http://127.0.0.1:9")


def test_serve_rejects_a_bad_listen_address(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tether", "pool", "serve", "--listen", "nonsense",
         "--db", str(tmp_path / "p.db")],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 1 and "--listen must be HOST:PORT" in r.stderr


def test_serve_strips_whitespace_around_db(tmp_path: Path) -> None:
    """A database URL from a Secret written with ``echo`` ends in a newline."""
    pytest.importorskip("uvicorn", reason="the pool service needs pip install 'tether[pool]'")
    db, ready = tmp_path / "pool.db", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "pool", "serve", "--listen", "127.0.0.1:0",
         "--db", f"  {db}\n", "--ready-file", str(ready)],
        env=_env(), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert db.exists(), err  # not a file named "  .../pool.db\n"
    r = subprocess.run(
        [sys.executable, "-m", "tether", "pool", "serve", "--db", " \n",
         "--ready-file", str(tmp_path / "never")],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "--db is empty" in r.stderr, r.stderr
    assert not (tmp_path / "never").exists()


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *argv],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_every_pool_command_reads_its_token_from_a_file(pool: Pool, tmp_path: Path) -> None:
    """No command needs a token on its command line, where any local user can read it."""
    token_file = tmp_path / "token"
    token_file.write_text(pool.admin_token + "\n")
    for argv in (["pool", "status"], ["admin", "team", "list"], ["usage"], ["node", "list"]):
        r = _run([*argv, "--pool", pool.url, "--token-file", str(token_file), "--json"], _env())
        assert r.returncode == 0, (argv, r.stderr)
        assert pool.admin_token not in r.stdout + r.stderr
    r = _run(
        ["pool", "status", "--json"],
        _env(TETHER_POOL=pool.url, TETHER_POOL_TOKEN_FILE=str(token_file)),
    )
    assert r.returncode == 0, r.stderr
    config = tmp_path / "config.toml"
    config.write_text(f'[pool]\nurl = "{pool.url}"\ntoken_file = "{token_file}"\n')
    r = _run(["usage", "--json"], _env(TETHER_CONFIG=str(config)))
    assert r.returncode == 0, r.stderr


def test_an_unreadable_token_file_is_one_clear_line(pool: Pool, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    r = _run(["pool", "status", "--pool", pool.url, "--token-file", str(missing)], _env())
    assert r.returncode == 1
    assert (
        r.stderr
        == f"tether: error: cannot read the token file {missing}: No such file or directory\n"
    )
    r = _run(["pool", "status"], _env(TETHER_POOL=pool.url, TETHER_POOL_TOKEN_FILE=str(missing)))
    assert r.returncode == 1 and "cannot read the TETHER_POOL_TOKEN_FILE" in r.stderr
    r = _run(
        ["serve", "--listen", "tcp://127.0.0.1:0", "--pool", pool.url],
        _env(TETHER_NODE_TOKEN_FILE=str(missing)),
    )
    assert r.returncode == 2 and f"cannot read {missing}" in r.stderr
