"""The public surface is what it should be, and the client stays light."""

from __future__ import annotations

import subprocess
import sys

import tether

EXPECTED = {
    "AuthenticationError",
    "ConfigError",
    "ConnectError",
    "DeviceLost",
    "FrameTooLarge",
    "ObjectReleased",
    "PoolError",
    "ProtocolError",
    "ProtocolVersionMismatch",
    "RemoteModuleNotFound",
    "RemoteTraceback",
    "Session",
    "SessionClosed",
    "SessionError",
    "TetherError",
    "__version__",
    "connect",
    "lease",
    "submit",
}


def test_public_names() -> None:
    assert set(tether.__all__) == EXPECTED
    for name in tether.__all__:
        assert getattr(tether, name) is not None


def test_every_error_derives_from_tether_error() -> None:
    for name in tether.__all__:
        obj = getattr(tether, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseException)
            and obj is not tether.RemoteTraceback
        ):
            assert issubclass(obj, tether.TetherError), name


def test_the_client_imports_no_framework_and_no_server_dependency() -> None:
    code = (
        "import sys, tether, tether.client._session, tether._api, tether.client._importer\n"
        "heavy = ('torch', 'numpy', 'fastapi', 'uvicorn', 'psycopg', 'pynvml')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
