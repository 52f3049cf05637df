"""The compatibility corpus list (``bench/compat/corpus.toml``): reading it into typed entries.

The list names real public scripts by repository, commit and path; the scripts themselves
are never committed (``bench/compat/assemble.py`` lays them out from local git mirrors,
``bench/compat.py`` runs them). This module is the one place that knows the list's format:

.. code-block:: toml

    requires = ["scikit-learn"]          # what the scripts import besides torch and numpy

    [defaults]                           # any entry key; an entry's own value wins
    timeout = 120

    [repos]
    "karpathy/makemore" = "988aa59e..."  # the commit every entry of that repo uses

    [[script]]
    name = "makemore_bigram"             # unique; the folder's name in the corpus
    repo = "karpathy/makemore"
    path = "makemore.py"                 # the script, relative to the repository root
    files = ["names.txt"]                # more files or folders of the same commit it needs
    cwd = "."                            # where it runs (default: the script's folder)
    args = ["--max-steps", "200"]
    command = ["-m", "pytest", "-q"]     # instead of [script, *args]: what follows "python"
    env = { PYTHONPATH = "." }
    remote = ["torch"]                   # the --remote modules under tether run
    compare = "exact"                    # or "shape", or "last"
    mask = ['\\d+\\.\\d+ms']             # regexes blanked in both outputs before comparing
    timeout = 60                         # seconds for the plain run (the remote one: scaled)
    setup = [["generate.py"]]            # python scripts run (plainly) before each run;
                                         # "{compat}/x.py" names our own bench/compat/x.py
    subst = [["5000", "50"]]             # regex, replacement: applied to a scratch copy
    mkdirs = ["../images"]               # empty folders the script writes into
    note = "why this entry is set up as it is"

Contract: :func:`load` returns every entry fully resolved (defaults applied, the commit
filled in from ``[repos]``), or raises :class:`CorpusError` naming the entry and key at
fault; it never touches the network or the corpus folder.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
COMPAT_DIR = HERE / "compat"
DEFAULT_LIST = COMPAT_DIR / "corpus.toml"

Compare = Literal["exact", "shape", "last"]
_COMPARES: tuple[Compare, ...] = ("exact", "shape", "last")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEYS = {
    "name", "repo", "commit", "path", "files", "cwd", "args", "command", "env", "remote", "compare",
    "mask", "timeout", "setup", "subst", "mkdirs", "note",
}  # fmt: skip


class CorpusError(ValueError):
    """The corpus list is malformed; the message names the entry and the key."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One script of the corpus, as the list describes it (paths are POSIX, repo-relative)."""

    name: str
    repo: str
    commit: str
    path: str
    files: tuple[str, ...] = ()
    cwd: str = ""
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    remote: tuple[str, ...] = ("torch",)
    compare: Compare = "exact"
    mask: tuple[str, ...] = ()
    timeout: float = 120.0
    setup: tuple[tuple[str, ...], ...] = ()
    subst: tuple[tuple[str, str], ...] = ()
    mkdirs: tuple[str, ...] = ()
    note: str = ""

    @property
    def run_dir(self) -> str:
        """The working directory of a run, relative to the entry's folder."""
        return self.cwd or str(PurePosixPath(self.path).parent)

    @property
    def script_arg(self) -> str:
        """The script as the command line names it, relative to :attr:`run_dir`."""
        rel = _relpath(PurePosixPath(self.path), PurePosixPath(self.run_dir))
        return str(rel)

    @property
    def python_args(self) -> tuple[str, ...]:
        """What follows ``python`` on the command line: ``command``, or the script and args."""
        return self.command or (self.script_arg, *self.args)

    def remote_flags(self) -> list[str]:
        return [flag for module in self.remote for flag in ("--remote", module)]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The whole list: the entries in file order and the extra packages they import."""

    entries: tuple[Entry, ...]
    requires: tuple[str, ...]
    source: Path

    @property
    def repos(self) -> dict[str, str]:
        """repository -> commit, for every repository some entry uses."""
        return {e.repo: e.commit for e in self.entries}


def _relpath(target: PurePosixPath, start: PurePosixPath) -> PurePosixPath:
    """``target`` relative to ``start`` (both relative to the same root), with ``..``."""
    t, s = [p for p in target.parts if p != "."], [p for p in start.parts if p != "."]
    common = 0
    while common < min(len(t), len(s)) and t[common] == s[common]:
        common += 1
    return PurePosixPath(*([".."] * (len(s) - common)), *t[common:])


def _strs(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorpusError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _safe_rel(where: str, key: str, value: str, *, up: bool = False) -> str:
    """A relative POSIX path that cannot climb out of the entry's folder (``..`` if ``up``)."""
    p = PurePosixPath(value)
    if p.is_absolute() or (not up and ".." in p.parts) or "\\" in value:
        raise CorpusError(f"{where}: {key} {value!r} must be a relative path inside the repo")
    return value


def _entry(raw: Mapping[str, Any], defaults: Mapping[str, Any], repos: Mapping[str, str]) -> Entry:
    merged = {**defaults, **raw}
    name = merged.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CorpusError(f"script {raw!r}: name must be a simple file name")
    where = f"script {name!r}"
    unknown = set(merged) - _KEYS
    if unknown:
        raise CorpusError(f"{where}: unknown keys {sorted(unknown)}")
    repo, path = merged.get("repo"), merged.get("path")
    if not isinstance(repo, str) or repo.count("/") != 1:
        raise CorpusError(f"{where}: repo must be 'owner/name'")
    if not isinstance(path, str):
        raise CorpusError(f"{where}: path is required")
    commit = merged.get("commit", repos.get(repo))
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise CorpusError(f"{where}: no 40-hex commit for {repo} (set [repos] or commit)")
    compare = merged.get("compare", "exact")
    if compare not in _COMPARES:
        raise CorpusError(f"{where}: compare must be one of {_COMPARES}")
    env = merged.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise CorpusError(f"{where}: env must be a table of strings")
    mask = _strs(where, "mask", merged.get("mask", []))
    for rx in mask:
        try:
            re.compile(rx)
        except re.error as exc:
            raise CorpusError(f"{where}: mask {rx!r} is not a regex: {exc}") from exc
    subst_raw = merged.get("subst", [])
    subst = tuple(tuple(_strs(where, "subst", pair)) for pair in subst_raw)
    if any(len(pair) != 2 for pair in subst):
        raise CorpusError(f"{where}: subst items are [regex, replacement] pairs")
    timeout = merged.get("timeout", 120)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise CorpusError(f"{where}: timeout must be a positive number of seconds")
    files = _strs(where, "files", merged.get("files", []))
    mkdirs = _strs(where, "mkdirs", merged.get("mkdirs", []))
    return Entry(
        name=name,
        repo=repo,
        commit=commit,
        path=_safe_rel(where, "path", path),
        files=tuple(_safe_rel(where, "files", f) for f in files),
        cwd=_safe_rel(where, "cwd", str(merged.get("cwd", ""))),
        args=_strs(where, "args", merged.get("args", [])),
        command=_strs(where, "command", merged.get("command", [])),
        env=dict(env),
        remote=_strs(where, "remote", merged.get("remote", ["torch"])),
        compare=compare,
        mask=mask,
        timeout=float(timeout),
        setup=tuple(_strs(where, "setup", s) for s in merged.get("setup", [])),
        subst=tuple((a, b) for a, b in subst),
        mkdirs=tuple(_safe_rel(where, "mkdirs", d, up=True) for d in mkdirs),
        note=str(merged.get("note", "")),
    )


def load(path: Path = DEFAULT_LIST) -> Corpus:
    """Read and validate the list at ``path`` (see the module docstring for the format)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CorpusError(f"cannot read the corpus list {path}: {exc}") from exc
    defaults = data.get("defaults", {})
    repos = data.get("repos", {})
    entries = tuple(_entry(raw, defaults, repos) for raw in data.get("script", []))
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CorpusError(f"{path}: duplicate script names {dupes}")
    requires = _strs("the list", "requires", data.get("requires", []))
    return Corpus(entries=entries, requires=requires, source=path)
