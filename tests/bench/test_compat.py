"""The compatibility runner (bench/compat.py) judges real runs correctly.

Two scripts of our own (tests/bench/compat_fixtures) stand in for the corpus: ``same.py``
prints the same under ``tether run --remote numpy`` as plainly except for a timing field
that its entry masks, ``differs.py`` prints whether the client loaded tether. They are
committed to a real git repository, laid out by bench/compat/assemble.py from it, and run
by the runner: its table and JSON must call the first identical and the second different.
Remoting numpy needs no torch, so this runs wherever the test extra is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _list(commit: str) -> str:
    return f"""
requires = ["numpy"]

[defaults]
remote = ["numpy"]
timeout = 120

[repos]
"tether/fixtures" = "{commit}"

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
    mirror = tmp_path / "fixtures"
    mirror.mkdir()
    for name in ("same.py", "differs.py"):
        (mirror / name).write_bytes((FIXTURES / name).read_bytes())
    _git(mirror, "init", "-q")
    _git(mirror, "add", "same.py", "differs.py")
    _git(mirror, "commit", "-q", "-m", "fixtures")
    commit = _git(mirror, "rev-parse", "HEAD")
    corpus_list = tmp_path / "corpus.toml"
    corpus_list.write_text(_list(commit))
    folder = tmp_path / "corpus"

    laid = _run(
        str(REPO / "bench" / "compat" / "assemble.py"), str(folder),
        "--list", str(corpus_list), "--mirror", f"tether/fixtures={mirror / '.git'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert laid.returncode == 0, laid.stdout + laid.stderr
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
