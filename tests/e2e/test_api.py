"""The Python API (``tether.connect``) used by a real script against a real acceptor.

Scripts run as their own processes: under pytest every call would sit inside
pytest's own ``try`` blocks, which makes every remote call synchronous.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from e2e_harness import Acceptor

pytestmark = pytest.mark.slow


def _run(acceptor: Acceptor, tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "api_script.py"
    script.write_text(
        "import sys\nimport tether\n\n"
        "URL, TOKEN = sys.argv[1], open(sys.argv[2]).read().strip()\n" + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script), acceptor.url, str(acceptor.token_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_calls_inside_the_session_block_are_pipelined(acceptor: Acceptor, tmp_path: Path) -> None:
    """``with tether.connect() as s:`` closes the session but never swallows an
    error, so it must not make every call inside it synchronous."""
    out = _run(
        acceptor,
        tmp_path,
        """
        with tether.connect(URL, token=TOKEN) as s:
            d = s.import_module("collections").deque()
            for i in range(3):
                d.append(i)  # the first calls of a site learn what it returns
            before = dict(s.stats)
            for i in range(3, 200):
                d.append(i)
            print(s.stats["sync"] - before["sync"], s.stats["async"] - before["async"])
            print(len(d))
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0 197", "200"]


def test_a_pipelined_error_in_the_session_block_surfaces_at_the_next_value(
    acceptor: Acceptor, tmp_path: Path
) -> None:
    out = _run(
        acceptor,
        tmp_path,
        """
        with tether.connect(URL, token=TOKEN) as s:
            d = s.import_module("collections").deque([1])
            for _ in range(4):
                d.rotate(1)
            d.rotate("not a number")  # pipelined: fails in the worker, later
            print("never printed")  # printing first syncs: the error raises here
        print("never printed either")  # the with block let the error through
        """,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert 'print("never printed")' in out.stderr  # the line the error surfaced at
    last = out.stderr.splitlines()[-1]
    assert last == "TypeError: 'str' object cannot be interpreted as an integer"


def test_prints_stay_in_order_across_sessions_one_after_another(
    acceptor: Acceptor, tmp_path: Path
) -> None:
    """Each session orders the worker's output with the script's; closing one
    unwraps sys.stdout, and a later session wraps it again for itself."""
    out = _run(
        acceptor,
        tmp_path,
        """
        original = sys.stdout
        with tether.connect(URL, token=TOKEN) as s:
            s.import_module("builtins").print("remote 1")
        print("unwrapped:", sys.stdout is original)
        with tether.connect(URL, token=TOKEN) as s, tether.connect(URL, token=TOKEN) as t:
            for i in range(5):
                s.import_module("builtins").print("remote s", i)
                t.import_module("builtins").print("remote t", i)
                print("local", i)
        print("unwrapped:", sys.stdout is original)
        """,
    )
    assert out.returncode == 0, out.stderr
    expected = ["remote 1", "unwrapped: True"]
    for i in range(5):
        expected += [f"remote s {i}", f"remote t {i}", f"local {i}"]
    assert out.stdout.splitlines() == [*expected, "unwrapped: True"]


def test_a_models_parameters_keep_their_ids_while_it_lives_and_go_with_it(
    acceptor: Acceptor, tmp_path: Path
) -> None:
    """The fine-tuning recipe keys parameters by ``id`` after dropping them; the
    proxies that keep those ids must not keep the worker's parameters alive once
    the model is gone (a sweep over models would hold every model's weights)."""
    out = _run(
        acceptor,
        tmp_path,
        """
        import gc

        with tether.connect(URL, token=TOKEN) as s:
            nn, weakref = s.import_module("torch.nn"), s.import_module("weakref")
            model = nn.Sequential(nn.Linear(3, 3))
            model.add_module("fc", nn.Linear(3, 2))
            head = list(map(id, model.fc.parameters()))
            print([id(p) in head for p in model.parameters()])
            print([id(p) in head for p in model.fc.parameters()], id(model.fc) == id(model.fc))
            refs = [weakref.ref(p) for p in model.parameters()]
            print([str(r()) == "None" for r in refs])
            model.fc = nn.Identity()  # the old head: let go by the model, and by its proxy
            gc.collect()
            print([str(r()) == "None" for r in refs])
            del model
            gc.collect()
            print([str(r()) == "None" for r in refs])
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[False, False, True, True]",
        "[True, True] True",
        "[False, False, False, False]",
        "[False, False, True, True]",
        "[True, True, True, True]",
    ]
