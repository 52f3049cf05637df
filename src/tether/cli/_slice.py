"""The options that ask a pool for a slice, shared by ``tether run`` and
``%tether connect`` (one declaration, one reading)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tether.client._lease import slice_request

#: The options that mean "from a pool" even without --pool (the pool then comes
#: from TETHER_POOL or the config file).
_SLICE_OPTIONS = ("gpus", "gpu_memory", "vendor", "model")


def add_slice_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the "slice from a pool" option group to ``parser``."""
    pool = parser.add_argument_group("slice from a pool")
    pool.add_argument("--pool", metavar="URL", help="the pool, e.g. http://pool:8600")
    pool.add_argument(
        "--pool-token-file", metavar="PATH", type=Path,
        help="file holding your API token (default $TETHER_POOL_TOKEN, "
        "$TETHER_POOL_TOKEN_FILE, then the config file)",
    )  # fmt: skip
    pool.add_argument(
        "--pool-token", metavar="TOKEN",
        help="your API token itself (visible to other local users: prefer --pool-token-file)",
    )  # fmt: skip
    pool.add_argument(
        "--gpus", type=float, metavar="N",
        help="a fraction of one device (0.5) or a number of whole devices (2); default 1",
    )  # fmt: skip
    pool.add_argument(
        "--gpu-memory", metavar="SIZE", help="device memory to reserve, e.g. 8GiB (the limit)"
    )
    pool.add_argument("--vendor", help="nvidia, amd, intel or cpu")
    pool.add_argument("--model", help="device model glob, e.g. '*H100*'")
    pool.add_argument(
        "--framework", action="append", metavar="REQ", help="e.g. 'torch>=2.4' (repeatable)"
    )
    pool.add_argument("--node", help="only this node")
    pool.add_argument("--team", help="the team to charge (if you are in several)")
    pool.add_argument(
        "--no-wait", action="store_true", help="fail at once instead of queueing when nothing fits"
    )
    pool.add_argument(
        "--queue-timeout", type=float, metavar="S", help="give up after waiting this long"
    )


def slice_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The slice the options ask for, as keyword arguments of ``tether.lease``;
    ValueError for a bad value (checked here, before anything is asked of the pool)."""
    kwargs: dict[str, Any] = {
        "gpus": args.gpus,
        "memory": args.gpu_memory,
        "vendor": args.vendor,
        "model": args.model,
        "frameworks": args.framework,
        "node": args.node,
        "team": args.team,
        "wait": not args.no_wait,
        "queue_timeout_s": args.queue_timeout,
    }
    slice_request(**kwargs)
    return kwargs


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The pool request the options ask for; ValueError for a bad value."""
    return slice_request(**slice_kwargs(args))


def wants_pool(args: argparse.Namespace) -> bool:
    """Did the options ask for a slice from a pool?"""
    return bool(args.pool) or any(getattr(args, name) is not None for name in _SLICE_OPTIONS)
