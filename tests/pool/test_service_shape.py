"""The pool service is a facade over parts that share one core."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import tether.pool
from tether.pool._service import PoolService
from tether.pool._store import Store

SRC = Path(tether.pool.__file__).parent
SHELLS = ("_api.py", "_server.py", "_ui.py", "_ui_auth.py", "_ui_pages.py")


def test_every_member_the_shells_call_is_on_the_facade() -> None:
    used: set[str] = set()
    for name in SHELLS:
        used |= set(re.findall(r"\bservice\.([A-Za-z]\w*)", (SRC / name).read_text()))
    assert used, "the shells no longer name the service"
    missing = sorted(m for m in used if not hasattr(PoolService, m) and m not in ("store",))
    assert not missing, missing


def test_the_parts_share_one_core_and_no_part_inherits_another(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        service = PoolService(store)
        parts = [service.node_part, service.session_part, service.group_part, service.accounting]
        assert all(part._core is service.core for part in parts)
        assert service.store is service.core.store is store
        for part in (*parts, service.directory, service.core):
            assert inspect.getmro(type(part))[1:] == (object,), type(part)
    finally:
        store.close()
