"""The IPython extension: ``%load_ext tether``, then ``%tether connect --remote torch``.

Theory of operation
-------------------
``%tether connect`` opens a session with :func:`tether.connect` (an acceptor on
loopback in the kernel when no address is given, or a slice leased from a pool),
checks that the worker can import every ``--remote`` module, and installs the
same import hook ``tether run`` installs in a script
(:func:`tether.client._importer.install`): from then on ``import torch`` in a
cell yields the worker's torch. Cells run through IPython's cell runner, which
:mod:`tether.client._trycheck` knows, so calls at a cell's top level are
pipelined and calls inside a cell's ``try`` raise in place.

A cell is the notebook's unit of output and failure, so after each cell the
session is synced: prints of remote code that is still pending land in that
cell's output, and a remote error of the cell's last pipelined calls is shown
as that cell's error (not the next one's).

``%tether disconnect`` undoes everything: the import hook, the remote modules in
``sys.modules`` (local modules the connect displaced come back), the wrapped
``sys.stdout``/``sys.stderr``, the session (and its embedded acceptor), the lease.

Tether's own errors (unreachable acceptor, refused token, module missing on the
worker, lost worker) show as one line in the cell; exceptions raised by remote
code show as usual, with the worker's traceback attached.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from tether._errors import ConfigError, ConnectError, RemoteTraceback, TetherError
from tether.cli._slice import add_slice_arguments, slice_kwargs, wants_pool
from tether.client._session import Session

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

EXAMPLES = """\
examples:
  %tether connect --remote torch                 (an acceptor on loopback in this kernel)
  %tether connect tcp://gpuhost:7070 --token-file token --remote torch --remote numpy
  %tether connect --pool http://pool:8600 --gpus 0.5 --remote torch
  %tether status
  %tether disconnect
"""


class _Done(Exception):
    """``-h`` printed the help: nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as IPython usage errors instead of exiting."""

    def error(self, message: str) -> NoReturn:
        from IPython.core.error import UsageError

        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            self.error(message or "invalid arguments")
        raise _Done


def _parser() -> _Parser:
    p = _Parser(
        prog="%tether",
        description="Use the accelerator of a remote worker from this notebook.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", metavar="{connect,status,disconnect}")
    c = sub.add_parser(
        "connect",
        help="open a session; `import MODULE` then yields the worker's module",
        description="Open a session. With no URL (and no TETHER_CONNECT), an acceptor is "
        "started on loopback in this kernel, using this machine's devices.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("url", nargs="?", help="acceptor address, e.g. tcp://gpuhost:7070")
    c.add_argument(
        "--remote",
        action="append",
        metavar="MODULE",
        required=True,
        help="a module to execute remotely, with its submodules (repeatable)",
    )
    c.add_argument("--token-file", metavar="PATH", type=Path, help="file holding the token")
    c.add_argument(
        "--tls-ca",
        metavar="PATH",
        type=Path,
        help="CA file to verify a tls:// acceptor and an https:// pool (default $TETHER_TLS_CA)",
    )
    add_slice_arguments(c)
    sub.add_parser("status", help="the session: address, id, remote modules, calls so far")
    sub.add_parser("disconnect", help="close the session and remove the remote modules")
    return p


@dataclass
class _Attachment:
    """What ``%tether connect`` set up, so that ``disconnect`` can undo it."""

    session: Session
    names: frozenset[str]
    finder: Any  # tether.client._importer.RemoteFinder
    displaced: dict[str, ModuleType]  # local modules the remote ones replace
    embedded: bool
    lease: Any = None  # tether.client._lease.Lease


def _top(name: str) -> str:
    return name.partition(".")[0]


class _Extension:
    """The extension loaded into one IPython shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.attached: _Attachment | None = None
        self._custom_exc = False

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        self.shell.register_magic_function(self.magic, magic_kind="line", magic_name="tether")
        self.shell.events.register("post_run_cell", self.after_cell)
        if not self.shell.custom_exceptions:  # never displace a handler the user set
            self.shell.set_custom_exc((TetherError,), _show_custom)
            self._custom_exc = True

    def unload(self) -> None:
        if self.attached is not None:
            self.detach()
        self.shell.events.unregister("post_run_cell", self.after_cell)
        self.shell.magics_manager.magics["line"].pop("tether", None)
        if self._custom_exc and self.shell.custom_exceptions == (TetherError,):
            self.shell.set_custom_exc((), None)

    # -- the magic -----------------------------------------------------------------------
    def magic(self, line: str) -> None:
        """%tether connect [URL] --remote MODULE ... | status | disconnect  (-h for help)"""
        from IPython.core.error import UsageError

        try:
            args = _parser().parse_args(shlex.split(line))
        except _Done:
            return
        except ValueError as exc:  # shlex: an unclosed quote
            raise UsageError(f"%tether: {exc}") from None
        if args.action == "connect":
            self.connect(args)
        elif args.action == "disconnect":
            if self.attached is None:
                print("tether: not connected")
            else:
                address = self.attached.session.address
                self.detach()
                print(f"tether: disconnected from {address}")
        else:
            print(self.status())

    def connect(self, args: argparse.Namespace) -> None:
        from IPython.core.error import UsageError

        if self.attached is not None:
            s = self.attached.session
            raise UsageError(
                f"%tether: already connected to {s.address} (session {s.session_id}); "
                "run %tether disconnect first"
            )
        names = frozenset(m.strip() for item in args.remote for m in item.split(",") if m.strip())
        if not names:
            raise UsageError("%tether connect: --remote needs a module name")
        pool_wanted = wants_pool(args)
        if pool_wanted and (args.url or args.token_file):
            raise UsageError("%tether connect: give either an acceptor URL or --pool, not both")
        self.attached = _attach(args, names, pool_wanted)
        a = self.attached
        where = " (an acceptor on loopback in this kernel)" if a.embedded else ""
        print(
            f"tether: session {a.session.session_id} on {a.session.address}{where}; "
            f"remote: {', '.join(sorted(names))}"
        )
        if a.lease is not None:
            print(f"tether: {a.lease.describe()}")

    def status(self) -> str:
        a = self.attached
        if a is None:
            return "tether: not connected (%tether connect --remote MODULE)"
        s = a.session
        where = " (an acceptor on loopback in this kernel)" if a.embedded else ""
        rows = [
            ("address", f"{s.address}{where}"),
            ("session", s.session_id),
            ("state", "closed" if s.closed else "lost" if s.lost else "open"),
            ("remote", ", ".join(sorted(a.names))),
            ("calls", f"{s.stats['sync']} sync, {s.stats['async']} async"),
        ]
        if a.lease is not None:
            rows.append(("lease", a.lease.describe()))
        return "\n".join(f"{k:<8} {v}" for k, v in rows)

    def detach(self) -> None:
        a, self.attached = self.attached, None
        if a is not None:
            atexit.unregister(a.session.close)
            _detach(a)

    # -- after each cell -----------------------------------------------------------------
    def after_cell(self, result: Any) -> None:
        """Sync, so that pending remote prints and errors belong to this cell."""
        a = self.attached
        if a is None or a.session.closed:
            return
        try:
            a.session.barrier()
        except Exception as exc:
            if result is not None and result.success:
                result.error_in_exec = exc  # the cell failed: its reply says so
            _show(self.shell, exc, None)


def _attach(args: argparse.Namespace, names: frozenset[str], pool_wanted: bool) -> _Attachment:
    """Open the session, check the modules, install the import hook."""
    from tether._api import connect
    from tether.client._importer import install

    displaced = {k: m for k, m in sys.modules.items() if _top(k) in names}
    lease = None
    embedded = False
    tls_ca = args.tls_ca
    if pool_wanted:
        lease, tls_ca = _lease(args)
        url: str | None = lease.address
        token: str | None = lease.ticket
    else:
        url = args.url or os.environ.get("TETHER_CONNECT") or None
        embedded = url is None
        token = None
        if args.token_file is not None:
            try:
                token = args.token_file.read_text().strip()
            except OSError as exc:
                raise ConnectError(f"cannot read {args.token_file}: {exc.strerror}") from None
    try:
        session = connect(url, token, remote=names, tls_ca=tls_ca)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    try:
        for name in sorted(names):
            session.import_module(name)  # a module missing there fails here, in one line
        finder = install(names, lambda: session)
    except BaseException:
        session.close()
        if lease is not None:
            lease.release()
        _restore_modules(names, displaced)
        raise
    atexit.register(session.close)  # the kernel exits: close the session cleanly
    return _Attachment(session, names, finder, displaced, embedded, lease)


def _lease(args: argparse.Namespace) -> tuple[Any, str | None]:
    """A slice from the pool, as ``tether run --pool`` gets one, and the CA file to
    verify its acceptor with."""
    from IPython.core.error import UsageError

    from tether._api import lease
    from tether._config import require_pool

    try:
        cfg = require_pool(
            args.pool,
            args.pool_token,
            token_file=args.pool_token_file,
            ca=args.tls_ca,
            how="pass --pool URL and --pool-token-file PATH",
        )
        options = slice_kwargs(args)
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"%tether connect: {exc}") from None
    held = lease(cfg.url, cfg.token, tls_ca=cfg.ca, **options)
    return held, held.ca


def _detach(a: _Attachment) -> None:
    from tether.client._importer import uninstall

    uninstall(a.finder)
    _restore_modules(a.names, a.displaced)
    try:
        a.session.close()
    finally:
        if a.lease is not None:
            a.lease.release()


def _restore_modules(names: frozenset[str], displaced: dict[str, ModuleType]) -> None:
    for name in [k for k in sys.modules if _top(k) in names]:
        del sys.modules[name]
    # Put back what was there before: a module with C extensions (torch) cannot be
    # imported a second time in one process.
    sys.modules.update(displaced)


# -- how errors show ----------------------------------------------------------------------
def _one_line(exc: BaseException) -> bool:
    """Tether's own errors say what to do in their message; remote ones keep their frames."""
    return isinstance(exc, TetherError) and not isinstance(exc.__cause__, RemoteTraceback)


def _show(shell: Any, exc: BaseException, tb: Any) -> None:
    if _one_line(exc):
        exc.with_traceback(None)
        exc._render_traceback_ = lambda: [f"{type(exc).__name__}: {exc}"]  # type: ignore[attr-defined]
        try:
            shell.showtraceback((type(exc), exc, None))
        finally:
            del exc._render_traceback_  # type: ignore[attr-defined]
    else:
        shell.showtraceback((type(exc), exc, tb))


def _show_custom(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    """IPython's handler for an uncaught TetherError in a cell (``set_custom_exc``)."""
    if _one_line(value):
        _show(shell, value, tb)
    else:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


# -- the extension's entry points ---------------------------------------------------------
_loaded: dict[int, _Extension] = {}


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext tether``: add the ``%tether`` magic to ``shell``."""
    if id(shell) in _loaded:
        return
    ext = _loaded[id(shell)] = _Extension(shell)
    ext.load()


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext tether``: disconnect and remove the magic."""
    ext = _loaded.pop(id(shell), None)
    if ext is not None:
        ext.unload()
