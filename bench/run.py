"""The one command: ``python -m bench.run`` (from the repository root).

For each link it starts the servers (raw floor echo server, RPyC classic server,
``tether serve``), runs :mod:`bench.runner` as the client, then prints one table per link
with medians, ratios, targets and met/missed, checks that local, Tether and RPyC computed
the same outputs, and writes the plot.

Links: ``loopback`` (127.0.0.1) and ``dc``, the emulated datacenter link of
:mod:`bench.netem` (namespaces, veth, 10 Gbit ``tbf``, 50 us each way in a user-space relay).
``dc`` needs root and iproute2; where it cannot be built the suite says why and skips it.

Exit status: 0 when the suite completed and every output agreed (targets missed or not),
1 when outputs disagree, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import netem, report
from bench.peers import (
    REPO,
    ServerFailed,
    Servers,
    child_env,
    floor_server,
    free_port,
    rpyc_server,
    sandbox_note,
    tether_server,
)
from bench.runner import CASE_KEYS

# Ports inside the server namespace of the emulated link (a fresh namespace: all free).
_DC_PORTS = {"floor": 7001, "rpyc": 7002, "tether": 7003}
_DC_RELAY = {"floor": 8001, "rpyc": 8002, "tether": 8003}


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _rpyc_available() -> bool:
    try:
        import rpyc  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def _runner_cmd(args: argparse.Namespace, out: Path, link: str, peers: list[str]) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "bench.runner",
        "--out",
        str(out),
        "--link",
        link,
        "--peers",
        ",".join(peers),
        "--cases",
        ",".join(args.cases),
        "--budget",
        str(args.budget),
    ]
    if args.quick:
        cmd.append("--quick")
    if args.device != "cpu":
        cmd += ["--device", args.device]
    if args.reps:
        cmd += ["--reps", str(args.reps)]
    if args.rpyc_stock:
        cmd.append("--rpyc-stock")
    return cmd


_CRASHED = 3  # the runner's exit status after a case raised (see bench.runner)
_MAX_RESUMES = 8


def _run_runner(cmd: list[str], out: Path, link: str, timeout: float) -> dict[str, Any]:
    """Run the runner, resuming it after each crashed case, within ``timeout`` in all."""
    _say(f"{link}: running the cases")
    deadline = time.monotonic() + timeout
    resumes = 0
    status: int | None = None
    while True:
        left = deadline - time.monotonic()
        try:
            status = subprocess.run(
                cmd, env=child_env(), cwd=REPO, timeout=max(1.0, left), check=False
            ).returncode
        except subprocess.TimeoutExpired:
            _say(
                f"{link}: the runner did not finish in {timeout:.0f} s; reporting what it measured"
            )
            break
        if status != _CRASHED or resumes >= _MAX_RESUMES:
            break
        resumes += 1
        _say(f"{link}: a case failed (recorded); resuming with the rest")
        if "--resume" not in cmd:
            cmd = [*cmd, "--resume"]
    try:
        data: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {
            "link": link,
            "floors": {},
            "cases": {},
            "errors": {"runner": "the runner wrote no results (see its output above)"},
        }
    if status not in (None, 0, _CRASHED):
        data.setdefault("errors", {})["runner"] = f"the runner exited with status {status}"
    return data


def _start_tether(
    servers: Servers, prefix: list[str], host: str, port: int
) -> tuple[str | None, Path | None, str | None]:
    token_file = servers.workdir / "tether.token"
    try:
        url = servers.start("tether", [*prefix, *tether_server(host, port, token_file)])
    except ServerFailed as exc:
        return None, None, str(exc)
    return url.splitlines()[0].strip(), token_file, None


def run_loopback(args: argparse.Namespace, peers: list[str], workdir: Path) -> dict[str, Any]:
    out = workdir / "loopback.json"
    with Servers() as servers:
        floor = servers.start("floor", floor_server("127.0.0.1"))
        cmd = [*_runner_cmd(args, out, "loopback", peers), "--floor", floor]
        notes = []
        if "rpyc" in peers:
            rp = servers.start("rpyc", rpyc_server("127.0.0.1", stock=args.rpyc_stock))
            cmd += ["--rpyc", rp, "--rpyc-startup"]
        if "tether" in peers:
            url, token_file, err = _start_tether(servers, [], "127.0.0.1", free_port())
            if url is None:
                notes.append(f"tether serve failed to start: {err}")
            else:
                cmd += [
                    "--tether-url",
                    url,
                    "--tether-token-file",
                    str(token_file),
                    "--startup",
                    "embedded",
                ]
        data = _run_runner(cmd, out, "loopback", args.timeout)
    data.setdefault("errors", {}).update({f"setup{i}": n for i, n in enumerate(notes)})
    if "tether" in peers:
        data["sandbox"] = sandbox_note()
    return data


def run_dc(args: argparse.Namespace, peers: list[str], workdir: Path) -> dict[str, Any]:
    out = workdir / "dc.json"
    try:
        link = netem.EmulatedLink()
        with link, Servers() as servers:
            b = link.exec_prefix(link.ns_server)
            floor = servers.start("floor", [*b, *floor_server("127.0.0.1", _DC_PORTS["floor"])])
            routes = [f"{link.server_address}:{_DC_RELAY['floor']}={floor}"]
            cmd_extra = ["--floor", f"{link.server_address}:{_DC_RELAY['floor']}"]
            notes = list(link.notes)
            if "rpyc" in peers:
                rp = servers.start(
                    "rpyc",
                    [*b, *rpyc_server("127.0.0.1", _DC_PORTS["rpyc"], stock=args.rpyc_stock)],
                )
                routes.append(f"{link.server_address}:{_DC_RELAY['rpyc']}={rp}")
                cmd_extra += ["--rpyc", f"{link.server_address}:{_DC_RELAY['rpyc']}"]
            if "tether" in peers:
                url, token_file, err = _start_tether(servers, b, "127.0.0.1", _DC_PORTS["tether"])
                if url is None:
                    notes.append(f"tether serve failed to start: {err}")
                else:
                    routes.append(
                        f"{link.server_address}:{_DC_RELAY['tether']}=127.0.0.1:"
                        f"{_DC_PORTS['tether']}"
                    )
                    cmd_extra += [
                        "--tether-url",
                        f"tcp://{link.server_address}:{_DC_RELAY['tether']}",
                        "--tether-token-file",
                        str(token_file),
                        "--startup",
                        "connect",
                    ]
            relay_cmd = [
                *b,
                sys.executable,
                "-m",
                "bench.netem",
                "relay",
                "--delay-us",
                str(args.delay_us),
            ]
            for r in routes:
                relay_cmd += ["--route", r]
            servers.start("relay", relay_cmd)
            cmd = [
                *link.exec_prefix(link.ns_client),
                *_runner_cmd(args, out, "dc", peers),
                *cmd_extra,
            ]
            data = _run_runner(cmd, out, "dc", args.timeout)
            data.setdefault("errors", {}).update({f"setup{i}": n for i, n in enumerate(notes)})
            if "tether" in peers:
                data["sandbox"] = sandbox_note()
            data["link_notes"] = notes
            return data
    except netem.LinkUnavailable as exc:
        _say(f"skipping the emulated datacenter link: {exc}")
        return {"link": "dc", "skipped": str(exc), "floors": {}, "cases": {}}


def tree_description() -> str:
    """The commit measured, and whether src/ had uncommitted changes at the time.

    That is the checkout the ``tether`` package is imported from (the peers run
    it), which is not this file's when ``PYTHONPATH`` points at another worktree
    to measure an older commit beside this one."""
    import tether

    tree = Path(tether.__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown tree"
    return f"tether {head}" + (" + uncommitted changes in src/" if dirty else "")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU {cpu}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Tether's benchmark suite: every case locally, through Tether and through "
        "RPyC classic mode, on loopback and on an emulated datacenter link.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one repetition, loopback only (the CI smoke version)",
    )
    p.add_argument(
        "--links",
        type=lambda s: s.split(","),
        help="comma-separated: loopback,dc (default: both; --quick: loopback)",
    )
    p.add_argument(
        "--peers",
        default="local,tether,rpyc",
        type=lambda s: s.split(","),
        help="comma-separated subset of local,tether,rpyc",
    )
    p.add_argument(
        "--cases",
        default=list(CASE_KEYS),
        type=lambda s: s.split(","),
        help=f"comma-separated subset of {','.join(CASE_KEYS)}",
    )
    p.add_argument("--reps", type=int, help="repetitions per case (default 5; --quick 1)")
    p.add_argument(
        "--device",
        default="cpu",
        help="where the cases compute, in every peer: cpu (default) or cuda (the GPU paths; "
        "the start-up case stays on the CPU)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="seconds a peer may spend on a case before it stops repeating",
    )
    p.add_argument(
        "--rpyc-stock",
        action="store_true",
        help="RPyC exactly as shipped, Nagle on (~40 ms stalls; slow)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every peer (OMP_NUM_THREADS; 0 = torch's "
        "default). Default 1: client and worker share the machine, and 2 "
        "OpenMP threads on a busy 2-vCPU VM run 10-20x slower and erratic",
    )
    p.add_argument(
        "--delay-us",
        type=float,
        default=netem.DELAY_US,
        help="emulated one-way delay added by the relay (default 50)",
    )
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds per link at most")
    p.add_argument("--json", type=Path, help="write all raw results to this JSON file")
    p.add_argument("--markdown", type=Path, help="write the tables as markdown to this file")
    p.add_argument(
        "--plot",
        type=Path,
        help="write the plot here (default: docs/performance.png, not with --quick)",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print (and --plot/--markdown) a saved --json file",
    )
    args = p.parse_args(argv)
    # Turn SIGTERM into SystemExit so the context managers stop the servers and delete the
    # namespaces (a background job started by a non-interactive shell ignores SIGINT).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    links = args.links or (["loopback"] if args.quick else ["loopback", "dc"])
    bad = (
        (set(links) - {"loopback", "dc"})
        or (set(args.peers) - set(report.PEERS))
        or (set(args.cases) - set(CASE_KEYS))
    )
    if bad:
        p.error(f"unknown name(s): {', '.join(sorted(bad))}")
    if args.threads > 0:
        # Inherited by the runner (the local column), the RPyC server and the acceptor's
        # workers alike, so every peer computes with the same thread pool.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    peers = list(args.peers)
    if "rpyc" in peers and not _rpyc_available():
        _say("RPyC is not installed (pip install rpyc, or the `bench` extra): skipping its column")
        peers.remove("rpyc")

    if args.render is not None:
        try:
            saved = json.loads(args.render.read_text())
            results, stamp = saved["links"], saved["date"]
            machine, tree = saved["machine"], saved.get("tree", "unknown tree")
        except (OSError, ValueError, KeyError) as exc:
            p.error(f"cannot read results from {args.render}: {exc}")
        return emit(args, results, stamp, machine, tree)

    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        work = Path(tmp)
        for link in links:
            try:
                if link == "loopback":
                    results.append(run_loopback(args, peers, work))
                else:
                    dc_peers = [q for q in peers if q != "local" or "loopback" not in links]
                    results.append(run_dc(args, dc_peers, work))
            except ServerFailed as exc:
                # The raw floor or RPyC server could not start: nothing to measure against.
                _say(f"{link}: a server did not start, skipping this link: {exc}")
                results.append(
                    {
                        "link": link,
                        "skipped": f"a server did not start: {exc}",
                        "floors": {},
                        "cases": {},
                    }
                )
    if all(d.get("skipped") for d in results):
        print("Nothing was measured.", file=sys.stderr)
        return 1

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return emit(args, results, stamp, machine_description(), tree_description())


def emit(
    args: argparse.Namespace, results: list[dict[str, Any]], stamp: str, machine: str, tree: str
) -> int:
    """Print the tables and checks; write the plot, markdown and JSON asked for."""
    local = results[0]
    md_parts = [f"Run {stamp} on {machine}; {tree}.", ""]
    print(
        f"\nTether benchmark suite, {stamp}, {machine}; {tree}"
        f"{' (quick sizes: figures are not meaningful)' if args.quick else ''}"
    )
    for data in results:
        title = report.LINK_TITLES.get(data["link"], data["link"])
        if data.get("skipped"):
            print(f"\n== {title}: skipped: {data['skipped']}")
            md_parts.append(f"**{title}**: skipped: {data['skipped']}\n")
            continue
        header, rows = report.table(data, local)
        summary = report.link_summary(data)
        print(f"\n== {title} ({summary})")
        print(report.render_text(header, rows))
        md_parts += [f"**{title}** ({summary})", "", report.render_markdown(header, rows), ""]

    unpipelined = report.pipelining_warnings(results)
    if unpipelined:
        print("\nWARNING: pipelining was off where it should not be:")
        for line in unpipelined:
            print("  " + line)
    mismatches = report.output_mismatches(results)
    problems = report.errors(results)
    if problems:
        print("\nFailures (full text in --json):")
        for line in problems:
            print("  " + line.splitlines()[0][:300])
    if mismatches:
        print("\nOUTPUTS DIFFER between peers:")
        for line in mismatches:
            print("  " + line[:300])
    else:
        print("\nOutputs agree across every peer that ran.")

    measured = [d for d in results if not d.get("skipped")]
    default_plot = None if args.quick or args.render else REPO / "docs" / "performance.png"
    plot_path = args.plot or default_plot
    if plot_path is not None and measured:
        if report.plot(measured, local, plot_path, f"Tether benchmark suite, {stamp}"):
            print(f"Plot written to {plot_path}")
        else:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
    if args.markdown:
        args.markdown.write_text("\n".join(md_parts) + "\n")
    if args.json and not args.render:
        args.json.write_text(
            json.dumps(
                {
                    "date": stamp,
                    "machine": machine,
                    "tree": tree,
                    "links": results,
                    "mismatches": mismatches,
                },
                indent=1,
            )
        )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
