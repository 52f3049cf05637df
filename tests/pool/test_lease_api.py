"""``tether.lease()``: a slice from a real pool, held, renewed and released.

A real ``tether pool serve`` with one node registered through the API (no acceptor:
placement needs only the node's devices). ``tether run --pool`` and ``%tether connect``
lease through this same function.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tether
from tether.poolapi import PoolClient, Refused

from ._pooltest import DEVICES, PoolServer, run_pool_server

pytestmark = pytest.mark.slow


@dataclass
class Pool:
    server: PoolServer
    admin: PoolClient
    ann_token: str


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    root = tmp_path_factory.mktemp("lease")
    with run_pool_server(root, None, "--node-timeout", "600", "--lease-timeout", "600") as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        ann_token = admin.create_token(user="ann")["token"]
        node_token = admin.create_token(kind="node", node="gpu1")["token"]
        PoolClient(server.url, node_token).register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
        yield Pool(server, admin, ann_token)


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing configured but what a test passes: no environment, no config file."""
    for key in ("TETHER_POOL", "TETHER_POOL_TOKEN", "TETHER_POOL_TOKEN_FILE", "TETHER_TLS_CA"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TETHER_CONFIG", str(tmp_path / "absent.toml"))


def _state(pool: Pool, session_id: str) -> dict[str, object]:
    every = [*pool.admin.sessions(team="ml"), *pool.admin.sessions(team="ml", state="ended")]
    (found,) = [s for s in every if s["id"] == session_id]
    return found


@pytest.mark.usefixtures("no_config")
def test_a_lease_is_placed_renewed_and_released_by_the_with_block(pool: Pool) -> None:
    out = io.StringIO()
    with tether.lease(
        pool.server.url, pool.ann_token, gpus=0.5, name="nb", heartbeat_s=0.2, out=out
    ) as held:
        assert held.address == "tcp://127.0.0.1:7447"
        assert held.ticket and held.ca is None
        assert _state(pool, held.id)["state"] == "placed"
        assert "nb" in str(_state(pool, held.id).get("name"))
        session_id = held.id
    ended = _state(pool, session_id)
    assert ended["state"] == "ended" and ended["end_reason"] == "released", ended


@pytest.mark.usefixtures("no_config")
def test_the_environment_names_the_pool_and_each_ticket_lands_in_the_file(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(pool.ann_token + "\n")
    monkeypatch.setenv("TETHER_POOL", pool.server.url)
    monkeypatch.setenv("TETHER_POOL_TOKEN_FILE", str(token_file))
    ticket_file = tmp_path / "ticket"
    with tether.lease(gpus=0.25, ticket_file=ticket_file, out=io.StringIO()) as held:
        assert ticket_file.read_text().strip() == held.ticket
        assert os.stat(ticket_file).st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("no_config")
def test_nothing_configured_is_a_config_error_before_any_request() -> None:
    with pytest.raises(tether.ConfigError, match=r"no pool URL .*TETHER_POOL.*absent\.toml"):
        tether.lease(gpus=0.5)
    with pytest.raises(tether.ConfigError, match="no API token"):
        tether.lease("http://127.0.0.1:9", gpus=0.5)
    with pytest.raises(tether.ConfigError, match="is an acceptor's address"):
        tether.lease("tcp://127.0.0.1:9", "t", gpus=0.5)


@pytest.mark.usefixtures("no_config")
def test_bad_slices_and_refusals_raise_what_they_are(pool: Pool) -> None:
    with pytest.raises(ValueError, match=r"--gpus 1\.5"):
        tether.lease(pool.server.url, pool.ann_token, gpus=1.5)
    with pytest.raises(Refused):
        tether.lease(pool.server.url, pool.ann_token, gpus=64, wait=False, out=io.StringIO())
    assert not [s for s in pool.admin.sessions(team="ml") if s["state"] == "placed"]
