"""Which call sites would catch a remote error: read from the exception table."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tether.client._trycheck import in_handler

_SRC = str(Path(tether.__file__).parent.parent)


def probe() -> bool:
    return in_handler(2)


def in_except() -> bool:
    try:
        return probe()
    except RuntimeError:
        return False


def in_with() -> bool:
    with open(__file__):
        return probe()


def in_finally() -> bool:
    try:
        return probe()
    finally:
        pass


def only_keyboard_interrupt() -> bool:
    try:
        return probe()
    except KeyboardInterrupt:
        return False


def with_inside_try() -> bool:
    try:
        with open(__file__):
            return probe()
    except Exception:
        return False


def bare_except() -> bool:
    try:
        return probe()
    except:  # noqa: E722
        return False


def caller_catches() -> bool:
    try:
        return in_finally()
    except (ValueError, IndexError):
        return False


def after_the_try() -> bool:
    with contextlib.suppress(Exception):
        pass
    return probe()


def second_clause_catches() -> bool:
    try:
        return probe()
    except KeyboardInterrupt:
        return False
    except ValueError:
        return False


def in_open_with_of_a_path_built_by_calls() -> bool:
    import os

    with open(os.path.join(os.path.dirname(__file__), "test_trycheck.py"), encoding="utf-8") as f:
        f.read(0)
        return probe()


def in_open_with_inside_a_local_with() -> bool:
    with contextlib.suppress(RuntimeError), open(__file__):
        return probe()


_SHADOWED = """
def open(path):  # the script's own open: its manager may swallow errors
    return contextlib.suppress(RuntimeError)

def in_shadowed_open_with():
    with open(__file__):
        return probe()
"""


def in_shadowed_open_with() -> bool:
    scope = {"contextlib": contextlib, "probe": probe, "__file__": __file__}
    exec(compile(_SHADOWED, __file__, "exec"), scope)
    return bool(scope["in_shadowed_open_with"]())


def in_local_with_that_may_swallow() -> bool:
    import contextlib

    with contextlib.suppress(RuntimeError):
        return probe()


class RemoteLike:
    """Enters like a proxy does: records its with statement as remote."""

    def __enter__(self) -> RemoteLike:
        from tether.client._trycheck import note_transparent_with

        note_transparent_with(sys._getframe(1))
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def in_transparent_with() -> bool:
    with RemoteLike():
        return probe()


def remote_with_inside_try() -> bool:
    try:
        with RemoteLike():
            return probe()
    except RuntimeError:
        return False


CASES = {
    "in_except": True,
    "bare_except": True,
    "with_inside_try": True,  # the try around it catches
    "second_clause_catches": True,
    "caller_catches": True,
    "in_with": False,  # a file from the builtin open only closes
    "in_open_with_of_a_path_built_by_calls": False,
    "in_open_with_inside_a_local_with": True,
    "in_shadowed_open_with": True,
    "in_local_with_that_may_swallow": True,
    "in_transparent_with": False,
    "remote_with_inside_try": True,
    "in_finally": True,
    "only_keyboard_interrupt": False,
    "after_the_try": False,
}


def test_handlers_are_classified_like_python_would_catch() -> None:
    # Run outside pytest: pytest's own frames have handlers around every test.
    out = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == CASES


_RUN_BY_RUNPY = """
import json
from tether.client._trycheck import in_handler

def probe():
    return in_handler(2)

top = probe()
try:
    caught = probe()
except RuntimeError:
    caught = False
print(json.dumps({"top": top, "caught": caught}))
"""


@pytest.mark.parametrize(
    "how",
    [
        "import runpy; runpy.run_path('probe_script.py', run_name='__main__')",
        "import runpy; runpy.run_module('probe_script', run_name='__main__')",
        "-m",
    ],
)
def test_a_script_started_by_runpy_is_not_inside_its_handlers(how: str, tmp_path: Path) -> None:
    # runpy runs the script inside a with block (its temporary module); frozen in
    # Python 3.11+, its frames name no file. The walk must stop at its runner, or
    # every call of a script started this way would be synchronous.
    (tmp_path / "probe_script.py").write_text(_RUN_BY_RUNPY)
    args = ["-m", "probe_script"] if how == "-m" else ["-c", how]
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{_SRC}"},
    ).stdout
    assert json.loads(out) == {"top": False, "caught": True}


if __name__ == "__main__":
    print(json.dumps({name: globals()[name]() for name in CASES}))
