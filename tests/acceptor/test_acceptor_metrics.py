"""The acceptor's /metrics on a real ``tether serve`` (no pool): what it reports
of live sessions, who may read it, and what a hostile scraper can do to it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serve_process import SRC, sandbox_skip_reason, serving

import tether
from tether.acceptor._metrics import check_exposure

STEP_TIMEOUT_S = 60.0


def _wait_url(served: object) -> str:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(r"metrics on (http://\S+)", served.log_text())  # type: ignore[attr-defined]
        if match:
            return match.group(1)
        time.sleep(0.05)
    pytest.fail(served.log_text())  # type: ignore[attr-defined]


def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _value(text: str, name: str, **labels: str) -> float | None:
    for m in re.finditer(rf"^{name}(?:\{{(.*?)\}})? (\S+)$", text, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_sessions_memory_and_calls_of_a_plain_acceptor(tmp_path: Path) -> None:
    with serving(tmp_path, ["--no-sandbox", "--metrics-listen", "127.0.0.1:0"]) as served:
        url = _wait_url(served)
        status, text = _get(url)  # loopback: no token needed
        assert status == 200
        assert _value(text, "tether_acceptor_sessions_open") == 0
        with tether.connect(served.url, token=served.token) as session:
            np = session.import_module("numpy")
            held = np.ones(4 * 1024 * 1024)  # 32 MiB stays in the worker
            assert int(held.sum()) == 4 * 1024 * 1024
            sid = session.session_id
            status, text = _get(url)
            assert _value(text, "tether_acceptor_sessions_open") == 1
            rss = _value(text, "tether_acceptor_session_memory_bytes", session=sid)
            assert rss is not None and rss > 32 * 2**20
            assert (
                _value(text, "tether_acceptor_session_memory_bytes", session=sid, device="cpu:0")
                == rss
            )
            calls = _value(text, "tether_acceptor_session_call_frames_total", session=sid)
            assert calls is not None and calls >= 1
            sent = _value(text, "tether_acceptor_session_sent_bytes_total", session=sid)
            assert sent is not None and sent > 0
            del held
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while _value(_get(url)[1], "tether_acceptor_sessions_open") != 0:
            assert time.monotonic() < deadline, "the session never ended in /metrics"
            time.sleep(0.05)
        text = _get(url)[1]
        assert _value(text, "tether_acceptor_sessions_ended_total") == 1
        assert _value(text, "tether_acceptor_session_memory_bytes", session=sid) is None
        total = _value(text, "tether_acceptor_call_frames_total")
        assert total is not None and total >= calls


def test_a_metrics_token_is_required_when_given_and_scrapers_cannot_hang_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "mtoken").write_text("s3cret\n")
    args = [
        "--no-sandbox",
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token-file",
        str(tmp_path / "mtoken"),
    ]
    with serving(tmp_path, args) as served:
        url = _wait_url(served)
        assert _get(url)[0] == 401
        assert _get(url, "s3cre")[0] == 401
        assert _get(url, "s3cret")[0] == 200
        assert _get(url.replace("/metrics", "/"), "s3cret")[0] == 404
        assert _get(url, "s3cret", method="POST")[0] == 404
        host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        # a head that never ends, then one far too long: each is cut off, and
        # the acceptor goes on answering (each socket is bounded by a timeout)
        idle = socket.create_connection((host, int(port)), timeout=30)
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")
        with socket.create_connection((host, int(port)), timeout=30) as big:
            big.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
            assert b"400" in big.recv(4096).split(b"\r\n", 1)[0]
        assert _get(url, "s3cret")[0] == 200
        assert idle.recv(4096).startswith(b"HTTP/1.1 400"), "an idle scraper was never cut off"
        idle.close()


def test_a_non_loopback_metrics_port_needs_a_token_or_an_explicit_public(tmp_path: Path) -> None:
    assert check_exposure("0.0.0.0", None, False) is not None
    assert check_exposure("::", None, False) is not None
    assert check_exposure("10.1.2.3", None, False) is not None
    assert check_exposure("127.0.0.1", None, False) is None
    assert check_exposure("::1", None, False) is None
    assert check_exposure("0.0.0.0", "t", False) is None
    assert check_exposure("0.0.0.0", None, True) is None
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether",
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--token-file",
            str(tmp_path / "token"),
            "--no-sandbox",
            "--metrics-listen",
            "0.0.0.0:0",
        ],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--metrics-token-file" in out.stderr and "--metrics-public" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


ATTACK = """
import json, os, socket
def attempt(fn):
    try:
        return "ok: " + repr(fn())[:80]
    except Exception as exc:
        return type(exc).__name__
def read(path):
    with open(path, "rb") as f:
        return f.read(64)
def scrape(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET /metrics HTTP/1.1\\r\\n\\r\\n")
        return s.recv(100)
fds = sorted(os.listdir("/proc/self/fd"))
R = {
    "read the metrics token file": attempt(lambda: read(T["token_file"])),
    "scrape the acceptor's metrics port": attempt(lambda: scrape(T["port"])),
    "hold another session's call counter": any(
        T["other"] in os.readlink(f"/proc/self/fd/{fd}") for fd in fds
        if os.path.exists(f"/proc/self/fd/{fd}")),
}
RESULT = json.dumps(R)
"""


@pytest.mark.skipif(sandbox_skip_reason() is not None, reason=str(sandbox_skip_reason()))
def test_a_sandboxed_session_cannot_read_the_metrics_token_or_port(tmp_path: Path) -> None:
    """Run with --no-sandbox, the first two attacks work (checked by hand): the
    sandbox, told about the token file, is what stops them."""
    (tmp_path / "mtoken").write_text("s3cret\n")
    args = ["--metrics-listen", "127.0.0.1:0", "--metrics-token-file", str(tmp_path / "mtoken")]
    with serving(tmp_path, args) as served:
        url = _wait_url(served)
        port = int(url.removeprefix("http://").split("/")[0].rsplit(":", 1)[1])
        with (
            tether.connect(served.url, token=served.token) as a,
            tether.connect(served.url, token=served.token) as b,
        ):
            targets = {
                "token_file": str(tmp_path / "mtoken"),
                "port": port,
                "other": f"tether-calls-{b.session_id}",
            }
            full = f"import json\nT = json.loads({json.dumps(targets)!r})\n{ATTACK}"
            out = a.import_module("builtins").eval(
                f"(lambda ns: (exec({full!r}, ns), ns)[1])({{}})['RESULT']"
            )
            results = json.loads(str(out))
            assert set(results) == {
                "read the metrics token file",
                "scrape the acceptor's metrics port",
                "hold another session's call counter",
            }
            worked = {k: v for k, v in results.items() if v is True or str(v).startswith("ok")}
            assert not worked, f"attacks that worked: {worked}"
            # and the figures still arrive for both sessions
            text = _get(url, "s3cret")[1]
            for s in (a, b):
                assert (
                    _value(text, "tether_acceptor_session_call_frames_total", session=s.session_id)
                    is not None
                )


def test_a_taken_metrics_port_stops_serve_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
             "--token-file", str(tmp_path / "token"), "--no-sandbox",
             "--metrics-listen", f"127.0.0.1:{port}"],
            env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tether serve: cannot serve metrics on 127.0.0.1:{port}: "), last
    assert "Traceback" not in out.stderr
