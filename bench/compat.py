"""Run the compatibility corpus: each script plainly and under ``tether run``; compare.

    python bench/compat.py /work/corpus                 # the table, then "N/M identical"
    python bench/compat.py /work/corpus -k makemore     # entries whose name matches a regex
    python bench/compat.py /work/corpus --json out.json # the same, for machines ('-': stdout)
    python bench/compat.py /work/corpus --zero-install  # also from a client venv without torch

The claim under test (docs/compat.md): ``tether run --remote MOD -- python script.py`` prints
what ``python script.py`` prints and exits with the same status. For every entry of the list
(``bench/compat/corpus.toml``, laid out in FOLDER by ``bench/compat/assemble.py``) the runner
makes a scratch copy of the entry's folder for each run (files a run writes never reach the
next), runs the list's setup scripts there, and runs the script

* locally: ``python SCRIPT ARGS``, with this interpreter;
* embedded: ``python -m tether run --remote MOD... -- python SCRIPT ARGS``, the project's CLI
  from the same environment (it starts its own acceptor on loopback);
* zero-install (``--zero-install``): the same command from ``FOLDER/.venv-client``, a venv
  with this checkout's tether and the list's ``requires`` but no torch, against one
  ``tether serve`` started from this environment in another folder.

Every run gets ``OMP_NUM_THREADS=1``, ``PYTHONHASHSEED=0`` and ``MPLBACKEND=Agg`` (the entry's
``env`` adds to these), runs in its own session, and is bounded: on timeout its whole
process group is killed. Outputs are compared on stdout after blanking the entry's ``mask``
regexes (timing fields) and hex addresses: ``exact`` wants the same lines, ``shape`` the same
number of lines with every number masked, ``last`` the same last line with every number
masked (unseeded searches whose length varies); all want the same exit status.

Exit status: 0 when every selected entry ran identically in every mode, 1 otherwise, 2 on bad
arguments or when the corpus folder or list cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

if __package__ in (None, ""):  # run as `python bench/compat.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compat_corpus import (
    COMPAT_DIR,
    DEFAULT_LIST,
    Corpus,
    CorpusError,
    Entry,
    load,
)
from bench.peers import sandbox_args

REPO = Path(__file__).resolve().parents[1]
BASE_ENV = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
# Blanked in every output: object addresses differ between any two runs.
ALWAYS_MASK = (r"0x[0-9a-fA-F]{6,}",)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")
MIN_REMOTE_TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 120.0
PIP_TIMEOUT_S = 900.0
ACCEPTOR_START_TIMEOUT_S = 90.0
CLIENT_VENV = ".venv-client"
# How the scratch copy is kept from the previous run's leftovers.
_IGNORE = shutil.ignore_patterns("__pycache__")

# Outcome of one mode of one entry, best first.
IDENTICAL, DIFFERS, FAILS, TIMEOUT, BROKEN, MISSING = (
    "identical", "differs", "fails", "timeout", "broken", "missing",
)  # fmt: skip


class CompatError(Exception):
    """The runner cannot do its job (no corpus folder, no client venv...): say what to do."""


# --------------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished (or killed) subprocess."""

    argv: tuple[str, ...]
    status: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def run_bounded(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float) -> Run:
    """Run ``argv`` in its own session; on timeout kill its whole process group.

    Output goes to files, not pipes, so a grandchild that outlives the child (an acceptor
    that detached) cannot keep this waiting; the group is killed after a normal exit too.
    """
    out_path, err_path = cwd.parent / f".{cwd.name}.out", cwd.parent / f".{cwd.name}.err"
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            proc.wait()
    seconds = time.monotonic() - started
    stdout = out_path.read_bytes().decode("utf-8", errors="replace")
    stderr = err_path.read_bytes().decode("utf-8", errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Run(tuple(argv), proc.returncode, stdout, stderr, seconds, timed_out)


def run_captured(argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(capture_output=True, text=True)``, but in its own session, and on
    timeout its whole process group is killed (pip's build helpers included) before
    ``TimeoutExpired`` is raised."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise
    finally:
        _kill_group(proc.pid)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def child_env(python: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Ours, less what steers Tether or Python's path, plus the corpus's fixed settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    env.update(BASE_ENV)
    env.update(extra)
    return env


def prepare(entry: Entry, folder: Path, scratch: Path, label: str) -> Path:
    """A private copy of the entry's folder for one run; returns the run's cwd.

    Applies the entry's substitutions to the copy of its script and runs its setup
    scripts plainly there, with this interpreter (it has torch: setup makes the data
    every mode starts from, whichever client runs the script); raises CompatError if a
    setup script fails.
    """
    python = sys.executable
    dest = scratch / f"{entry.name}-{label}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder / entry.name, dest, ignore=_IGNORE)
    script = dest.joinpath(*PurePosixPath(entry.path).parts)
    if entry.subst:
        text = script.read_text(encoding="utf-8")
        for pattern, replacement in entry.subst:
            text, count = re.subn(pattern, replacement, text)
            if count == 0:
                raise CompatError(f"{entry.name}: substitution {pattern!r} matched nothing")
        script.write_text(text, encoding="utf-8")
    cwd = dest.joinpath(*PurePosixPath(entry.run_dir).parts)
    for rel in entry.mkdirs:
        (cwd / rel).mkdir(parents=True, exist_ok=True)
    for step in entry.setup:
        argv = [python, *(arg.replace("{compat}", str(COMPAT_DIR)) for arg in step)]
        done = run_bounded(argv, cwd=cwd, env=child_env(python, entry.env), timeout=SETUP_TIMEOUT_S)
        if done.status != 0:
            raise CompatError(f"setup {' '.join(step)} failed: {last_line(done.stderr)}")
    return cwd


# --------------------------------------------------------------------------- comparing


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def normalise(entry: Entry, text: str) -> list[str]:
    """stdout as the comparison sees it: masks blanked, numbers too in ``shape`` and
    ``last`` modes (``last`` keeps only the last non-blank line)."""
    patterns = [re.compile(p) for p in (*ALWAYS_MASK, *entry.mask)]
    lines = []
    for line in text.splitlines():
        for rx in patterns:
            line = rx.sub("<masked>", line)
        if entry.compare != "exact":
            line = " ".join(_NUMBER.sub("#", line).split())
        lines.append(line.rstrip())
    if entry.compare == "last":
        lines = [line for line in lines if line.strip()][-1:]
    return lines


@dataclasses.dataclass(frozen=True)
class Verdict:
    result: str
    detail: str = ""


def compare(entry: Entry, local: Run, remote: Run) -> Verdict:
    """How ``remote`` measures up to ``local`` under the entry's comparison mode."""
    if remote.timed_out:
        tail = last_line(remote.stderr) or last_line(remote.stdout)
        return Verdict(TIMEOUT, f"killed after {remote.seconds:.0f}s; last: {tail}")
    want, got = normalise(entry, local.stdout), normalise(entry, remote.stdout)
    if remote.status != local.status:
        return Verdict(FAILS, f"exit {remote.status}: {last_line(remote.stderr)}")
    for i, (a, b) in enumerate(zip(want, got, strict=False)):
        if a != b:
            return Verdict(DIFFERS, f"line {i + 1}: {a[:60]!r} != {b[:60]!r}")
    if len(want) != len(got):
        i = min(len(want), len(got))
        extra = (want + got)[i] if i < max(len(want), len(got)) else ""
        return Verdict(
            DIFFERS, f"{len(want)} lines locally, {len(got)} remotely; line {i + 1}: {extra[:60]!r}"
        )
    if local.status != 0 and last_line(local.stderr) != last_line(remote.stderr):
        return Verdict(DIFFERS, f"stderr ends {last_line(remote.stderr)!r}")
    return Verdict(IDENTICAL)


# --------------------------------------------------------------------------- modes


@dataclasses.dataclass(frozen=True)
class Mode:
    """How one remote run is launched: a python and the options before ``--remote``."""

    name: str
    python: str
    options: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def argv(self, entry: Entry) -> list[str]:
        return [
            self.python, "-m", "tether", "run", *self.options, *entry.remote_flags(), "--",
            self.python, *entry.python_args,
        ]  # fmt: skip


def _client_probe(python: Path, requires: Sequence[str] = ()) -> str | None:
    """None when ``python`` is a torch-less client venv running this checkout's tether."""
    code = (
        "import importlib.metadata, importlib.util, tether, cloudpickle;"
        "assert importlib.util.find_spec('torch') is None, 'torch is importable';"
        f"[importlib.metadata.version(n) for n in {list(requires)!r}];"
        "print(tether.__file__)"
    )
    if not python.exists():
        return f"{python} does not exist"
    try:
        done = run_captured([str(python), "-c", code], timeout=120)
    except subprocess.TimeoutExpired:
        return "the probe timed out"
    if done.returncode != 0:
        return last_line(done.stderr)
    if not Path(done.stdout.strip()).is_relative_to(REPO / "src"):
        return f"it runs tether from {done.stdout.strip()}, not {REPO / 'src'}"
    return None


def _pins(names: Sequence[str]) -> list[str]:
    """``name==version`` as installed here (so both sides agree), or the bare name."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def client_venv(folder: Path, corpus: Corpus) -> Path:
    """``FOLDER/.venv-client/bin/python``: tether (editable), the list's requires, no torch."""
    venv = folder / CLIENT_VENV
    python = venv / "bin" / "python"
    wanted = [r for r in corpus.requires if r.lower() != "torch"]
    if _client_probe(python, wanted) is None:
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)],
    ]
    if _client_probe(python) is None:
        steps = []  # a good venv that lacks some of the list's packages: add them
    steps.append(
        [str(python), "-m", "pip", "install", "-q", *_pins(["cloudpickle", "numpy", *wanted])]
    )
    for argv in steps:
        print(f"[compat] {' '.join(argv)}", file=sys.stderr, flush=True)
        try:
            done = run_captured(argv, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise CompatError(f"building the client venv timed out: {argv}") from exc
        if done.returncode != 0:
            raise CompatError(f"building the client venv failed: {argv}\n{done.stderr[-2000:]}")
    problem = _client_probe(python, wanted)
    if problem is not None:
        raise CompatError(f"the client venv {venv} is not torch-less Tether: {problem}")
    return python


@contextlib.contextmanager
def acceptor(scratch: Path) -> Iterator[tuple[str, Path]]:
    """A ``tether serve`` on loopback from this environment (it has torch): (url, token file)."""
    root = scratch / "acceptor"
    root.mkdir()
    token, ready, log = root / "token", root / "ready", root / "serve.log"
    argv = [
        sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
        "--token-file", str(token), "--ready-file", str(ready), *sandbox_args(),
    ]  # fmt: skip
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=child_env(sys.executable, {}),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + ACCEPTOR_START_TIMEOUT_S
        while not (ready.exists() and ready.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CompatError(f"tether serve did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield ready.read_text().strip(), token
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        _kill_group(proc.pid)
        proc.wait()


# --------------------------------------------------------------------------- one entry


@dataclasses.dataclass
class Row:
    """Everything the table and the JSON say about one entry."""

    name: str
    repo: str
    compare: str
    local_s: float | None = None
    local_status: int | None = None
    # With --check-local: whether a second plain run printed the same (it must, for exact).
    local_repeat: str | None = None
    results: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def run_entry(
    entry: Entry,
    folder: Path,
    scratch: Path,
    modes: Sequence[Mode],
    remote_factor: float,
    check_local: bool = False,
) -> Row:
    row = Row(entry.name, entry.repo, entry.compare)
    if not (folder / entry.name).is_dir():
        for mode in modes:
            row.results[mode.name] = {"result": MISSING, "detail": "not laid out: run assemble"}
        return row
    python = sys.executable
    try:
        local = run_bounded(
            [python, *entry.python_args],
            cwd=prepare(entry, folder, scratch, "local"),
            env=child_env(python, entry.env),
            timeout=entry.timeout,
        )
    except CompatError as exc:
        for mode in modes:
            row.results[mode.name] = {"result": BROKEN, "detail": str(exc)}
        return row
    row.local_s, row.local_status = local.seconds, local.status
    if local.timed_out or local.status != 0:
        why = "timed out" if local.timed_out else f"exit {local.status}"
        detail = f"the plain run itself {why}: {last_line(local.stderr)}"
        for mode in modes:
            row.results[mode.name] = {"result": BROKEN, "detail": detail}
        return row
    if check_local:
        again = run_bounded(
            [python, *entry.python_args],
            cwd=prepare(entry, folder, scratch, "local2"),
            env=child_env(python, entry.env),
            timeout=entry.timeout,
        )
        verdict = compare(entry, local, again)
        row.local_repeat = f"{verdict.result} {verdict.detail}".strip()
    timeout = max(entry.timeout * remote_factor, MIN_REMOTE_TIMEOUT_S)
    for mode in modes:
        try:
            cwd = prepare(entry, folder, scratch, mode.name)
        except CompatError as exc:
            row.results[mode.name] = {"result": BROKEN, "detail": str(exc)}
            continue
        env = child_env(mode.python, {**entry.env, **mode.env})
        remote = run_bounded(mode.argv(entry), cwd=cwd, env=env, timeout=timeout)
        verdict = compare(entry, local, remote)
        row.results[mode.name] = {
            "result": verdict.result,
            "detail": verdict.detail,
            "seconds": round(remote.seconds, 2),
            "ratio": round(remote.seconds / local.seconds, 2) if local.seconds else None,
            "status": remote.status,
            "stderr_tail": remote.stderr[-3000:] if verdict.result != IDENTICAL else "",
        }
    return row


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(rows: Sequence[Row], modes: Sequence[Mode], out: TextIO) -> None:
    """The table (one line per entry and mode), then ``N/M identical`` per mode."""
    width = max([len(r.name) for r in rows] + [6])
    header = f"{'script':{width}s} {'mode':12s} {'local s':>8s} {'remote s':>9s} {'ratio':>6s}"
    print(f"{header}  {'result':9s}  detail", file=out)
    for row in rows:
        for mode in modes:
            res = row.results.get(mode.name, {})
            print(
                f"{row.name:{width}s} {mode.name:12s} {_fmt(row.local_s, '8.2f')} "
                f"{_fmt(res.get('seconds'), '9.2f')} {_fmt(res.get('ratio'), '6.1f')}  "
                f"{res.get('result', '-'):9s}  {res.get('detail', '')}",
                file=out,
            )
    for mode in modes:
        same = sum(1 for r in rows if r.results.get(mode.name, {}).get("result") == IDENTICAL)
        print(f"{mode.name}: {same}/{len(rows)} identical", file=out)


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="the corpus folder (bench/compat/assemble.py)")
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST, help="the corpus list")
    parser.add_argument("-k", metavar="PATTERN", help="only entries whose name matches (regex)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-')")
    parser.add_argument(
        "--zero-install", action="store_true", help="also run from a client venv without torch"
    )
    parser.add_argument(
        "--no-embedded", action="store_true", help="skip the embedded tether run mode"
    )
    parser.add_argument(
        "--remote-timeout-factor", type=float, default=4.0,
        help="a remote run's timeout is this times the entry's (at least 60 s)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--check-local", action="store_true",
        help="run each script plainly twice and say whether it repeats (for curating the list)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        corpus = load(args.list)
    except CorpusError as exc:
        parser.error(str(exc))
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder: lay it out with bench/compat/assemble.py")
    folder = args.folder.resolve()
    try:
        selector = re.compile(args.k) if args.k else None
    except re.error as exc:
        parser.error(f"-k {args.k!r} is not a regex: {exc}")
    entries = [e for e in corpus.entries if selector is None or selector.search(e.name)]
    if not entries:
        parser.error("no entry of the list is selected")
    if args.no_embedded and not args.zero_install:
        parser.error("--no-embedded leaves no mode to run; add --zero-install")
    scratch = Path(tempfile.mkdtemp(prefix="tether-compat-"))
    rows: list[Row] = []
    # Stopped (SIGTERM, as timeout(1) and CI stop it): unwind as for an error, so the
    # running script's group, the acceptor and the scratch folder go with the runner.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        with contextlib.ExitStack() as stack:
            modes = [] if args.no_embedded else [Mode("embedded", sys.executable)]
            if args.zero_install:
                python = client_venv(folder, corpus)
                url, token = stack.enter_context(acceptor(scratch))
                options = ("--connect", url, "--token-file", str(token))
                modes.append(Mode("zero-install", str(python), options))
            for entry in entries:
                row = run_entry(
                    entry, folder, scratch, modes, args.remote_timeout_factor, args.check_local
                )
                rows.append(row)
                summary = ", ".join(f"{m}: {r['result']}" for m, r in row.results.items())
                if row.local_repeat is not None:
                    summary += f"; local twice: {row.local_repeat}"
                print(f"[compat] {entry.name}: {summary}", file=sys.stderr, flush=True)
    except CompatError as exc:
        print(f"compat: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"[compat] scratch kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows, modes, sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        payload = json.dumps([dataclasses.asdict(r) for r in rows], indent=1)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload + "\n")
    ok = all(res["result"] == IDENTICAL for r in rows for res in r.results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
