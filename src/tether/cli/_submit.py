"""``tether submit``: many runs of one command, one group request to the pool.

A thin shell over :class:`tether.client._group.GroupRun` (local processes) and
:mod:`tether._kube` (``--on kubernetes``): it parses, asks, shows a table and
a summary, and exits 0 only when every member exited 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

DESCRIPTION = """\
Ask the pool for COUNT slices of one shape in one group request (placed together:
all of them, or with --min-count at least that many), then run COMMAND once per
member, {index} replaced by the member's index (0, 1, ...) and {NAME} by each
--param value. Each member is a `tether run` against its own slice, its output
in OUT_DIR/NAME/INDEX.out. A table of the members' states refreshes on a
terminal (plain lines otherwise) and a summary ends the run.

Ctrl-C stops every member and cancels the group: no lease is left open."""

EPILOG = """\
examples:
  tether submit --count 32 --gpus 0.25 --name sweep -- python train.py --seed {index}
  tether submit --param lr=0.1,0.01,0.001 --param bs=32,64 --gpus 0.5 --name grid \\
      -- python train.py --lr {lr} --batch-size {bs}
  tether group show sweep ; tether group logs sweep 3 ; tether group cancel sweep"""

#: Seconds between two redraws of the table on a terminal.
REFRESH_S = 0.5
#: To a file or pipe: a line when the counts change, at most this often otherwise.
LOG_EVERY_S = 10.0


def register(sub: Any) -> None:
    from tether.cli._poolcli import add_client_args

    p = sub.add_parser(
        "submit",
        help="run a command many times (a sweep) on slices from the pool",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--count", type=int, metavar="N", help="members (default: the --param grid)")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=V1,V2",
        help="sweep NAME over the values (repeatable: every combination); {NAME} in COMMAND",
    )  # fmt: skip
    p.add_argument("--name", help="the group's name (default: group-PID)")
    p.add_argument(
        "--min-count", type=int, metavar="N",
        help="start once at least N members fit, up to COUNT (default: all or none)",
    )  # fmt: skip
    p.add_argument(
        "--parallel", type=int, metavar="N",
        help="run at most N members at once (default: every placed member)",
    )  # fmt: skip
    p.add_argument(
        "--remote", action="append", metavar="MODULE",
        help="module(s) the members execute remotely (default: torch)",
    )  # fmt: skip
    p.add_argument(
        "--out-dir", type=Path, default=Path("tether-groups"), metavar="DIR",
        help="where the members' output goes: DIR/NAME/INDEX.out (default ./tether-groups)",
    )  # fmt: skip
    p.add_argument(
        "--gpus", type=float, metavar="F",
        help="per member: a fraction of one device (0.25) or whole devices (2); default 1",
    )  # fmt: skip
    p.add_argument("--gpu-memory", metavar="SIZE", help="per member: device memory, e.g. 8GiB")
    p.add_argument("--vendor", help="nvidia, amd, intel or cpu")
    p.add_argument("--model", help="device model glob, e.g. '*H100*'")
    p.add_argument("--team", help="the team to charge (if you are in several)")
    p.add_argument(
        "--no-wait", action="store_true",
        help="fail at once unless the group fits now (instead of queueing as a unit)",
    )  # fmt: skip
    p.add_argument(
        "--queue-timeout", type=float, metavar="S", help="give up after waiting this long"
    )
    p.add_argument(
        "--on", choices=["local", "kubernetes"], default="local",
        help="where the members run: local processes (default) or a Kubernetes Indexed Job",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true",
        help="with --on kubernetes: print the manifest and ask the pool for nothing",
    )  # fmt: skip
    p.add_argument("--image", help="with --on kubernetes: the container image (with tether)")
    p.add_argument("--namespace", help="with --on kubernetes: the namespace")
    add_client_args(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, after --")
    p.set_defaults(handler=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"tether: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from tether._submit import members_from_specs
    from tether.client._lease import slice_request

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _fail("give the program to run after --, e.g. -- python train.py --seed {index}")
    try:
        members = members_from_specs(args.count, args.param)
        request = slice_request(
            gpus=args.gpus, memory=args.gpu_memory, vendor=args.vendor, model=args.model,
            team=args.team, wait=not args.no_wait, queue_timeout_s=args.queue_timeout,
        )  # fmt: skip
    except ValueError as exc:
        return _fail(str(exc))
    name = args.name or f"group-{os.getpid()}"
    if args.min_count is not None and not 1 <= args.min_count <= len(members):
        return _fail(f"--min-count must be from 1 to the {len(members)} members")
    if args.on == "kubernetes":
        from tether.cli._kube import submit_kubernetes

        return submit_kubernetes(args, command, members, request, name)
    if args.dry_run:
        return _fail("--dry-run goes with --on kubernetes")
    return _submit_local(args, command, members, request, name)


def _submit_local(
    args: argparse.Namespace,
    command: list[str],
    members: list[dict[str, str]],
    request: dict[str, Any],
    name: str,
) -> int:
    from tether.cli import error_line
    from tether.cli._poolcli import client_from
    from tether.client._group import GroupRun

    run = GroupRun(
        client=client_from(args),
        command=command,
        request=request,
        members=members,
        name=name,
        remote=sorted({m for item in (args.remote or ["torch"]) for m in item.split(",") if m}),
        parallel=args.parallel,
        out_dir=args.out_dir,
        min_count=args.min_count,
        tls_ca=str(args.tls_ca) if args.tls_ca else None,
    )
    err = sys.stderr
    try:
        run.submit()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from tether._errors import TetherError

        if not isinstance(exc, TetherError):
            raise
        print(error_line(exc), file=err)
        return 1
    print(f"tether: group {name} ({run.id}): {len(members)} members, "
          f"output in {run.out_path}/", file=err, flush=True)  # fmt: skip
    view = _Table(err, json_mode=args.json)
    run.start()
    try:
        while run.join(REFRESH_S):
            view.show(run)
        view.show(run, final=True)
        run.wait()
    except KeyboardInterrupt:
        print("\ntether: cancelling the group (Ctrl-C)", file=err, flush=True)
        run.cancel()
        view.show(run, final=True)
        _summary(run, err, json_mode=args.json)
        return 130
    except Exception as exc:
        from tether._errors import TetherError

        if not isinstance(exc, TetherError):
            raise
        print(error_line(exc), file=err)
        return 1
    return _summary(run, err, json_mode=args.json)


def _summary(run: Any, err: TextIO, *, json_mode: bool) -> int:
    """The closing lines on stderr (and the whole report as JSON on stdout with --json);
    the exit status: 0 only when every member exited 0."""
    results = run.results()
    counts = run.counts()
    failed = [r for r in results if r.state == "failed"]
    line = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    print(f"tether: group {run.name}: {line}", file=err)
    for r in failed[:10]:
        print(f"  member {r.index} exited {r.exit_code}: see {r.output}", file=err)
    if json_mode:
        report = {
            "group": run.id,
            "name": run.name,
            "counts": counts,
            "members": [r.to_dict() for r in results],
        }
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0 if counts["done"] == len(results) else 1


class _Table:
    """The live view: on a terminal, the table redrawn in place; else one line per change."""

    def __init__(self, out: TextIO, *, json_mode: bool) -> None:
        self.out = out
        self.tty = out.isatty() and not json_mode
        self.drawn = 0
        self.last: tuple[Any, ...] | None = None
        self.last_at = 0.0

    def show(self, run: Any, *, final: bool = False) -> None:
        counts = run.counts()
        key = (run.group_state, tuple(counts.values()))
        now = time.monotonic()
        if self.tty:
            lines = self._lines(run, counts)
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.out.write("\n".join(lines) + "\n")
            self.drawn = len(lines)
        elif final or key != self.last or now - self.last_at > LOG_EVERY_S:
            summary = " ".join(f"{state}={n}" for state, n in counts.items() if n)
            waiting = f" ({run.reason})" if run.group_state == "queued" and run.reason else ""
            self.out.write(f"tether: group {run.name} {run.group_state}{waiting}: {summary}\n")
        self.out.flush()
        self.last, self.last_at = key, now

    @staticmethod
    def _lines(run: Any, counts: dict[str, int]) -> list[str]:
        head = " ".join(f"{state}={n}" for state, n in counts.items() if n)
        lines = [f"group {run.name} [{run.group_state}] {head}"]
        if run.group_state == "queued" and run.reason:
            lines.append(f"  waiting: {run.reason}")
        lines.append(f"  {'INDEX':>5}  {'STATE':<10} {'EXIT':>4}  {'NODE':<12} PARAMS")
        results = run.results()
        shown = results if len(results) <= 40 else [r for r in results if r.state == "running"][:40]
        for r in shown:
            params = " ".join(f"{k}={v}" for k, v in r.params.items())
            code = "" if r.exit_code is None else str(r.exit_code)
            lines.append(f"  {r.index:>5}  {r.state:<10} {code:>4}  {(r.node or '-'):<12} {params}")
        return lines
