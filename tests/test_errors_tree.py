"""One exception tree: every public exception class of Tether derives from
:class:`tether.TetherError` and is drawn in ``tether/_errors.py``'s docstring."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import tether._errors

#: Public exception classes outside the tree, each with why.
OUTSIDE = {
    # Not an error of its own: the worker's traceback, attached as __cause__ of a
    # remote exception that keeps its own type.
    "tether._errors.RemoteTraceback",
    # Control flow inside one pool transaction; never leaves tether.pool._core.
    "tether.pool._core.Unchanged",
}

_FIND = """
import importlib, json, pkgutil, sys
import tether
found = {}
for info in pkgutil.walk_packages(tether.__path__, "tether."):
    if info.name in ("tether.__main__", "tether._jupyter"):
        continue  # a program, and an extension that needs IPython
    module = importlib.import_module(info.name)
    for name, obj in vars(module).items():
        if (isinstance(obj, type) and issubclass(obj, BaseException)
                and obj.__module__ == info.name and not name.startswith("_")):
            found[f"{info.name}.{name}"] = [c.__name__ for c in obj.__mro__]
print(json.dumps(found))
"""


def exception_classes() -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _FIND], capture_output=True, text=True, timeout=120, check=True
    )
    found: dict[str, list[str]] = json.loads(out.stdout)
    return found


def test_every_public_exception_is_a_tether_error_and_drawn() -> None:
    classes = exception_classes()
    assert "tether.transport._channel.ChannelClosed" in classes  # the search finds them
    outside = {name for name, mro in classes.items() if "TetherError" not in mro}
    assert outside <= OUTSIDE
    drawing = tether._errors.__doc__ or ""
    undrawn = {
        name
        for name in set(classes) - OUTSIDE
        if not re.search(rf"\b{name.rpartition('.')[2]}\b", drawing)
    }
    assert undrawn == set(), "draw them in the docstring of tether/_errors.py"
