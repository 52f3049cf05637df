"""Paths that remote code opens for the script mean the client's files.

Two routes lead here. Functions known to take a path (``torch.save``,
``torch.load``, ``numpy.save`` ...) are wrapped when their module is imported in
the worker, so a path argument becomes a file object backed by the client. And
code shipped from the client (the script's functions and classes, its modules)
gets an ``open`` that does the same. Reads fetch the whole file in one round
trip; writes are buffered and sent in one piece when the file is closed, which
suits checkpoints and arrays, the common case.

``numpy.memmap`` needs a real file to map. Opened read-only (``"r"``, ``"c"``)
it maps the client's file: the very file when the worker sees the same one
(same device, inode, size and modification time: an acceptor on the client's
machine), else a copy staged in the scratch directory, fetched again only when
the client's file has changed (one ``stat`` round trip per open, as data
loaders that map their file for every batch do).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from tether.wire._requests import (
    IsDir,
    ListDir,
    ObjectCall,
    ReadFile,
    RequestFn,
    Stat,
    WriteFile,
)

#: module -> function -> (index of the path argument, its keyword, "r" or "w")
PATH_FUNCTIONS: dict[str, dict[str, tuple[int, str, str]]] = {
    "torch": {"save": (1, "f", "w"), "load": (0, "f", "r")},
    "torch.jit": {"save": (1, "f", "w"), "load": (0, "f", "r")},
    "numpy": {
        "save": (0, "file", "w"),
        "load": (0, "file", "r"),
        "savez": (0, "file", "w"),
        "savez_compressed": (0, "file", "w"),
        "savetxt": (0, "fname", "w"),
        "loadtxt": (0, "fname", "r"),
        "genfromtxt": (0, "fname", "r"),
    },
}

_scratch: str | None = None


def scratch_dir() -> str:
    """This worker's private directory for staging the client's files."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="tether-worker-")
    return _scratch


def cleanup() -> None:
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)


class ClientWriteFile(io.BytesIO):
    """A file being written for the client; its bytes go there on close."""

    def __init__(self, request: RequestFn, path: str, append: bool) -> None:
        super().__init__()
        self.name = path
        self._request = request
        self._append = append

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            super().close()
            self._request(WriteFile(self.name, data, self._append))


def open_client_file(request: RequestFn, path: Any, mode: str = "r", **kw: Any) -> Any:
    """Open ``path`` on the client. Text modes get a TextIOWrapper."""
    path = os.fspath(path)
    binary = "b" in mode
    if any(c in mode for c in "wax"):
        raw: Any = ClientWriteFile(request, path, append=False)
        if "a" in mode:
            with contextlib.suppress(FileNotFoundError):
                raw.write(request(ReadFile(path)))
    else:
        raw = io.BytesIO(request(ReadFile(path)))
        raw.name = path
    if binary:
        return raw
    return io.TextIOWrapper(
        raw,
        encoding=kw.get("encoding") or "utf-8",
        errors=kw.get("errors"),
        newline=kw.get("newline"),
    )


class ClientFile(io.RawIOBase):
    """A file object of the client's, passed to remote code (``torch.save(x, f)``).

    Writes are gathered into chunks of up to 1 MiB before they travel; any
    read, seek, tell or flush sends them first, so the client's file sees the
    same bytes in the same order. Closing it here does not close the client's
    file: the script that opened it owns it.
    """

    _CHUNK = 1 << 20

    def __init__(self, request: RequestFn, oid: int, name: Any, mode: str) -> None:
        super().__init__()
        self._request = request
        self._oid = oid
        self.name = name
        self.mode = mode
        self._pending = bytearray()
        self._caps: dict[str, bool] = {}

    def _call(self, method: str, *args: Any) -> Any:
        return self._request(ObjectCall(self._oid, method, args))

    def _send_pending(self) -> None:
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            self._call("write", data)

    def _cap(self, name: str) -> bool:
        if name not in self._caps:
            self._caps[name] = bool(self._call(name))
        return self._caps[name]

    def readable(self) -> bool:
        return self._cap("readable")

    def writable(self) -> bool:
        return self._cap("writable")

    def seekable(self) -> bool:
        return self._cap("seekable")

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        self._pending += b
        if len(self._pending) >= self._CHUNK:
            self._send_pending()
        return n

    def readinto(self, b: Any) -> int:
        self._send_pending()
        data = self._call("read", memoryview(b).nbytes)
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        self._send_pending()
        return self._call("read", size)  # type: ignore[no-any-return]

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, pos: int, whence: int = 0) -> int:
        self._send_pending()
        return self._call("seek", pos, whence)  # type: ignore[no-any-return]

    def tell(self) -> int:
        self._send_pending()
        return self._call("tell")  # type: ignore[no-any-return]

    def flush(self) -> None:
        if not self.closed:
            self._send_pending()
            self._call("flush")

    def close(self) -> None:
        if not self.closed:
            self._send_pending()
        super().close()


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def wrap_path_function(fn: Callable[..., Any], spec: tuple[int, str, str], request: RequestFn):  # type: ignore[no-untyped-def]
    """Make ``fn``'s path argument mean a file on the client.

    The file is staged in the worker's scratch directory under its own base
    name (formats such as torch's zip archive record it), so what the client
    ends up with is byte for byte what a local call would have written.
    """
    index, keyword, mode = spec

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) > index and _is_path(args[index]):
            path = os.fspath(args[index])
        elif _is_path(kwargs.get(keyword)):
            path = os.fspath(kwargs[keyword])
        else:
            return fn(*args, **kwargs)
        # The stage mirrors the path as the client sees it, relative paths
        # relative to the stage, so a library's own messages (torch's "Parent
        # directory x does not exist") name what the script named.
        stage = tempfile.mkdtemp(dir=scratch_dir())
        relative = not os.path.isabs(path)
        local = os.path.join(stage, path.lstrip(os.sep))
        parent = os.path.dirname(path)
        if not parent or request(IsDir(parent)):
            os.makedirs(os.path.dirname(local), exist_ok=True)
        if mode == "r":
            with open(local, "wb") as f:
                f.write(request(ReadFile(path)))
        arg = path if relative else local
        if len(args) > index:
            args = (*args[:index], arg, *args[index + 1 :])
        else:
            kwargs[keyword] = arg
        cwd = os.getcwd()
        if relative:
            os.chdir(stage)
        try:
            result = fn(*args, **kwargs)
        finally:
            if relative:
                os.chdir(cwd)
        if mode == "w":
            # Send what was written (libraries may add a suffix: numpy's .npy).
            for root, _dirs, files in os.walk(stage):
                for name in sorted(files):
                    full = os.path.join(root, name)
                    with open(full, "rb") as f:
                        data = f.read()
                    target = os.path.relpath(full, stage)
                    request(WriteFile(target if relative else os.sep + target, data, False))
            shutil.rmtree(stage, ignore_errors=True)
        return result

    wrapper.__tether_wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


#: numpy.memmap modes that only read the file.
_MEMMAP_READ_MODES = frozenset({"r", "c", "readonly", "copyonwrite"})


class ClientFileCache:
    """Local paths for the client's files, for libraries that need a real file."""

    def __init__(self, request: RequestFn) -> None:
        self._request = request
        self._copies: dict[str, tuple[int, int, str]] = {}

    def local_path(self, path: str) -> str:
        """A path in the worker holding what the client's ``path`` holds now."""
        theirs = self._request(Stat(path))  # FileNotFoundError as locally
        try:
            ours = _REAL_STAT(path)
        except OSError:
            ours = None
        if ours is not None and (ours.st_dev, ours.st_ino, ours.st_size, ours.st_mtime_ns) == (
            theirs.st_dev,
            theirs.st_ino,
            theirs.st_size,
            theirs.st_mtime_ns,
        ):
            return path
        copy = self._copies.get(path)
        if copy is not None and copy[:2] == (theirs.st_size, theirs.st_mtime_ns):
            return copy[2]
        local = os.path.join(tempfile.mkdtemp(dir=scratch_dir()), os.path.basename(path))
        with open(local, "wb") as f:
            f.write(self._request(ReadFile(path)))
        self._copies[path] = (theirs.st_size, theirs.st_mtime_ns, local)
        return local


_REAL_STAT = os.stat


def route_memmap(memmap: Any, files: ClientFileCache) -> None:
    """Make read-only ``numpy.memmap`` of a path map the client's file."""
    original = memmap.__new__
    if hasattr(original, "__tether_wrapped__"):
        return

    @functools.wraps(original)
    def __new__(subtype: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", args[1] if len(args) > 1 else "r+")
        if _is_path(filename) and mode in _MEMMAP_READ_MODES:
            filename = files.local_path(os.fspath(filename))
        return original(subtype, filename, *args, **kwargs)

    __new__.__tether_wrapped__ = original  # type: ignore[attr-defined]
    memmap.__new__ = staticmethod(__new__)


class PathPatcher(importlib.abc.MetaPathFinder):
    """Wraps the known path-taking functions right after their module loads."""

    def __init__(self, request: RequestFn) -> None:
        self._request = request
        self._files = ClientFileCache(request)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in PATH_FUNCTIONS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            self.patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def patch(self, module: Any) -> None:
        for name, spec in PATH_FUNCTIONS.get(module.__name__, {}).items():
            fn = getattr(module, name, None)
            if fn is not None and not hasattr(fn, "__tether_wrapped__"):
                setattr(module, name, wrap_path_function(fn, spec, self._request))
        if module.__name__ == "numpy" and isinstance(getattr(module, "memmap", None), type):
            route_memmap(module.memmap, self._files)


def install_open(request: RequestFn, client_files: set[str]) -> None:
    """Route ``open`` calls made by the client's shipped code to the client."""
    real_open = builtins.open

    @functools.wraps(real_open)
    def tether_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if _is_path(file) and sys._getframe(1).f_code.co_filename in client_files:
            return open_client_file(request, file, mode, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    builtins.open = tether_open
    _route_os(request, client_files)


def _route_os(request: RequestFn, client_files: set[str]) -> None:
    """The script's own code asks the client's filesystem what is there."""
    import stat as stat_module

    def from_client() -> bool:
        return sys._getframe(2).f_code.co_filename in client_files

    real_listdir, real_stat = os.listdir, os.stat
    real_exists, real_isfile, real_isdir = os.path.exists, os.path.isfile, os.path.isdir
    real_getsize = os.path.getsize

    def listdir(path: Any = ".") -> list[str]:
        if _is_path(path) and from_client():
            return request(ListDir(os.fspath(path)))  # type: ignore[no-any-return]
        return real_listdir(path)

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_path(path) and not args and not kwargs and from_client():
            return request(Stat(os.fspath(path)))
        return real_stat(path, *args, **kwargs)

    def _client_mode(path: Any) -> int | None:
        try:
            return request(Stat(os.fspath(path))).st_mode  # type: ignore[no-any-return]
        except OSError:
            return None

    def exists(path: Any) -> bool:
        if _is_path(path) and from_client():
            return _client_mode(path) is not None
        return real_exists(path)

    def isfile(path: Any) -> bool:
        if _is_path(path) and from_client():
            mode = _client_mode(path)
            return mode is not None and stat_module.S_ISREG(mode)
        return real_isfile(path)

    def isdir(path: Any) -> bool:
        if _is_path(path) and from_client():
            mode = _client_mode(path)
            return mode is not None and stat_module.S_ISDIR(mode)
        return real_isdir(path)

    def getsize(path: Any) -> int:
        if _is_path(path) and from_client():
            return request(Stat(os.fspath(path))).st_size  # type: ignore[no-any-return]
        return real_getsize(path)

    os.listdir = listdir  # type: ignore[assignment]
    os.stat = stat
    os.path.exists = exists
    os.path.isfile = isfile
    os.path.isdir = isdir  # type: ignore[assignment]
    os.path.getsize = getsize  # type: ignore[assignment]
