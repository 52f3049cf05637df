"""Arrows between layers point down only, read from the real imports.

The layer table lives in ``docs/architecture.md`` (one row per layer, top to
bottom); this test is its enforcement. Two checks, since each misses what the
other sees:

- statically, every ``import`` statement in ``src/tether`` (at module level,
  inside functions and under ``TYPE_CHECKING`` alike) may name its own package
  or one in a lower row, never one above or beside it;
- at run time, importing a lower package and every module in it, in a fresh
  interpreter, loads nothing from a higher row: this counts what ``__init__``
  files execute and what other packages pull in on import.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


@cache
def layers() -> dict[str, int]:
    """Each unit (``tether``, ``tether.client``, ``tether._errors``, ...) and its
    row in the table, counted from the bottom (0)."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [
        re.findall(r"`(tether(?:\.\w+)?)`", line.split("|")[1])
        for line in section.splitlines()
        if line.startswith("| `tether")
    ]
    assert len(rows) >= 5, "docs/architecture.md lost its layer table"
    table: dict[str, int] = {}
    for rank, units in enumerate(reversed(rows)):
        for unit in units:
            assert unit not in table, f"{unit} sits in two rows of the layer table"
            table[unit] = rank
    return table


def unit_of(module: str) -> str:
    """The unit a module belongs to: its first two name parts."""
    return ".".join(module.split(".")[:2])


@dataclass(frozen=True)
class Arrow:
    source: str  # the importing file, relative to src/
    line: int
    importer: str
    imported: str


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def arrows(src: Path = SRC) -> list[Arrow]:
    """Every import of a ``tether`` module by a module of ``src/tether``."""
    found = []
    for path in sorted((src / "tether").rglob("*.py")):
        me = module_name(path, src)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                # `from tether import _refs` imports tether._refs, while
                # `from tether import __version__` imports the face itself.
                if module == "tether":
                    targets = [
                        f"tether.{a.name}" if _is_module(src / "tether" / a.name) else "tether"
                        for a in node.names
                    ]
                else:
                    targets = [module]
            for target in targets:
                if target == "tether" or target.startswith("tether."):
                    rel = str(path.relative_to(src))
                    found.append(Arrow(rel, node.lineno, me, target))
    return found


def _is_module(path: Path) -> bool:
    return path.is_dir() or path.with_suffix(".py").is_file()


def test_the_table_names_every_package_and_module_of_the_top_level() -> None:
    table = layers()
    units = {unit_of(module_name(p)) for p in (SRC / "tether").rglob("*.py")}
    assert units - set(table) == set(), "add these to the layer table in docs/architecture.md"
    assert set(table) - units == set(), "the layer table names units that do not exist"


def test_every_import_points_down_or_stays_home() -> None:
    table = layers()
    wrong = []
    for arrow in arrows():
        here, there = unit_of(arrow.importer), unit_of(arrow.imported)
        if here != there and table[there] >= table[here]:
            side = "beside" if table[there] == table[here] else "above"
            wrong.append(f"{arrow.source}:{arrow.line}: {here} imports {there}, {side} it")
    assert wrong == []


def test_the_static_check_sees_every_form_of_import(tmp_path: Path) -> None:
    """The checker itself, on a tree of its own: relative imports, ``from tether
    import`` of a module and of the face, and imports inside functions."""
    client = tmp_path / "tether" / "client"
    client.mkdir(parents=True)
    (tmp_path / "tether" / "_refs.py").write_text("")
    (client / "__init__.py").write_text("from . import _probe\n")
    (client / "_probe.py").write_text(
        "from ..pool import _state\n"
        "from tether import __version__, _refs\n"
        "def f():\n    import tether.acceptor._server\n"
    )
    found = {(a.importer, a.imported, a.line) for a in arrows(tmp_path)}
    assert found == {
        ("tether.client", "tether.client", 1),
        ("tether.client._probe", "tether.pool", 1),
        ("tether.client._probe", "tether", 2),
        ("tether.client._probe", "tether._refs", 2),
        ("tether.client._probe", "tether.acceptor._server", 4),
    }


# The packages whose run-time imports are checked: each, with all its modules.
LOWER = ["tether.client", "tether.acceptor", "tether.pool", "tether.poolapi", "tether.transport",
         "tether.wire"]  # fmt: skip

_LOAD_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
if sys.argv[2] == "all":
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m == "tether" or m.startswith("tether."))))
"""


@cache
def loaded_by(package: str, what: str) -> tuple[str, ...]:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL, package, what],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return tuple(json.loads(out.stdout))


@pytest.mark.parametrize("what", ["init", "all"])
@pytest.mark.parametrize("package", LOWER)
def test_importing_a_package_loads_nothing_above_it(package: str, what: str) -> None:
    table = layers()
    above = sorted(
        m
        for m in loaded_by(package, what)
        # The face's __init__ runs as every module's parent; what it loads counts.
        if m != "tether" and unit_of(m) != package and table[unit_of(m)] >= table[package]
    )
    assert above == []


@pytest.mark.parametrize("package", ["tether.client", "tether.acceptor"])
def test_the_client_and_the_acceptor_load_no_pool_policy(package: str) -> None:
    pool = [m for m in loaded_by(package, "all") if unit_of(m) == "tether.pool"]
    assert pool == []
