"""Lay the compatibility corpus out in a folder, from local git mirrors; fetches nothing.

    python bench/compat/assemble.py /work/corpus                  # mirrors under /work/.mirror
    python bench/compat/assemble.py /work/corpus --mirror karpathy/makemore=/src/makemore.git

Every entry of ``bench/compat/corpus.toml`` becomes ``FOLDER/<name>/`` holding the entry's
script and the extra files it lists, at their repository paths, read from the listed
commit with ``git cat-file`` (the files are byte for byte the repository's; substitutions
the list records are applied by the runner to a scratch copy, never here). A repository's
git directory is found as ``--mirror OWNER/NAME=GITDIR`` or, failing that, as
``MIRROR_ROOT/OWNER+NAME/repo`` (how the search tool's ``fetch`` stores snapshots); any
bare or ordinary clone that has the commit will do. ``FOLDER/MANIFEST.json`` records what
was laid out, from where.

Exit status: 0 when every entry was laid out, 1 when some could not be (each is named with
the reason: no mirror, commit or file missing), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.compat_corpus import DEFAULT_LIST, CorpusError, Entry, load

DEFAULT_MIRROR_ROOT = Path("/work/.mirror")
GIT_TIMEOUT_S = 60.0


class AssembleError(Exception):
    """One entry could not be laid out; the message says what is missing."""


def _git(gitdir: Path, *argv: str) -> bytes:
    done = subprocess.run(
        ["git", f"--git-dir={gitdir}", *argv],
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise AssembleError(f"git {' '.join(argv)} in {gitdir}: {done.stderr.decode().strip()}")
    return done.stdout


def find_mirror(repo: str, explicit: dict[str, Path], root: Path) -> Path:
    """The git directory that holds ``repo`` (``owner/name``)."""
    if repo in explicit:
        return explicit[repo]
    candidate = root / repo.replace("/", "+") / "repo"
    if candidate.is_dir():
        return candidate
    raise AssembleError(f"no mirror of {repo}: fetch it, or pass --mirror {repo}=GITDIR")


def _blobs(gitdir: Path, commit: str, path: str) -> list[str]:
    """The file paths at ``path`` in ``commit``: itself if a file, all below it if a folder."""
    kind = _git(gitdir, "cat-file", "-t", f"{commit}:{path}").decode().strip()
    if kind == "blob":
        return [path]
    if kind != "tree":
        raise AssembleError(f"{path} at {commit[:12]} is a {kind}, not a file or folder")
    listing = _git(gitdir, "ls-tree", "-r", "-z", "--name-only", commit, "--", path)
    return [p for p in listing.decode().split("\0") if p]


def lay_out(entry: Entry, gitdir: Path, folder: Path) -> list[str]:
    """Write ``entry``'s files under ``folder/<name>``; return the repo paths written."""
    _git(gitdir, "cat-file", "-e", f"{entry.commit}^{{commit}}")
    dest = folder / entry.name
    if dest.exists():
        shutil.rmtree(dest)
    written: list[str] = []
    for item in (entry.path, *entry.files):
        for path in _blobs(gitdir, entry.commit, item):
            data = _git(gitdir, "cat-file", "blob", f"{entry.commit}:{path}")
            target = dest.joinpath(*PurePosixPath(path).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(path)
    (dest / entry.run_dir).mkdir(parents=True, exist_ok=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to lay the corpus out")
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST, help="the corpus list")
    parser.add_argument("--mirror-root", type=Path, default=DEFAULT_MIRROR_ROOT)
    parser.add_argument(
        "--mirror", action="append", default=[], metavar="OWNER/NAME=GITDIR",
        help="the git directory of one repository (repeatable)",
    )  # fmt: skip
    parser.add_argument("-k", metavar="SUBSTRING", help="only entries whose name contains it")
    args = parser.parse_args(argv)
    explicit: dict[str, Path] = {}
    for item in args.mirror:
        repo, sep, gitdir = item.partition("=")
        if not sep or repo.count("/") != 1:
            parser.error(f"--mirror wants OWNER/NAME=GITDIR, not {item!r}")
        explicit[repo] = Path(gitdir)
    try:
        corpus = load(args.list)
    except CorpusError as exc:
        parser.error(str(exc))
    args.folder.mkdir(parents=True, exist_ok=True)
    manifest_path = args.folder / "MANIFEST.json"
    manifest: dict[str, object] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    failed = 0
    for entry in corpus.entries:
        if args.k and args.k not in entry.name:
            continue
        try:
            gitdir = find_mirror(entry.repo, explicit, args.mirror_root)
            written = lay_out(entry, gitdir, args.folder)
        except (AssembleError, subprocess.TimeoutExpired) as exc:
            failed += 1
            print(f"FAILED {entry.name}: {exc}", file=sys.stderr)
            continue
        manifest[entry.name] = {
            "repo": entry.repo, "commit": entry.commit, "path": entry.path, "files": written,
        }  # fmt: skip
        print(f"{entry.name:28s} {entry.repo}@{entry.commit[:12]} {len(written)} files")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(1 for e in corpus.entries if not args.k or args.k in e.name)
    print(f"{total - failed}/{total} entries laid out in {args.folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
