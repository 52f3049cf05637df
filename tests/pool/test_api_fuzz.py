"""Fuzz the pool's API from its own OpenAPI schema (schemathesis) against a real server.

Every operation gets generated requests, valid and invalid; the server must
never answer 5xx, and every answer must be a status, content type and body that
the schema documents. Bounded (a few examples per operation) so that it stays
well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tether.poolapi import PoolClient  # noqa: E402

from ._pooltest import DEVICES, run_pool_server  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = 10

_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root: Path = tmp_path_factory.mktemp("fuzzpool")
    with run_pool_server(root) as server:
        admin = PoolClient(server.url, server.admin_token)
        admin.create_team("ml")
        admin.create_user("ann", teams=["ml"])
        admin.add_member("ml", "admin")  # so that generated slice requests can be placed
        node_token = admin.create_token(kind="node")["token"]
        PoolClient(server.url, node_token).register_node("gpu1", "tcp://127.0.0.1:7447", DEVICES)
        yield server.url, server.admin_token


def _operations(url: str) -> list[Any]:
    loaded = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


def _nothing_to_break(operation: Any) -> bool:
    """No parameter, body or security scheme: negative mode has nothing to make invalid."""
    raw = operation.definition.raw
    return not (raw.get("parameters") or raw.get("requestBody") or raw.get("security"))


# schemathesis' own pytest plugin does not yet run under this pytest, so each
# operation's strategies are driven with plain hypothesis.
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_api_never_fails_and_conforms(live_pool: tuple[str, str], mode: str) -> None:
    from hypothesis import given

    url, token = live_pool
    operations = _operations(url)
    assert len(operations) >= 20
    generation = schemathesis.GenerationMode(mode)
    failures: list[str] = []
    skipped: set[str] = set()
    for operation in operations:
        if mode == "negative" and _nothing_to_break(operation):
            skipped.add(operation.label)  # positive mode calls it
            continue

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=_CHECKS
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert skipped <= {"GET /v1/health", "GET /v1/ready"}, skipped
