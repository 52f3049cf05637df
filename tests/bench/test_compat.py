"""The compatibility runner (bench/compat.py) judges real runs correctly.

Two scripts of our own (tests/bench/compat_fixtures) stand in for the corpus: ``same.py``
prints the same under ``tether run --remote numpy`` as plainly except for a timing field
that its entry masks, ``differs.py`` prints whether the client loaded tether. They are
committed to a real git repository, laid out by bench/compat/assemble.py from it, and run
by the runner: its table and JSON must call the first identical and the second different.
Remoting numpy needs no torch, so this runs wherever the test extra is installed.
``slow.py`` runs until it is stopped: the runner stopped meanwhile leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.acceptor.serve_process import alive

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "compat_fixtures"
RUN_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _git(repo: Path, *argv: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }  # fmt: skip
    done = subprocess.run(
        ["git", "-C", str(repo), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return done.stdout.strip()


#: The entries of the list for same.py and differs.py.
ENTRIES = """
[[script]]
name = "same"
repo = "tether/fixtures"
path = "same.py"
mask = ['took [0-9.]+s']

[[script]]
name = "differs"
repo = "tether/fixtures"
path = "differs.py"
"""


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        check=False,
    )


def test_runner_tells_identical_from_different(tmp_path: Path) -> None:
    corpus_list, folder, commit = _lay_out(tmp_path, ("same.py", "differs.py"), ENTRIES)
    assert (folder / "same" / "same.py").read_bytes() == (FIXTURES / "same.py").read_bytes()
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["differs"]["commit"] == commit

    out_json = tmp_path / "results.json"
    done = _run(
        str(REPO / "bench" / "compat.py"), str(folder), "--list", str(corpus_list),
        "--json", str(out_json),
        cwd=tmp_path,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 1, report  # one entry differs
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert rows["same"].split()[5] == "identical", report
    assert rows["differs"].split()[5] == "differs", report
    assert "line 2: 'tether loaded: False' != 'tether loaded: True'" in rows["differs"], report
    assert "embedded: 1/2 identical" in done.stdout, report

    results = {r["name"]: r for r in json.loads(out_json.read_text())}
    assert results["same"]["results"]["embedded"]["result"] == "identical"
    assert results["differs"]["results"]["embedded"]["result"] == "differs"
    assert results["same"]["local_status"] == 0


def test_bad_list_is_a_clear_error(tmp_path: Path) -> None:
    corpus_list = tmp_path / "corpus.toml"
    corpus_list.write_text('[[script]]\nname = "x"\nrepo = "a/b"\npath = "x.py"\n')
    done = _run(
        str(REPO / "bench" / "compat.py"), str(tmp_path), "--list", str(corpus_list), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "no 40-hex commit for a/b" in done.stderr


def _lay_out(tmp_path: Path, names: tuple[str, ...], entries: str) -> tuple[Path, Path, str]:
    """A fixtures repository of ``names`` at a commit, the corpus list of ``entries``
    for it and the folder bench/compat/assemble.py lays out from it."""
    mirror = tmp_path / "fixtures"
    mirror.mkdir()
    for name in names:
        (mirror / name).write_bytes((FIXTURES / name).read_bytes())
    _git(mirror, "init", "-q")
    _git(mirror, "add", *names)
    _git(mirror, "commit", "-q", "-m", "fixtures")
    commit = _git(mirror, "rev-parse", "HEAD")
    corpus_list = tmp_path / "corpus.toml"
    corpus_list.write_text(
        f'requires = ["numpy"]\n[defaults]\nremote = ["numpy"]\ntimeout = 120\n'
        f'[repos]\n"tether/fixtures" = "{commit}"\n{entries}'
    )
    folder = tmp_path / "corpus"
    laid = _run(
        str(REPO / "bench" / "compat" / "assemble.py"), str(folder),
        "--list", str(corpus_list), "--mirror", f"tether/fixtures={mirror / '.git'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert laid.returncode == 0, laid.stdout + laid.stderr
    return corpus_list, folder, commit


def _running(name: str, *, under: Path) -> int | None:
    """A process running script ``name`` with its working directory under ``under``."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:  # not a process, gone, or not ours to read
            continue
        if name.encode() in argv and cwd.startswith(str(under)):
            return int(proc.name)
    return None


def test_a_stopped_runner_leaves_no_script_running_and_no_scratch(tmp_path: Path) -> None:
    entries = '[[script]]\nname = "slow"\nrepo = "tether/fixtures"\npath = "slow.py"\n'
    corpus_list, folder, _commit = _lay_out(tmp_path, ("slow.py",), entries)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["TMPDIR"] = str(tmp_path)  # (the runner's scratch folder is made here)
    compat = str(REPO / "bench" / "compat.py")
    runner = subprocess.Popen(
        [sys.executable, compat, str(folder), "--list", str(corpus_list)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        script = None
        deadline = time.monotonic() + 120
        while script is None and time.monotonic() < deadline:
            script = _running("slow.py", under=tmp_path)
            time.sleep(0.2)
        assert script is not None, "the runner never started the script"
        runner.send_signal(signal.SIGTERM)
        _out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
        runner.wait()
    assert runner.returncode == 128 + signal.SIGTERM, err
    deadline = time.monotonic() + 10
    while alive(script) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(script), "the script outlived the runner"
    assert not list(tmp_path.glob("tether-compat-*")), "the scratch folder was left behind"
