"""Shared pieces of the pool's sub-commands (not a sub-command itself).

Where the pool is and which token to use comes from, highest first: ``--pool``
and ``--token-file`` (or ``--token``), the environment (``TETHER_POOL``,
``TETHER_POOL_TOKEN``, ``TETHER_POOL_TOKEN_FILE``), then the ``[pool]`` table of
the config file (see :mod:`tether._config`). Every command spells the
credential the same way, for the service it talks to: ``--token-file PATH`` or
``--token TOKEN``. ``--token`` exists for convenience; any local user can read
a command line, so scripts should use a file or the environment. An
``https://`` pool is verified against ``--tls-ca`` (or ``TETHER_TLS_CA``, or
the config file's ``ca``), else the system's trust.

Every failure of the connection or of the pool is one line that says what to do
(:func:`pool_url`, :func:`check_month`, and the hints in ``tether.cli.main``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether._config import pool_url
from tether._errors import TetherError
from tether._units import parse_month

if TYPE_CHECKING:
    from tether.poolapi import PoolClient

__all__ = [
    "add_client_args",
    "ago",
    "check_month",
    "client_from",
    "pool_url",
    "print_json",
    "require_pool_extra",
    "table",
]


def add_client_args(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    group = parser.add_argument_group("pool connection")
    group.add_argument(
        "--pool",
        metavar="URL",
        help="the pool's URL, e.g. http://pool:8600 (default: $TETHER_POOL, then the config file)",
    )
    group.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        help="file holding your API token (default: $TETHER_POOL_TOKEN, "
        "$TETHER_POOL_TOKEN_FILE, then the config file)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="API token itself (visible to other local users: prefer --token-file)",
    )
    group.add_argument(
        "--tls-ca",
        metavar="PATH",
        type=Path,
        help="CA file to verify an https:// pool with (default $TETHER_TLS_CA, the config file)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def client_from(args: argparse.Namespace) -> PoolClient:
    from tether._config import config_path, resolve_pool
    from tether.poolapi import PoolClient

    cfg = resolve_pool(
        getattr(args, "pool", None),
        getattr(args, "token", None),
        token_file=getattr(args, "token_file", None),
        ca=getattr(args, "tls_ca", None),
    )
    if not cfg.url:
        raise TetherError(
            "no pool configured: pass --pool URL, set TETHER_POOL, or put url = ... under "
            f"[pool] in {config_path()}"
        )
    if not cfg.token:
        raise TetherError(
            "no API token: pass --token-file PATH, set TETHER_POOL_TOKEN or "
            "TETHER_POOL_TOKEN_FILE, or put token = ... under "
            f"[pool] in {config_path()} (an admin issues tokens with `tether admin token create`)"
        )
    return PoolClient(pool_url(cfg.url), cfg.token, ca=cfg.ca)


def require_pool_extra(command: str) -> None:
    """Fail in one line, saying what to install, when the pool service's
    dependencies (the ``[pool]`` extra) are missing; clients never need them."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "pydantic") if importlib.util.find_spec(m) is None]
    if missing:
        raise TetherError(
            f"`{command}` runs the pool service, which needs {', '.join(missing)}: "
            "install the pool extra, pip install 'tether[pool]' (from a checkout: "
            "pip install -e '.[pool]')"
        )


def check_month(month: str | None) -> str | None:
    """``month`` if it is YYYY-MM (or None); a TetherError with an example otherwise."""
    return None if month is None else parse_month(month, what="--month", error=TetherError)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def ago(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "-"
    seconds = max(0.0, (now if now is not None else time.time()) - t)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
