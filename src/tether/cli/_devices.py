"""``tether devices``: what this host would offer as an acceptor.

A thin shell over :mod:`tether.acceptor._devices`; all the work is there.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DESCRIPTION = """\
List the devices `tether serve` would offer from this machine: the CPU, and the
NVIDIA (NVML), AMD (amdsmi or rocm-smi) and Intel (torch.xpu) GPUs it finds,
with their memory, the frameworks whose build can use each one, and whether a
slice's compute share can be enforced there (and why not, where it cannot).
A vendor with no devices says why (e.g. "no NVIDIA driver").
"""

EPILOG = """\
examples:
  tether devices                     the table
  tether devices --json              the same as JSON (what the acceptor registers)
  tether devices --devices cpu:0,nvidia:0
                                     only what `tether serve --devices ...` would offer
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="list the devices and frameworks this host can offer",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--devices",
        metavar="FILTER",
        default="",
        help=(
            "restrict to these devices, comma-separated: a vendor (nvidia), "
            "vendor:index (nvidia:0) or a full id (nvidia:GPU-8f3...); default all"
        ),
    )
    parser.add_argument(
        "--no-frameworks",
        action="store_true",
        help="skip probing framework builds (each probe imports the framework in a subprocess)",
    )
    parser.set_defaults(handler=run)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tether.acceptor._devices import discover, filter_devices, frameworks_for

    found = discover(frameworks=not args.no_frameworks)
    devices = filter_devices(found.devices, args.devices)  # DeviceFilterError: a TetherError
    if args.json:
        data = found.to_dict()
        data["devices"] = [
            {**d.to_dict(), "frameworks": [f.name for f in frameworks_for(d, found.frameworks)]}
            for d in devices
        ]
        print(json.dumps(data, indent=2))
        return 0

    rows = [["ID", "VENDOR", "MODEL", "MEMORY (free/total)", "FRAMEWORKS", "COMPUTE SHARE"]]
    for d in devices:
        fws = ", ".join(f.name for f in frameworks_for(d, found.frameworks)) or "-"
        share = ("enforced: " if d.compute_share_supported else "not enforced: ") + (
            d.compute_share_reason or "no mechanism"
        )
        rows.append(
            [
                d.id,
                d.vendor,
                d.model,
                f"{_gib(d.memory_free)} / {_gib(d.memory_total)}",
                fws,
                share,
            ]
        )
    print(_table(rows))
    if found.frameworks:
        print("\nframeworks:")
        for f in found.frameworks:
            build = f.build or "build unknown"
            extra = f" ({f.detail})" if f.detail else ""
            print(f"  {f.name} {f.version}  {build}{extra}")
    print("\nprobes:")
    for p in found.probes:
        print(f"  {p.vendor:<7} {p.note}")
    return 0
