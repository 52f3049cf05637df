"""Worker requests: typed records, the same (kind, payload) tuples on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from tether import ProtocolError
from tether.wire._requests import (
    FlushOutput,
    IsDir,
    ListDir,
    ModuleSource,
    ObjectAttr,
    ObjectCall,
    ObjectSetAttr,
    ObjectSnapshot,
    ReadFile,
    ReadGlobal,
    Source,
    Stat,
    WorkerRequest,
    WriteFile,
    WriteGlobal,
    request_from_wire,
    request_to_wire,
)

CASES: list[tuple[WorkerRequest, tuple[str, Any]]] = [
    (ReadGlobal("m", "x"), ("global", ("m", "x"))),
    (WriteGlobal("m", "x", True, 3), ("setglobal", ("m", "x", True, 3))),
    (Source("/a.py"), ("source", "/a.py")),
    (ModuleSource("pkg.mod"), ("module", "pkg.mod")),
    (ObjectAttr(7, "name"), ("objattr", (7, "name"))),
    (ObjectSetAttr(7, "name", [1]), ("objsetattr", (7, "name", [1]))),
    (ObjectCall(7, "read", (10,)), ("objcall", (7, "read", (10,)))),
    (ObjectCall(7, "f", (), {"k": 1}), ("objcall", (7, "f", (), {"k": 1}))),
    (ObjectCall(7, "f", (), {}), ("objcall", (7, "f", (), {}))),
    (ObjectSnapshot(7), ("objsnapshot", 7)),
    (ListDir("/d"), ("listdir", "/d")),
    (Stat("/f"), ("stat", "/f")),
    (IsDir("/d"), ("isdir", "/d")),
    (ReadFile("/f"), ("read", "/f")),
    (WriteFile("/f", b"x", False), ("write", ("/f", b"x", False))),
    (FlushOutput(), ("flush", None)),
]


@pytest.mark.parametrize(("request_", "wire"), CASES)
def test_each_request_has_the_wire_form_of_earlier_versions(
    request_: WorkerRequest, wire: tuple[str, Any]
) -> None:
    assert request_to_wire(request_) == wire
    assert request_from_wire(wire) == request_


@pytest.mark.parametrize(
    "message",
    [
        None,
        ("global",),
        ("nope", 1),
        ("global", ("m",)),
        ("objcall", (1, "f")),
        [("read", "/")],
        ("flush", 1),
    ],
)
def test_malformed_requests_are_protocol_errors(message: Any) -> None:
    with pytest.raises(ProtocolError):
        request_from_wire(message)
