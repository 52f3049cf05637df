"""``AcceptorService``, the object ``tether serve`` runs, used from Python: it serves
sessions until stopped, and stopping it ends its workers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import tether
from tether.acceptor._sandbox import scrub_env
from tether.acceptor._service import AcceptorService
from tether.transport import Address, parse_address


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()


def test_a_service_serves_until_stopped_and_takes_its_workers_along() -> None:
    ready = threading.Event()
    where: list[Address] = []

    def on_ready(address: Address) -> None:
        where.append(address)
        ready.set()

    service = AcceptorService(
        parse_address("tcp://127.0.0.1:0"),
        token="s3cret",
        worker_env=scrub_env(os.environ),
        on_ready=on_ready,
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name="service-under-test")
    thread.start()
    try:
        assert ready.wait(60), "the service never listened"
        session = tether.connect(str(where[0]), "s3cret", remote=["numpy"])
        np = session.import_module("numpy")
        assert int(np.arange(5).sum()) == 10
        (worker,) = [record.pid for record in service.acceptor.sessions.values()]
        with pytest.raises(tether.AuthenticationError):
            tether.connect(str(where[0]), "wrong", remote=["numpy"])
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive() and not failed, failed
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its stopped service"
    with pytest.raises(tether.DeviceLost):
        np.arange(3).sum().item()
    session.close()


def test_a_service_takes_a_token_or_a_pool_not_both_nor_neither() -> None:
    with pytest.raises(ValueError, match="either a token or a pool"):
        AcceptorService(parse_address("tcp://127.0.0.1:0"))
