"""The ``tether`` command: a thin shell over the public APIs.

Each sub-command lives in its own module ``tether.cli._<name>`` that exposes
``register(subparsers)``; heavy imports happen inside the handlers so that
``tether --help`` stays fast and the client needs nothing it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order `tether --help` lists them in.
_COMMANDS: tuple[str, ...] = (
    "run",
    "serve",
    "up",
    "devices",
    "pool",
    "admin",
    "usage",
    "node",
    "sessions",  # also registers `tether session show|cancel|logs`
    "top",
    "submit",
    "group",  # registers `tether groups` and `tether group show|cancel|logs`
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether",
        description=(
            "Use accelerators on other machines from unmodified Python programs, "
            "and share a pool of them fairly."
        ),
        epilog="Run `tether COMMAND --help` for the options of one command.",
    )
    from tether._version import __version__

    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        module = importlib.import_module(f"tether.cli._{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tether ... | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not complain, and stop quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # the last line of defence: no bare tracebacks for users
        from tether._errors import TetherError

        if not isinstance(exc, TetherError):
            raise
        print(error_line(exc), file=sys.stderr)
        return 1
    return int(code or 0)


def error_line(exc: BaseException) -> str:
    """The one line every command prints for a failure: what went wrong, and
    (for the connection and credential failures that have one) what to do."""
    from tether._errors import AuthenticationError, ConnectError

    text = f"tether: error: {exc}"
    if isinstance(exc, AuthenticationError):
        text += " (check the token: --token-file, TETHER_POOL_TOKEN, or the config file)"
    elif isinstance(exc, ConnectError) and "cannot reach the pool" in str(exc):
        text += " (is it running, and is the URL right? --pool, TETHER_POOL or the config file)"
    return text


if __name__ == "__main__":
    sys.exit(main())
