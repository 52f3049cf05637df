"""``tether top``: what each session really uses, per device, refreshed like ``top``.

From the pool (default): every device and the live sessions you may see on it,
with the memory each session's worker really holds and the device's compute
utilisation where it reports it. The figures are the acceptors' metering
(:mod:`tether.acceptor._meter`) as their last heartbeat brought it, so they are
a heartbeat old at most. With ``--connect URL``, the figures come from one
acceptor's ``/metrics`` (``tether serve --metrics-listen``) instead, sampled
when asked.

``ALLOC`` is what the lease reserved; ``DEV MEM`` is device memory in use
(NVML; ``-`` where the device does not report it, e.g. a CPU device), ``HOST
MEM`` the worker's resident memory, ``UTIL`` compute utilisation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tether.cli._poolcli import add_client_args, client_from, print_json, table

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="live per-device use: memory and utilisation of each session",
        description=DESCRIPTION,
        epilog="Examples: tether top;  tether top --once --json;  "
        "tether top --connect http://gpu7:9470 --metrics-token-file mtoken",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )
    p.add_argument("--all-teams", action="store_true", help="admins: every team's sessions")
    acc = p.add_argument_group("one acceptor instead of the pool")
    acc.add_argument(
        "--connect", metavar="URL", help="an acceptor's metrics address, e.g. http://gpu7:9470"
    )
    acc.add_argument(
        "--metrics-token-file",
        type=Path,
        metavar="PATH",
        help="its metrics token (tether serve --metrics-token-file)",
    )
    add_client_args(p)
    p.set_defaults(handler=top)


# ----------------------------------------------------------------- figures


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rows_from_pool(client: Any, *, all_teams: bool) -> list[dict[str, Any]]:
    """One row per (device, session) and one per idle device, from the pool."""
    devices = client.devices()
    sessions = client.sessions(state="placed")
    if not all_teams:
        me = client.me()
        if not me.get("admin"):
            sessions = [s for s in sessions if s.get("user") == me.get("user")]
    by_device: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in sessions:
        for d in s.get("devices") or []:
            by_device.setdefault((s.get("node") or "", d["id"]), []).append({**s, "_dev": d})
    rows: list[dict[str, Any]] = []
    for dev in devices:
        key = (dev["node"], dev["id"])
        held = by_device.pop(key, [])
        base = {
            "node": dev["node"],
            "device": dev["id"],
            "model": dev.get("model"),
            "device_memory_bytes": dev.get("memory_bytes"),
        }
        if not held:
            rows.append({**base, "session": None})
        for s in held:
            rows.append({**base, **_session_figures(s)})
    for (node, device), held in sorted(by_device.items()):  # devices this caller cannot list
        for s in held:
            rows.append({"node": node, "device": device, **_session_figures(s)})
    return rows


def _session_figures(s: dict[str, Any]) -> dict[str, Any]:
    metering = s.get("metering") or {}
    dev = s["_dev"]
    return {
        "session": s["id"],
        "name": s.get("name"),
        "user": s.get("user"),
        "team": s.get("team"),
        "fraction": dev.get("fraction"),
        "allocated_memory_bytes": dev.get("memory_bytes"),
        "device_memory_used_bytes": _num(metering.get("device_memory_now")),
        "host_memory_bytes": _num(metering.get("memory_now")),
        "utilisation_percent": _num(metering.get("device_util_now")),
        "started_at": s.get("started_at"),
    }


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of each sample in Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, brace, rest = head.partition("{")
        labels: dict[str, str] = {}
        if brace:
            body = rest.rsplit("}", 1)[0]
            i = 0
            while i < len(body):
                eq = body.index("=", i)
                key = body[i:eq].strip(", ")
                j, chars = eq + 2, []
                while body[j] != '"':
                    if body[j] == "\\":
                        j += 1
                        chars.append({"n": "\n"}.get(body[j], body[j]))
                    else:
                        chars.append(body[j])
                    j += 1
                labels[key] = "".join(chars)
                i = j + 1
        out.append((name, labels, float(value)))
    return out


def rows_from_acceptor(url: str, token: str | None) -> list[dict[str, Any]]:
    """One row per session of one acceptor, from its ``/metrics``."""
    import urllib.error
    import urllib.request

    from tether._errors import ConnectError

    if "://" not in url:
        url = "http://" + url
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        raise ConnectError(
            f"{url} answered {exc.code} {exc.reason}: check --connect and --metrics-token-file"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(
            f"cannot reach {url}: {reason}; is `tether serve --metrics-listen` running there?"
        ) from None
    fields = {
        "tether_acceptor_session_memory_bytes": "host_memory_bytes",
        "tether_acceptor_session_device_memory_bytes": "device_memory_used_bytes",
        "tether_acceptor_session_device_utilisation_ratio": "utilisation_percent",
        "tether_acceptor_session_start_time_seconds": "started_at",
    }
    sessions: dict[str, dict[str, Any]] = {}
    for name, labels, value in parse_prometheus(text):
        if name in fields and "session" in labels:
            row = sessions.setdefault(
                labels["session"], {"node": url, "session": labels["session"]}
            )
            if labels.get("device"):
                row["device"] = labels["device"]
            row[fields[name]] = value * 100.0 if fields[name] == "utilisation_percent" else value
    return sorted(sessions.values(), key=lambda r: (r.get("device") or "", r["session"]))


# ------------------------------------------------------------------- output


def _mem(value: Any) -> str:
    from tether._units import format_memory

    return format_memory(int(value)) if isinstance(value, int | float) else "-"


def render(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if r.get("session") is None:
            out.append([r["node"], r["device"], "(idle)", "", "", "", "", "", ""])
            continue
        alloc = ""
        if r.get("fraction") is not None:
            alloc = f"x{float(r['fraction']):.2f}"
            if r.get("allocated_memory_bytes"):
                alloc += " " + _mem(r["allocated_memory_bytes"])
        util = r.get("utilisation_percent")
        out.append(
            [
                r.get("node") or "",
                r.get("device") or "",
                r["session"],
                r.get("name") or "",
                r.get("user") or "",
                alloc,
                _mem(r.get("device_memory_used_bytes")),
                _mem(r.get("host_memory_bytes")),
                f"{util:.0f}%" if util is not None else "-",
            ]
        )
    headers = ["NODE", "DEVICE", "SESSION", "NAME", "USER", "ALLOC", "DEV MEM", "HOST MEM", "UTIL"]
    return table(headers, out)


def top(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("tether top: --interval must be positive", file=sys.stderr)
        return 2
    if args.connect:
        token = None
        if args.metrics_token_file is not None:
            try:
                token = args.metrics_token_file.read_text().strip()
            except OSError as exc:
                print(
                    f"tether top: cannot read {args.metrics_token_file}: {exc.strerror}",
                    file=sys.stderr,
                )
                return 2

        def fetch() -> list[dict[str, Any]]:
            return rows_from_acceptor(args.connect, token)
    else:
        client = client_from(args)

        def fetch() -> list[dict[str, Any]]:
            return rows_from_pool(client, all_teams=args.all_teams)

    if args.json:
        print_json(fetch())
        return 0
    if args.once:
        print(render(fetch()))
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            text = render(fetch())
            stamp = time.strftime("%H:%M:%S")
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            sys.stdout.write(
                f"tether top  {stamp}  (every {args.interval:g}s, Ctrl-C quits)\n{text}\n"
            )
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
