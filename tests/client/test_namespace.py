"""The client's record of the worker's namespaces: paging, and the per-call
change check (write-update), tested on real module dicts, without a session."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from tether.client import _namespace
from tether.client._namespace import ScriptNamespaces, is_script_module


@pytest.fixture
def module(tmp_path: object) -> Iterator[types.ModuleType]:
    """A real module of the user's own (a file outside the installed dirs)."""
    mod = types.ModuleType("tether_test_user_mod")
    mod.__file__ = f"{tmp_path}/tether_test_user_mod.py"
    sys.modules[mod.__name__] = mod
    _namespace._script_modules.pop(mod.__name__, None)
    try:
        yield mod
    finally:
        del sys.modules[mod.__name__]
        _namespace._script_modules.pop(mod.__name__, None)


def test_user_modules_are_script_modules_and_installed_ones_are_not(
    module: types.ModuleType,
) -> None:
    assert is_script_module("__main__")
    assert is_script_module(module.__name__)
    assert not is_script_module("json")  # the standard library
    assert not is_script_module("pytest")  # an installed distribution
    assert not is_script_module("tether.client._namespace")  # Tether itself


def test_page_records_what_the_worker_holds(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    module.k = 1
    assert ns.page(module.__name__, "k") == (True, 1)
    assert ns.page(module.__name__, "len") == (False, None)  # the worker's builtin
    assert ns.page(module.__name__, "nowhere") == (False, None)
    assert ns.changes() is None  # nothing rebound since


def test_a_rebind_is_sent_once_before_the_next_call(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    module.k = 1
    module.other = "x"
    ns.page(module.__name__, "k")
    module.k = 3
    module.unrelated = 5  # a name the worker never read costs nothing
    assert ns.changes() == [(module.__name__, [("k", True, 3)])]
    assert ns.changes() is None


def test_deleting_and_defining_a_builtin_name_are_changes(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    module.k = 1
    ns.page(module.__name__, "k")
    ns.page(module.__name__, "print")  # absent here: the worker uses its builtin
    del module.k
    module.print = "shadowed"
    changed = ns.changes()
    assert changed is not None
    assert sorted(changed[0][1]) == [("k", False, _namespace._ABSENT), ("print", True, "shadowed")]


def test_identity_not_equality_decides(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    module.cfg = [1, 2]
    ns.page(module.__name__, "cfg")
    module.cfg = [1, 2]  # equal, but another object: the worker must get it
    changed = ns.changes()
    assert changed is not None and changed[0][1][0][0] == "cfg"


def test_names_the_worker_wrote_back_are_not_sent_again(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    module.n = 0
    ns.page(module.__name__, "n")
    ns.wrote(module.__name__, "n", 5, True)
    assert module.n == 5
    assert ns.changes() is None
    ns.wrote(module.__name__, "fresh", 1, True)  # written without ever being read
    module.fresh = 2
    assert ns.changes() == [(module.__name__, [("fresh", True, 2)])]


def test_the_change_check_is_correct_without_the_version_tag(
    module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_namespace, "_READ_TAG", None)
    ns = ScriptNamespaces()
    module.k = 1
    ns.page(module.__name__, "k")
    assert ns.changes() is None
    module.k = 2
    assert ns.changes() == [(module.__name__, [("k", True, 2)])]


def test_the_version_tag_moves_on_every_change_of_its_own_dict_only() -> None:
    reader = _namespace._tag_reader()
    if reader is None:
        pytest.skip("this interpreter's dicts have no readable version tag")
    a: dict[str, int] = {}
    b: dict[str, int] = {}
    tag = reader(a)
    seen = {tag.value}
    for i in range(5):
        a["x"] = i
        assert tag.value not in seen
        seen.add(tag.value)
        before = tag.value
        b["y"] = i
        assert tag.value == before


# -- page-ins a pipelined call makes late ---------------------------------------------


def test_a_late_name_rebound_while_calls_are_in_flight_travels_ahead_and_keeps_its_old_value(
    module: types.ModuleType,
) -> None:
    ns = ScriptNamespaces()
    name = module.__name__
    module.OFFSET = 1.0
    ns.watch(name, frozenset({"OFFSET", "len"}))  # shipped code may read these
    assert ns.changes(inflight=False) is None
    module.OFFSET = 100.0  # the script ran ahead of a pipelined call
    assert ns.changes(inflight=True) == [(name, [("OFFSET", True, 100.0)])]
    # The call made before the rebind pages it in now: it gets what it was made under,
    # and the worker is not recorded as holding that (the new value went ahead).
    assert ns.page(name, "OFFSET") == (True, 1.0)
    assert ns.changes(inflight=True) is None
    ns.settled()  # the worker has run everything sent
    assert ns.page(name, "OFFSET") == (True, 100.0)


def test_a_late_name_changed_with_nothing_in_flight_is_only_noted(
    module: types.ModuleType,
) -> None:
    ns = ScriptNamespaces()
    name = module.__name__
    ns.watch(name, frozenset({"LATER"}))
    module.LATER = 1  # defined after the code was shipped
    assert ns.changes(inflight=False) is None  # no call can page the old value in
    module.LATER = 2
    assert ns.changes(inflight=True) == [(name, [("LATER", True, 2)])]
    assert ns.page(name, "LATER") == (True, 1)  # the value at the last call sent


def test_a_late_name_deleted_in_flight_pages_in_as_it_was_and_then_as_absent(
    module: types.ModuleType,
) -> None:
    ns = ScriptNamespaces()
    name = module.__name__
    module.GONE = 1.0
    ns.watch(name, frozenset({"GONE", "NEVER"}))
    ns.changes(inflight=False)
    del module.GONE
    changed = ns.changes(inflight=True)
    assert changed == [(name, [("GONE", False, _namespace._ABSENT)])]
    assert ns.before == {(name, "GONE"): 1.0}
    assert ns.page(name, "GONE") == (True, 1.0)
    ns.settled()
    assert ns.page(name, "GONE") == (False, None)
    # A name that did not exist when the call was made raises NameError there, as locally.
    module.NEVER = 5
    assert ns.changes(inflight=True) == [(name, [("NEVER", True, 5)])]
    assert ns.page(name, "NEVER") == (False, None)


def test_names_already_held_or_written_back_are_not_late(module: types.ModuleType) -> None:
    ns = ScriptNamespaces()
    name = module.__name__
    module.k = 1
    ns.page(name, "k")
    ns.watch(name, frozenset({"k", "n"}))
    ns.wrote(name, "n", 3, True)  # the worker rebound n itself: it holds it
    module.k = 2
    assert ns.changes(inflight=True) == [(name, [("k", True, 2)])]
    assert ns.before == {}  # k was held: its rebind is an ordinary write-update


def test_late_names_are_checked_without_the_version_tag(
    module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_namespace, "_READ_TAG", None)
    ns = ScriptNamespaces()
    name = module.__name__
    module.OFFSET = 1.0
    ns.watch(name, frozenset({"OFFSET"}))
    module.OFFSET = 2.0
    assert ns.changes(inflight=True) == [(name, [("OFFSET", True, 2.0)])]
    assert ns.page(name, "OFFSET") == (True, 1.0)
