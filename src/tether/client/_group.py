"""Running a sweep: one group request, then one client process per member.

(Over 400 lines: one class, a sweep's run, whose waiting, starting, watching and
cancelling share one table of members and must be read together.)

``tether submit`` and :func:`tether.submit` use :class:`GroupRun`. It asks the
pool for a group (:meth:`PoolClient.request_group`: ``count`` slices of one
shape, placed together), waits while the group is queued, then runs the
command once per placed member as a local process, at most ``parallel`` at a
time: each is ``tether run --connect ADDRESS --token-file TICKET --remote ...
-- COMMAND`` with ``{index}`` (and each ``--param`` name, ``{lr}``) replaced in
the command's arguments, its stdout and stderr in ``OUT_DIR/INDEX.out``. One
thread renews every member's lease and rewrites its ticket file (mode 0600, in
a private directory), so a member that starts late never shows an expired
ticket. A member's lease is released as soon as its process exits.

Cancellation (:meth:`GroupRun.cancel`, Ctrl-C in ``tether submit``): the
children get SIGTERM (then SIGKILL after a grace period), and the whole group
is cancelled at the pool (a waiting group leaves the queue; every open member
lease is released), so no lease stays open. A launcher killed without a word
(SIGKILL) leaves the pool's lease timeout to end the leases.

Standard library only (plus :mod:`tether.poolapi._client`), like every client piece.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tether._errors import ConnectError, PoolError

__all__ = ["GroupRun", "MemberResult", "expand_params", "run_member", "substitute"]

#: Seconds between lease renewals of the running members.
HEARTBEAT_S = 10.0

#: How long cancelled children get to end after SIGTERM before SIGKILL.
TERM_GRACE_S = 5.0

#: Member states, in the order the table lists their counts.
STATES = ("queued", "placed", "running", "done", "failed", "cancelled", "not-placed")


@dataclass(frozen=True, slots=True)
class MemberResult:
    """One member of a sweep: its index, its parameters, its session and how it ended.

    ``state``: ``queued`` (the group waits), ``placed`` (its slice is held, its
    process not started yet), ``running``, ``done`` (exit status 0), ``failed``
    (another status, or it could not start), ``cancelled``, ``not-placed`` (the
    group was placed with fewer members than asked).
    """

    index: int
    params: Mapping[str, str]
    state: str = "queued"
    session_id: str | None = None
    node: str | None = None
    exit_code: int | None = None
    output: str | None = None
    started_at: float | None = None
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "params": dict(self.params),
            "state": self.state,
            "session": self.session_id,
            "node": self.node,
            "exit_code": self.exit_code,
            "output": self.output,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``argv`` with ``{name}`` replaced for every name in ``values``; other braces stay."""
    return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in argv]


def expand_params(specs: Iterable[str]) -> list[dict[str, str]]:
    """The grid of ``--param name=v1,v2`` options: every combination, first name slowest.

    Raises ValueError for a spec without ``=``, an empty value list, a bad or repeated name.
    """
    names: list[str] = []
    values: list[list[str]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"--param {spec!r}: write NAME=V1,V2,... (NAME a Python identifier)")
        if name in names or name == "index":
            raise ValueError(f"--param {name}: given twice, or the reserved name 'index'")
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items:
            raise ValueError(f"--param {name}: no values")
        names.append(name)
        values.append(items)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


@dataclass
class GroupRun:
    """A sweep in progress; see the module docstring.

    Build it, then :meth:`submit` (asks the pool; raises its refusal), then
    :meth:`run` (blocks until every member ended) or :meth:`start` (in a thread)
    and :meth:`wait`. :meth:`results` is safe to call at any time, from any thread.
    """

    client: Any  # tether.poolapi._client.PoolClient
    command: list[str]
    request: dict[str, Any]  # the slice fields for every member (request_slice's)
    members: list[dict[str, str]]  # per member: its parameters
    name: str
    remote: list[str] = field(default_factory=lambda: ["torch"])
    parallel: int | None = None
    out_dir: Path = Path("tether-groups")
    min_count: int | None = None
    tls_ca: str | None = None
    heartbeat_s: float = HEARTBEAT_S
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._results = [MemberResult(index=i, params=p) for i, p in enumerate(self.members)]
        self._cancel = threading.Event()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.group: dict[str, Any] = {}
        self.group_state = "new"
        self.reason = ""
        self._private: Path | None = None
        self._end_lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    @property
    def id(self) -> str:
        return str(self.group.get("id", ""))

    @property
    def out_path(self) -> Path:
        """Where the members' output files go: ``OUT_DIR/NAME``."""
        return self.out_dir / self.name

    def results(self) -> list[MemberResult]:
        """Every member's current state, by index."""
        with self._lock:
            return list(self._results)

    def counts(self) -> dict[str, int]:
        """How many members are in each state (every state listed, zeros included)."""
        out = dict.fromkeys(STATES, 0)
        for r in self.results():
            out[r.state] += 1
        return out

    @property
    def finished(self) -> bool:
        return all(r.state in ("done", "failed", "cancelled", "not-placed") for r in self.results())

    # ------------------------------------------------------------------ driving

    def submit(self) -> dict[str, Any]:
        """Ask the pool for the group; the group as the pool answered (placed or
        queued). Raises the pool's refusal (:class:`Refused`, ...) unchanged."""
        body = dict(self.request)
        body.update(name=self.name, max_count=len(self.members), min_count=self.min_count)
        self.group = self.client.request_group(**body)
        self.group_state = self.group["state"]
        self.reason = str(self.group.get("reason") or "")
        return self.group

    def start(self) -> None:
        """Run the members in a background thread (:meth:`wait` joins it)."""
        self._thread = threading.Thread(target=self._run_caught, name="tether-group", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the background run; whether it is still running."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> list[MemberResult]:
        """Block until every member ended (or ``timeout``); their results.
        Re-raises what stopped the run (a pool refusal while queued, ...)."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.results()

    def _run_caught(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to wait()
            self._error = exc

    def run(self) -> list[MemberResult]:
        """Wait for placement, run every placed member, release as each ends."""
        self._private = Path(tempfile.mkdtemp(prefix="tether-group-"))  # 0700: tickets
        beat = threading.Thread(target=self._beat, name="tether-group-lease", daemon=True)
        try:
            self._wait_placed()
            if self._cancel.is_set():
                return self.results()
            beat.start()
            self._run_members()
            return self.results()
        finally:
            self._cancel.set()  # stops the heartbeat thread
            if beat.is_alive():
                beat.join(5)
            self._end_all()
            shutil.rmtree(self._private, ignore_errors=True)

    def cancel(self) -> None:
        """Stop every member and cancel the group at the pool (idempotent)."""
        self._cancel.set()
        self._end_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(TERM_GRACE_S + 10)

    # ------------------------------------------------------------------ mechanics

    def _set(self, index: int, **changes: Any) -> None:
        with self._lock:
            self._results[index] = replace(self._results[index], **changes)

    def _wait_placed(self) -> None:
        from tether.poolapi._problems import Refused

        while self.group_state == "queued" and not self._cancel.is_set():
            self._cancel.wait(self.poll_s)
            self.group = self.client.group(self.id)
            self.group_state = self.group["state"]
            self.reason = str(self.group.get("reason") or "")
        if self._cancel.is_set():
            return
        if self.group_state != "placed":
            reason = self.group.get("end_reason") or "ended"
            raise Refused(
                str(self.group.get("reason") or f"the group left the queue: {reason}"),
                {"reason": reason, "group": self.id},
            )
        placed = {int(m["index"]) for m in self.group["members"]}
        for r in self.results():
            self._set(r.index, state="placed" if r.index in placed else "not-placed")
        by_index = {int(m["index"]): m for m in self.group["members"]}
        for index, member in by_index.items():
            self._set(index, session_id=member["id"], node=member.get("node"))
            self._write_ticket(index, member)

    def _ticket_path(self, index: int) -> Path:
        assert self._private is not None
        return self._private / f"{index}.ticket"

    def _write_ticket(self, index: int, member: Mapping[str, Any]) -> None:
        ticket = member.get("ticket")
        if not ticket or self._private is None:
            return
        path = self._ticket_path(index)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(ticket) + "\n")
        tmp.replace(path)  # atomic: a member never reads half a ticket

    def _run_members(self) -> None:
        members = {int(m["index"]): m for m in self.group["members"]}
        pending = sorted(members)
        limit = self.parallel or len(pending) or 1
        self.out_path.mkdir(parents=True, exist_ok=True)
        while (pending or self._procs) and not self._cancel.is_set():
            while pending and len(self._procs) < limit and not self._cancel.is_set():
                index = pending.pop(0)
                self._start_member(index, members[index])
            self._reap()
            self._cancel.wait(0.05)

    def _start_member(self, index: int, member: Mapping[str, Any]) -> None:
        values = {"index": str(index), **self.members[index]}
        argv = [
            sys.executable, "-m", "tether", "run",
            "--connect", str(member["address"]),
            "--token-file", str(self._ticket_path(index)),
            *itertools.chain.from_iterable(("--remote", m) for m in self.remote),
            *(["--tls-ca", self.tls_ca] if self.tls_ca else []),
            "--", *substitute(self.command, values),
        ]  # fmt: skip
        output = self.out_path / f"{index}.out"
        env = dict(os.environ)
        for key in ("TETHER_TOKEN", "TETHER_TOKEN_FILE", "TETHER_POOL_TOKEN"):
            env.pop(key, None)
        env["TETHER_GROUP"] = self.name
        env["TETHER_GROUP_INDEX"] = str(index)
        try:
            with output.open("wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # cancel ends its whole process group
                )
        except OSError as exc:
            output.write_text(f"tether: cannot start member {index}: {exc}\n")
            self._set(index, state="failed", exit_code=127, output=str(output))
            self._release(index)
            return
        self._procs[index] = proc
        self._set(index, state="running", output=str(output), started_at=time.time())

    def _reap(self) -> None:
        for index, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[index]
            code = code if code >= 0 else 128 - code
            self._set(
                index, state="done" if code == 0 else "failed", exit_code=code, ended_at=time.time()
            )
            self._release(index)

    def _release(self, index: int) -> None:
        session = self.results()[index].session_id
        if session is None:
            return
        with contextlib.suppress(ConnectError, PoolError):
            self.client.release(session)

    def _beat(self) -> None:
        from tether.poolapi._problems import Gone, NotFound

        while not self._cancel.wait(self.heartbeat_s):
            for r in self.results():
                if r.state not in ("placed", "running") or r.session_id is None:
                    continue
                try:
                    current = self.client.heartbeat(r.session_id)
                except (Gone, NotFound):
                    continue  # ended at the pool: the acceptor ends its worker
                except (ConnectError, PoolError):
                    continue  # transient: the acceptor's heartbeats renew it meanwhile
                self._write_ticket(r.index, current)

    def _end_all(self) -> None:
        """Terminate every child (SIGTERM, then SIGKILL) and cancel the group at the pool."""
        with self._end_lock:
            self._end_all_locked()

    def _end_all_locked(self) -> None:
        procs = dict(self._procs)
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        for proc in procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for index, proc in procs.items():
            self._procs.pop(index, None)
            code = proc.returncode
            self._set(
                index,
                state="cancelled",
                exit_code=code if code is None or code >= 0 else 128 - code,
                ended_at=time.time(),
            )
        for r in self.results():
            if r.state in ("queued", "placed"):
                self._set(r.index, state="cancelled")
        if self.id and self.group_state in ("queued", "placed"):
            with contextlib.suppress(ConnectError, PoolError):
                self.client.cancel_group(self.id)
            self.group_state = "ended"


def run_member(
    client: Any,
    ref: str,
    index: int,
    command: Sequence[str],
    *,
    params: Mapping[str, str] | None = None,
    remote: Sequence[str] = ("torch",),
    tls_ca: str | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> int:
    """Run ``command`` as member ``index`` of the placed group ``ref`` (id or name):
    its slice's address and a fresh ticket from the pool, its lease renewed while
    the command runs (``tether run --connect``), released at the end. The command's
    exit status (128 + N when killed by signal N).

    What each pod of ``tether submit --on kubernetes`` runs (``tether group member``).
    Raises :class:`tether.poolapi._problems.Gone` when the member's lease has ended or
    was never placed, and the pool's errors unchanged.
    """
    from tether.client._lease import Lease
    from tether.poolapi._problems import Gone, NotFound

    while True:
        try:
            member = client.group_member(ref, index)  # this member only, with a fresh ticket
            break
        except NotFound:
            group = client.group(ref)  # NotFound here: no such group
            if group["state"] != "queued":
                raise Gone(
                    f"member {index} of group {group['name']} was not placed",
                    {"group": group["id"]},
                ) from None
            time.sleep(1.0)  # pods may start before the group is placed
    if member.get("state") != "placed":
        raise Gone(
            f"member {index} of group {ref} has ended ({member.get('end_reason')})",
            {"session": member.get("id")},
        )
    private = Path(tempfile.mkdtemp(prefix="tether-member-"))  # 0700: the ticket
    lease = Lease(client, member, ticket_file=private / "ticket")
    values = {"index": str(index), **(params or {})}
    argv = [
        sys.executable, "-m", "tether", "run",
        "--connect", str(member["address"]),
        "--token-file", str(private / "ticket"),
        *itertools.chain.from_iterable(("--remote", m) for m in remote),
        *(["--tls-ca", tls_ca] if tls_ca else []),
        "--", *substitute(command, values),
    ]  # fmt: skip
    env = dict(os.environ)
    for key in ("TETHER_TOKEN", "TETHER_TOKEN_FILE", "TETHER_POOL_TOKEN", "TETHER_POOL_TOKEN_FILE"):
        env.pop(key, None)
    try:
        lease.start_heartbeat(heartbeat_s)
        proc = subprocess.Popen(argv, env=env)
        old = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, old)
        return code if code >= 0 else 128 - code
    finally:
        lease.release()
        shutil.rmtree(private, ignore_errors=True)
