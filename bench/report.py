"""Targets, the results table (text and markdown), the output check and the plot.

Pure functions over the runners' JSON (one dict per link); nothing here measures. The
ratio column is always "times worse than the reference" (>1 is worse): value/reference
for times, reference/value for rates. The reference is the raw-socket floor for the null
call, pipelined calls and bulk transfer, and the local run for the rest.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS = ("local", "tether", "rpyc")


@dataclass(frozen=True)
class Row:
    key: str  # case key in the runner's JSON
    label: str
    kind: str  # "time" (lower is better) or "rate" / "bytes" (higher is better)
    ref: str  # "floor:<name>" or "local"
    targets: dict[str, tuple[str, Callable[[float, float], bool]]]  # link -> (text, met?)


def _ratio_at_most(limit: float) -> Callable[[float, float], bool]:
    return lambda value, ratio: ratio <= limit


def rows_for(bulk_mib: list[int]) -> list[Row]:
    rows = [
        Row(
            "null",
            "null call (per call)",
            "time",
            "floor:ping_s",
            {"loopback": ("<= 2x raw ping-pong", _ratio_at_most(2.0))},
        ),
        Row(
            "pipelined",
            "pipelined calls",
            "rate",
            "floor:echo_fps",
            {
                "loopback": (
                    ">= 50k/s and >= 1/3 raw echo",
                    lambda value, ratio: value >= 50_000 and ratio <= 3.0,
                )
            },
        ),
        Row(
            "fine",
            "fine-grained tensor ops",
            "time",
            "local",
            {"loopback": ("<= 3x local", _ratio_at_most(3.0))},
        ),
        Row(
            "small",
            "small training (10k params)",
            "time",
            "local",
            {
                "loopback": ("<= 1.3x local", _ratio_at_most(1.3)),
                "dc": ("<= 1.5x local", _ratio_at_most(1.5)),
            },
        ),
        Row(
            "large",
            "larger training (512-1024-10)",
            "time",
            "local",
            {
                "loopback": ("<= 1.05x local", _ratio_at_most(1.05)),
                "dc": ("<= 1.1x local", _ratio_at_most(1.1)),
            },
        ),
    ]
    for mib in bulk_mib:
        rows.append(
            Row(
                f"bulk{mib}",
                f"bulk {mib} MiB to worker",
                "bytes",
                f"floor:up_{mib}_Bps",
                {"loopback": (">= 50% raw socket", _ratio_at_most(2.0))},
            )
        )
        rows.append(
            Row(
                f"bulk{mib}_down",
                f"bulk {mib} MiB back",
                "bytes",
                f"floor:down_{mib}_Bps",
                {"loopback": (">= 50% raw socket", _ratio_at_most(2.0))},
            )
        )
    rows.append(
        Row(
            "startup",
            "start-up to first result",
            "time",
            "local",
            {"loopback": ("< 1.5 s over local", lambda value, ratio: value - value / ratio < 1.5)},
        )
    )
    return rows


def median(rec: dict[str, Any] | None) -> float | None:
    if not rec or not rec.get("values"):
        return None
    return float(statistics.median(rec["values"]))


def reference(row: Row, link: dict[str, Any], local: dict[str, Any]) -> float | None:
    if row.ref.startswith("floor:"):
        value = link.get("floors", {}).get(row.ref.split(":", 1)[1])
        return float(value) if value else None
    return median(local.get("cases", {}).get(row.key, {}).get("local"))


def ratio(row: Row, value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or value <= 0 or ref <= 0:
        return None
    return value / ref if row.kind == "time" else ref / value


def fmt(kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "time":
        if value < 1e-3:
            return f"{value * 1e6:.1f} us"
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if kind == "rate":
        return f"{value / 1e3:.1f}k/s"
    return f"{value / 1e6:.0f} MB/s"


def fmt_ratio(row: Row, r: float | None, value: float | None) -> str:
    if r is None:
        return "-"
    if row.key == "startup" and value is not None:
        return f"{value - value / r:+.2f} s"
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


LINK_TITLES = {"loopback": "loopback", "dc": "emulated datacenter link"}


def table(link: dict[str, Any], local: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one link. ``local`` is the run that holds the local column."""
    name = link["link"]
    header = [
        "case",
        "local",
        "Tether",
        "RPyC",
        "floor",
        "Tether vs ref",
        "RPyC vs ref",
        "target",
        "met?",
    ]
    out = []
    for row in rows_for(list(link.get("sizes", {}).get("bulk_mib", []))):
        cases = link.get("cases", {})
        if row.key not in cases and row.key not in local.get("cases", {}):
            continue
        recs = cases.get(row.key, {})
        local_rec = local.get("cases", {}).get(row.key, {}).get("local")
        ref = reference(row, link, local)
        tv, rv = median(recs.get("tether")), median(recs.get("rpyc"))
        tr, rr = ratio(row, tv, ref), ratio(row, rv, ref)
        target = row.targets.get(name)
        met = "-"
        if target is not None:
            if tr is not None and tv is not None:
                met = "met" if target[1](tv, tr) else "MISSED"
            elif recs.get("tether", {}).get("error"):
                met = "error"
        floor = ref if row.ref.startswith("floor:") else None
        # Locally from_numpy()/.numpy() share memory: there is no transfer to show.
        local_cell = (
            "no copy" if row.kind == "bytes" and local_rec else fmt(row.kind, median(local_rec))
        )
        out.append(
            [
                row.label,
                local_cell,
                _cell(row.kind, recs.get("tether")),
                _cell(row.kind, recs.get("rpyc")),
                fmt(row.kind, floor),
                fmt_ratio(row, tr, tv),
                fmt_ratio(row, rr, rv),
                target[0] if target else "-",
                met,
            ]
        )
    return header, out


def _cell(kind: str, rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "n/a"
    if rec.get("error") and not rec.get("values"):
        return "error"
    text = fmt(kind, median(rec))
    n = len(rec.get("values", []))
    return f"{text} (n={n})" if n == 1 else text


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def link_summary(link: dict[str, Any]) -> str:
    fl = link.get("floors", {})
    parts = []
    if fl.get("ping_s"):
        parts.append(f"raw 16-byte round trip {fl['ping_s'] * 1e6:.0f} us")
    if fl.get("echo_fps"):
        parts.append(f"raw pipelined 100-byte echo {fl['echo_fps'] / 1e3:.0f}k frames/s")
    ups = [v for k, v in fl.items() if k.startswith("up_")]
    if ups:
        parts.append(f"raw bandwidth up to {max(ups) / 1e9:.2f} GB/s")
    threads = link.get("threads")
    if threads:
        parts.append("torch threads " + ", ".join(f"{k} {v}" for k, v in threads.items()))
    if link.get("device", "cpu") != "cpu":
        parts.append(f"device {link['device']}")
    if link.get("sandbox"):
        parts.append(link["sandbox"])
    return "; ".join(parts)


# -- checks -------------------------------------------------------------------------------


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)  # plain values only


def output_mismatches(links: list[dict[str, Any]]) -> list[str]:
    """Every (link, case, peer, rep) whose output differs from the first output seen for
    that case (the local run's, when there is one). Empty when all agree."""
    problems = []
    reference_out: dict[str, tuple[str, Any]] = {}
    for link in links:
        for key, recs in link.get("cases", {}).items():
            for peer in PEERS:
                for i, outp in enumerate(recs.get(peer, {}).get("outputs", [])):
                    where = f"{link['link']}/{key}/{peer}#{i}"
                    if key not in reference_out:
                        reference_out[key] = (where, outp)
                    elif not _close(outp, reference_out[key][1]):
                        problems.append(
                            f"{where}: {outp!r} differs from "
                            f"{reference_out[key][0]}: {reference_out[key][1]!r}"
                        )
    return problems


def pipelining_warnings(links: list[dict[str, Any]]) -> list[str]:
    """Cases meant to pipeline where Tether sent most calls synchronously (e.g. because a
    frame on the stack holds a ``try``): their figures measure the wrong thing."""
    out = []
    for link in links:
        for key in ("pipelined", "fine", "small"):
            calls = link.get("cases", {}).get(key, {}).get("tether", {}).get("calls")
            if calls and calls.get("sync", 0) > calls.get("async", 0):
                out.append(
                    f"{link['link']}/{key}: Tether sent {calls['sync']} calls "
                    f"synchronously and pipelined {calls.get('async', 0)}"
                )
    return out


def errors(links: list[dict[str, Any]]) -> list[str]:
    """Every recorded failure: peers that could not be opened and cases that raised."""
    out = []
    for link in links:
        for peer, text in link.get("errors", {}).items():
            out.append(f"{link['link']}/{peer} unavailable: {text}")
        for key, recs in link.get("cases", {}).items():
            for peer, rec in recs.items():
                if isinstance(rec, dict) and rec.get("error"):
                    out.append(f"{link['link']}/{key}/{peer}: {rec['error']}")
    return out


# -- plot ---------------------------------------------------------------------------------


def plot(links: list[dict[str, Any]], local: dict[str, Any], path: Path, title: str) -> bool:
    """Write a bar chart of "x reference" per case (Tether and RPyC, log scale, targets as
    red ticks) per link to ``path``. Returns False (and writes nothing) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(links), 1, figsize=(11, 4.2 * len(links)), squeeze=False)
    for ax, link in zip(axes[:, 0], links, strict=True):
        rows = [
            r
            for r in rows_for(list(link.get("sizes", {}).get("bulk_mib", [])))
            if r.key in link.get("cases", {})
        ]
        labels, tether_r, rpyc_r, targets = [], [], [], []
        for row in rows:
            recs = link["cases"][row.key]
            ref = reference(row, link, local)
            labels.append(row.label.replace(" (", "\n("))
            tether_r.append(ratio(row, median(recs.get("tether")), ref) or math.nan)
            rpyc_r.append(ratio(row, median(recs.get("rpyc")), ref) or math.nan)
            targets.append(_target_ratio(row, link["link"], ref))
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], tether_r, width=0.4, label="Tether", color="#2a7ab0")
        ax.bar([x + 0.2 for x in xs], rpyc_r, width=0.4, label="RPyC classic", color="#c9803a")
        for x, t in zip(xs, targets, strict=True):
            if t is not None:
                ax.hlines(t, x - 0.45, x + 0.45, colors="red", linewidth=2)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("x reference (lower is better)")
        ax.set_title(
            f"{LINK_TITLES.get(link['link'], link['link'])}: {link_summary(link)}", fontsize=9
        )
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"{title}\nreference = raw socket floor (null, pipelined, bulk) or local "
        "(others); red = target",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _target_ratio(row: Row, link: str, ref: float | None) -> float | None:
    limits: dict[str, float | dict[str, float]] = {
        "null": 2.0,
        "pipelined": 3.0,
        "fine": 3.0,
        "small": {"loopback": 1.3, "dc": 1.5},
        "large": {"loopback": 1.05, "dc": 1.1},
    }
    if link not in row.targets:
        return None
    if row.key.startswith("bulk"):
        return 2.0
    if row.key == "startup":
        return (ref + 1.5) / ref if ref else None
    limit = limits.get(row.key)
    if isinstance(limit, dict):
        return limit.get(link)
    return limit
