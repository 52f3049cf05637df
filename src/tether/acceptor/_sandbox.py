"""A sandbox for each session's worker: its own uid, namespaces and private dir.

(Over 400 lines on purpose: the threat model below and every piece of the cell it
argues for, from bwrap's arguments to the scrubbed environment, the uid pool and the
sweep of a crashed acceptor's cells, are reviewed together; the device nodes a cell
gets are in :mod:`tether.acceptor._devnodes`.)

Theory of operation
-------------------
A worker runs whatever code its client ships, so it is treated as hostile to
everything but its own session. Each worker is started through bubblewrap
(``bwrap``, Debian package ``bubblewrap``) and, when the acceptor is root,
util-linux's ``setpriv``::

    bwrap --die-with-parent --unshare-{pid,ipc,net,uts,cgroup} --new-session
          --ro-bind / /  --proc /proc  --dev /dev  [--dev-bind <device nodes>]
          --tmpfs <masked dirs>  --bind <cell dir> /tmp  --ro-bind <python, tether>
          --ro-bind /dev/null <secret files>  --chdir /tmp
      -- setpriv --reuid U --regid U --clear-groups --inh-caps -all
                 --bounding-set -all --no-new-privs -- python -m tether.acceptor._worker ...

What that gives the session (the *cell*):

* **Its own uid** (``Mode.UIDS``, root acceptors): a distinct unprivileged
  uid and gid per live session from a configured range, with no
  supplementary groups and no capabilities, so the kernel's ordinary
  permission checks keep it out of other workers' processes and files and out
  of the acceptor's mode-600 files. setpriv drops to it *inside* the
  namespaces bwrap made as root: a user namespace made by root would map the
  inside uid to root outside, which owns those files.
* **Its own PID namespace**: other workers and the acceptor have no pid it
  could name (``/proc`` shows the cell's processes only), so it can neither
  signal, ptrace nor read ``/proc/PID/{mem,environ,cmdline}`` of anything
  outside.
* **No network** of its own (a fresh network namespace with only a down
  loopback): the worker talks to its client over the socket it inherited,
  which keeps working; it cannot reach the pool, the acceptor's other ports,
  abstract Unix sockets or anything else.
* **A read-only view of the host** with ``/tmp``, ``/var/tmp``, ``/run``, the
  acceptor's home and the operator's secret files masked. ``/tmp`` is the
  cell's private directory (mode 700, owned by its uid, on disk under the
  acceptor's state directory, removed when the session ends); ``HOME`` and
  ``TMPDIR`` point there, so the worker's scratch files (acceptor/_files.py)
  land in it.
* **Only the device nodes of its slice** on top of a minimal ``/dev``: none
  for a CPU slice, its own ``/dev/nvidiaN`` (and the driver's control nodes)
  for whole NVIDIA GPUs, every GPU node for a session without a slice (see
  :func:`slice_device_nodes`).
* **A seccomp filter** (acceptor/_seccomp.py, compiled by libseccomp,
  installed by bwrap) denying ``ptrace``, ``process_vm_readv``/``writev``,
  new namespaces and other kernel surfaces a session never needs.
* **NO_NEW_PRIVS**, and death with the acceptor: bwrap's
  ``--die-with-parent`` kills the cell's init when the acceptor dies, and the
  PID namespace takes every process of the cell with it.

An unprivileged acceptor (``Mode.USERNS``) cannot switch uids: bwrap then makes
a user namespace (same uid outside as the acceptor), with the same namespaces,
masks and cell; the acceptor's home and secret files are masked rather than
protected by ownership, which is weaker (see docs/security.md).

The argv is built by a pure function (:func:`cell_argv`) from a
:class:`CellPlan`; :class:`Sandbox` does the I/O around it: it checks the
tools, allocates uids and cell directories, probes once at start that a
worker can start inside, and removes what a session left behind.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether._errors import TetherError
from tether.acceptor._devnodes import device_nodes, mps_dirs, nvidia_minors, slice_device_nodes
from tether.acceptor._seccomp import SeccompUnavailable, compile_filter

#: Per-session uids of a root acceptor unless --worker-uids says otherwise.
DEFAULT_UIDS = range(61000, 62000)
#: Host paths no cell sees (besides the acceptor's home): writable scratch of
#: other users and the run-time sockets of host services (a PostgreSQL socket
#: with trust auth, a container runtime's socket).
MASKED_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run")
#: Device nodes a framework needs to drive the host's GPUs.
#: The slice's variable (acceptor/_limits.py); read here without importing it.
SLICE_ENV = "TETHER_SLICE"
#: Inside the cell: its private directory.
CELL_DIR = "/tmp"
#: Environment names that look like credentials never reach a worker.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE_?KEY", re.I)
#: Variables the acceptor sets for the worker that must survive scrubbing.
_KEEP = frozenset({"TETHER_SLICE", "TETHER_POOL_SESSION", "TETHER_SPIN_US", "TETHER_MAX_FRAME"})
#: How long the start-up probe may take (importing the worker's modules).
PROBE_TIMEOUT_S = 60.0


class SandboxError(TetherError):
    """The acceptor cannot sandbox its workers; the message says what to do."""


class Mode(enum.Enum):
    #: Root acceptor: a distinct uid per session (setpriv inside bwrap).
    UIDS = "uids"
    #: Unprivileged acceptor: bwrap's user namespace, the acceptor's own uid outside.
    USERNS = "userns"


@dataclass(frozen=True, slots=True, kw_only=True)
class CellPlan:
    """Everything :func:`cell_argv` needs for one worker; no I/O behind it."""

    mode: Mode
    uid: int
    cell_dir: str
    masked_dirs: tuple[str, ...]
    exposed: tuple[str, ...]
    secret_files: tuple[str, ...]
    devices: tuple[str, ...]
    writable: tuple[str, ...] = ()
    seccomp_fd: int | None = None
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"


def cell_argv(plan: CellPlan, argv: Sequence[str]) -> list[str]:
    """The command that runs ``argv`` in the cell ``plan`` describes.

    Mount order matters: the host read-only first, then the masks over it, the
    cell as ``/tmp``, the paths the worker needs re-exposed through the masks,
    and last the secret files, so a secret inside an exposed path stays hidden.
    """
    cmd = [
        plan.bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if plan.seccomp_fd is not None:
        cmd += ["--seccomp", str(plan.seccomp_fd)]
    if plan.mode is Mode.USERNS:
        cmd += ["--unshare-user", "--disable-userns", "--uid", str(plan.uid)]
        cmd += ["--gid", str(plan.uid), "--cap-drop", "ALL"]
    cmd += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    # POSIX shared memory and semaphores (torch's DataLoader workers, multiprocessing
    # locks): a tmpfs of the cell's own, writable as the host's /dev/shm is.
    cmd += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    for dev in plan.devices:
        cmd += ["--dev-bind-try", dev, dev]
    for masked in plan.masked_dirs:
        if masked != CELL_DIR:
            cmd += ["--tmpfs", masked]
    cmd += ["--bind", plan.cell_dir, CELL_DIR]
    # bwrap would make the mount points' parents inside a mask mode 700 (root's):
    # the cell's uid could then not reach what is mounted on them.
    for parent in _parents_inside((*plan.exposed, *plan.writable), (*plan.masked_dirs, CELL_DIR)):
        cmd += ["--perms", "0755", "--dir", parent]
    for path in plan.exposed:
        cmd += ["--ro-bind-try", path, path]
    for path in plan.writable:
        cmd += ["--bind-try", path, path]
    for path in plan.secret_files:
        # /dev/null on a nodev bind: opening it fails with EACCES.
        cmd += ["--ro-bind", "/dev/null", path]
    cmd += ["--chdir", CELL_DIR, "--"]
    if plan.mode is Mode.UIDS:
        cmd += [
            plan.setpriv,
            f"--reuid={plan.uid}",
            f"--regid={plan.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return cmd + list(argv)


def scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that look like credentials (the acceptor's
    node token, database passwords, cloud keys): a worker runs its client's code."""
    return {k: v for k, v in env.items() if k in _KEEP or not _SECRET_NAME.search(k)}


def cell_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a worker in a cell: credentials out, home and temp in the cell."""
    out = scrub_env(env)
    out.update(HOME=CELL_DIR, TMPDIR=CELL_DIR, TMP=CELL_DIR, TEMP=CELL_DIR)
    out.pop("PWD", None)
    return out


def parse_uid_range(text: str) -> range:
    """``"61000-61999"`` -> range(61000, 62000); raises ValueError with what is wrong."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if m is None:
        raise ValueError(f"{text!r} is not a uid range: give FIRST-LAST, e.g. 61000-61999")
    first, last = int(m[1]), int(m[2])
    if not 1000 <= first <= last < 2**31 - 1:
        raise ValueError(f"uid range {text!r}: need 1000 <= FIRST <= LAST (unprivileged uids)")
    return range(first, last + 1)


def _parents_inside(paths: Sequence[str], masks: Sequence[str]) -> list[str]:
    """The directories between each mask and each path inside it, outermost first."""
    out: list[str] = []
    for path in paths:
        for mask in masks:
            if _within(path, mask) and path != mask:
                rest = os.path.relpath(os.path.dirname(path), mask)
                parts = [] if rest == "." else rest.split(os.sep)
                for i in range(1, len(parts) + 1):
                    d = os.path.join(mask, *parts[:i])
                    if d not in out:
                        out.append(d)
                break
    return out


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def minimal_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """The paths, without those inside another one of them (sorted)."""
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths}):
        if not any(_within(p, q) for q in out):
            out.append(p)
    return tuple(out)


@dataclass(slots=True)
class Cell:
    """One session's sandbox: its uid and private directory on the host."""

    session: str
    uid: int
    path: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Descriptors the command needs inherited (the seccomp program).
    pass_fds: tuple[int, ...] = ()

    def close_fds(self) -> None:
        """Close :attr:`pass_fds` (once the command has started, or failed to)."""
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pass_fds = ()


class Sandbox:
    """Starts workers in cells; see the module docstring.

    Build one with :meth:`create`, which raises :class:`SandboxError` (saying
    what to do) when this host cannot sandbox. Thread-safe.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        uids: range,
        state_dir: Path,
        exposed: tuple[str, ...],
        masked_dirs: tuple[str, ...],
        secret_files: tuple[str, ...],
        bwrap: str,
        setpriv: str,
        seccomp: Path | None = None,
    ) -> None:
        self.mode = mode
        self.seccomp = seccomp
        self.uids = uids
        self.state_dir = state_dir
        self.exposed = exposed
        self.masked_dirs = masked_dirs
        self.secret_files = secret_files
        self.bwrap = bwrap
        self.setpriv = setpriv
        self.base_prefix = sys.base_prefix
        self._lock = threading.Lock()
        self._taken: dict[int, str] = {}

    @classmethod
    def create(
        cls,
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        uids: range | None = None,
        secret_files: Iterable[Path | str] = (),
        probe: bool = True,
    ) -> Sandbox:
        """A sandbox for workers run by ``python`` with ``env``.

        Root uses per-session uids from ``uids`` (default :data:`DEFAULT_UIDS`);
        anyone else a user namespace. ``secret_files`` are masked in every
        cell. With ``probe``, starts one cell that imports the worker's modules
        and raises :class:`SandboxError` if it cannot.
        """
        env = dict(os.environ if env is None else env)
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(
                "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap)"
            )
        root = os.geteuid() == 0
        setpriv = shutil.which("setpriv") or "setpriv"
        if root and shutil.which("setpriv") is None:
            raise SandboxError("setpriv is not installed: install util-linux")
        if not root and uids is not None:
            raise SandboxError(
                "--worker-uids needs a root acceptor (only root can switch uids): run as root, "
                "or leave --worker-uids out for a user-namespace sandbox"
            )
        home = pwd.getpwuid(os.geteuid()).pw_dir
        masked = minimal_paths(
            d
            for d in [*MASKED_DIRS, *([home] if home not in ("/", "") else [])]
            if os.path.isdir(d) and not os.path.islink(d)  # /var/run is often a link to /run
        )
        needed, base_prefix = _python_paths(python, env)
        exposed = tuple(p for p in needed if any(_within(p, m) for m in masked))
        secrets_ = tuple(sorted({os.path.realpath(os.fspath(p)) for p in secret_files}))
        _sweep_stale_state()
        state = Path(tempfile.mkdtemp(prefix=f"tether-cells-{os.getpid()}-"))
        state.chmod(0o711)  # cells are reached by their uid through it
        box = cls(
            mode=Mode.UIDS if root else Mode.USERNS,
            uids=uids if uids is not None else DEFAULT_UIDS if root else range(1000, 1001),
            state_dir=state,
            exposed=exposed,
            masked_dirs=masked,
            secret_files=tuple(s for s in secrets_ if _visible(s, masked, exposed)),
            bwrap=bwrap,
            setpriv=setpriv,
        )
        box.base_prefix = base_prefix
        try:
            compile_filter(state / "seccomp.bpf")
            box.seccomp = state / "seccomp.bpf"
        except SeccompUnavailable as exc:
            box.close()
            raise SandboxError(f"cannot build the seccomp filter: {exc}") from None
        if probe:
            try:
                box._probe(python, env)
            except BaseException:
                box.close()
                raise
        return box

    def describe(self) -> str:
        """One line for the acceptor's log."""
        if self.mode is Mode.UIDS:
            return (
                f"workers sandboxed: a uid per session from {self.uids.start}-"
                f"{self.uids.stop - 1}, own PID/IPC/network namespaces, private /tmp, seccomp"
            )
        return (
            "workers sandboxed (unprivileged acceptor): user, PID, IPC and network "
            "namespaces, private /tmp, seccomp, this user's home and secret files masked"
        )

    def open(self, session: str, argv: Sequence[str], env: Mapping[str, str]) -> Cell:
        """A new cell for ``session``: its uid, its directory, and the command.

        Raises SandboxError when every uid of the range is in use.
        """
        uid = self._take_uid(session)
        path = self.state_dir / session
        try:
            path.mkdir(mode=0o700)
            if self.mode is Mode.UIDS:
                os.chown(path, uid, uid)
        except OSError:
            self._free_uid(uid)
            raise
        seccomp_fd = os.open(self.seccomp, os.O_RDONLY) if self.seccomp is not None else None
        plan = CellPlan(
            mode=self.mode,
            uid=uid,
            cell_dir=str(path),
            masked_dirs=self.masked_dirs,
            exposed=self.exposed,
            secret_files=self.secret_files,
            devices=slice_device_nodes(env.get(SLICE_ENV), device_nodes(), nvidia_minors()),
            writable=mps_dirs(env),
            seccomp_fd=seccomp_fd,
            bwrap=self.bwrap,
            setpriv=self.setpriv,
        )
        fds = () if seccomp_fd is None else (seccomp_fd,)
        return Cell(session, uid, path, cell_argv(plan, argv), cell_env(env), fds)

    def release(self, cell: Cell) -> None:
        """Remove what the session left (after its worker exited) and free its uid.

        ``rmtree`` works through directory fds and never follows a link the
        worker planted.
        """
        cell.close_fds()
        shutil.rmtree(cell.path, ignore_errors=True)
        self._free_uid(cell.uid)

    def close(self) -> None:
        """Remove the state directory (every cell in it)."""
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _take_uid(self, session: str) -> int:
        if self.mode is Mode.USERNS:
            return self.uids.start  # the inside uid; all cells are the acceptor's uid outside
        with self._lock:
            busy = set(self._taken) | _uids_with_processes()
            for uid in self.uids:
                if uid not in busy:
                    self._taken[uid] = session
                    return uid
        raise SandboxError(
            f"all {len(self.uids)} worker uids ({self.uids.start}-{self.uids.stop - 1}) are in "
            "use: give --worker-uids a larger range"
        )

    def _free_uid(self, uid: int) -> None:
        with self._lock:
            self._taken.pop(uid, None)

    def _probe(self, python: str, env: Mapping[str, str]) -> None:
        code = "import sys, tether.acceptor._worker; print(sys.base_prefix)"
        cell = self.open("probe", [python, "-c", code], env)
        try:
            proc = subprocess.run(
                cell.argv,
                env=cell.env,
                pass_fds=cell.pass_fds,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(
                f"a sandboxed worker did not start within {PROBE_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            self.release(cell)
        who = f"uid {self.uids.start}" if self.mode is Mode.UIDS else "a user namespace"
        if proc.returncode == 0 and proc.stdout.strip() != self.base_prefix:
            raise SandboxError(
                f"a sandboxed worker ({who}) finds Python's standard library under "
                f"{proc.stdout.strip()!r}, not {self.base_prefix!r}: the uid cannot read "
                "the Python install; install it where that uid can read it"
            )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SandboxError(
                f"a sandboxed worker ({who}) cannot start: {detail}. Install Python and "
                "Tether where that uid can read them, or check that this kernel allows "
                "namespaces (bwrap)"
            )


def _visible(path: str, masked: Sequence[str], exposed: Sequence[str]) -> bool:
    """Whether ``path`` would be seen in a cell without a mask of its own."""
    if not os.path.exists(path):
        return False
    return not any(_within(path, m) for m in masked) or any(_within(path, e) for e in exposed)


def _python_paths(python: str, env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """What the worker's interpreter reads (its prefixes and ``sys.path``), and its
    ``sys.base_prefix``."""
    code = (
        "import sys, json, os, tether; print(json.dumps([sys.prefix, sys.base_prefix, "
        "sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname("
        "tether.__file__)), *sys.path]))"
    )
    try:
        out = subprocess.run(
            [python, "-c", code],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            cwd="/",
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"cannot run the worker's Python {python}: {exc}") from None
    if out.returncode != 0:
        raise SandboxError(
            f"the worker's Python {python} cannot import tether: {out.stderr.strip()[-300:]}"
        )
    paths: list[str] = json.loads(out.stdout)
    real = os.path.realpath(python)
    paths += [os.path.dirname(real), os.path.dirname(os.path.dirname(real))]
    usable = minimal_paths(p for p in paths if p and os.path.isabs(p) and os.path.exists(p))
    return usable, paths[1]


def _sweep_stale_state(tmp: Path | None = None) -> list[Path]:
    """Remove the state directories of acceptors that died without cleaning up
    (kill -9: their cells died with them, their files did not). Returns them."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob("tether-cells-*-*"):
        try:
            pid = int(path.name.split("-")[2])
            if path.stat().st_uid != os.geteuid() or pid == os.getpid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (ValueError, IndexError, OSError):
            continue
    return removed


def _uids_with_processes() -> set[int]:
    """The uids that own a process now (a uid of a cell that outlived its acceptor)."""
    uids: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    uids.add(os.stat(f"/proc/{name}").st_uid)
    return uids
