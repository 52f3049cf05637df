"""The probes ``/v1/health`` and ``/v1/ready`` of a real ``tether pool serve``, over HTTP.

The outage is real: the pool runs on a PostgreSQL database of its own, which the
test drops under it (``DROP DATABASE ... WITH (FORCE)`` ends the pool's
connection), then creates again, empty. SQLite cannot be taken away from a
running pool deterministically (open files outlive their directory, and the
tests run as root, whom permissions do not stop), so it is checked only up.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import __version__

from ._pooltest import PG_BASE, http, repo_env, require_postgres, run_pool_server

pytestmark = pytest.mark.slow


def _problem(status: int, body: Any) -> str:
    assert status == 503, body
    assert isinstance(body, dict) and body["error"]["code"] == "unavailable", body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def test_probes_answer_without_a_token_and_are_in_the_schema(tmp_path: Path) -> None:
    with run_pool_server(tmp_path) as server:
        # No token, and a wrong one does not matter either: nothing authenticates.
        for headers in ({}, {"Authorization": "Bearer tu_000000000000_nope"}):
            status, body = http("GET", server.url + "/v1/health", headers=headers)
            assert (status, body) == (200, {"status": "ok", "version": __version__})
            status, body = http("GET", server.url + "/v1/ready", headers=headers)
            assert status == 200, body
            assert body == {
                "status": "ready",
                "version": __version__,
                "database": "sqlite",
                "schema_version": body["schema_version"],
            }
            assert body["schema_version"] >= 1
        status, body = http("POST", server.url + "/v1/health")
        assert status == 405
        status, schema = http("GET", server.url + "/v1/openapi.json")
        assert status == 200
        for path in ("/v1/health", "/v1/ready"):
            op = schema["paths"][path]["get"]
            assert "security" not in op, f"{path} must not ask for a token"
        assert "503" in schema["paths"]["/v1/ready"]["get"]["responses"]
        # A route that does need the token still does.
        assert http("GET", server.url + "/v1/me")[0] == 401


@pytest.fixture
def own_pg_database() -> Iterator[tuple[str, str]]:
    """(admin URL, database name): a database of its own, dropped afterwards if left."""
    import psycopg

    require_postgres()
    name = f"tether_ready_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_BASE, name
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
def test_ready_is_503_while_the_database_is_gone_and_health_stays_200(
    tmp_path: Path, own_pg_database: tuple[str, str]
) -> None:
    import psycopg

    base, name = own_pg_database
    password = "s3cret-" + secrets.token_hex(4)  # trust auth ignores it; it must never leak
    url = base.rsplit("/", 1)[0].replace("://postgres@", f"://postgres:{password}@") + "/" + name
    assert password in url
    with run_pool_server(tmp_path, url) as server:
        status, body = http("GET", server.url + "/v1/ready")
        assert status == 200 and body["database"] == "postgresql", body

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        # Twice: the first finds its connection ended, the second cannot reconnect.
        for _ in range(2):
            status, body = http("GET", server.url + "/v1/ready")
            message = _problem(status, body)
            assert password not in message and "***" in message, message
            assert name in message, message  # which database: says why
        assert "does not exist" in message, message
        status, body = http("GET", server.url + "/v1/health")
        assert (status, body["status"]) == (200, "ok")

        # Back, but empty: it answers, with a schema older than the pool's.
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        status, body = http("GET", server.url + "/v1/ready")
        message = _problem(status, body)
        assert "schema version 0" in message and password not in message, message
        assert http("GET", server.url + "/v1/health")[0] == 200
    assert password not in server.log_text()


@pytest.mark.postgres
def test_authenticated_routes_and_the_cli_never_show_the_database_password(
    tmp_path: Path, own_pg_database: tuple[str, str]
) -> None:
    import psycopg

    base, name = own_pg_database
    password = "s3cret-" + secrets.token_hex(4)  # trust auth ignores it; it must never leak
    url = base.rsplit("/", 1)[0].replace("://postgres@", f"://postgres:{password}@") + "/" + name
    with run_pool_server(tmp_path, url) as server:
        token = server.admin_token
        assert http("GET", server.url + "/v1/me", token)[0] == 200
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        # The first finds its connection ended, the next cannot open a new one.
        for method, path, body in [
            ("GET", "/v1/me", None),
            ("GET", "/v1/nodes", None),
            ("POST", "/v1/teams", {"name": "ml"}),
        ]:
            status, answer = http(method, server.url + path, token, body)
            message = _problem(status, answer)
            assert password not in message and "postgres:***@" in message, message
            assert name in message, message  # which database: says why
        assert "does not exist" in message, message
    assert password not in server.log_text()

    # Starting a pool on the database that is gone: the CLI names it, not its password.
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "pool", "serve", "--listen", "127.0.0.1:0", "--db", url],
        env=repo_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc
    assert "cannot open the pool database" in proc.stderr and "postgres:***@" in proc.stderr
    assert password not in proc.stdout + proc.stderr
