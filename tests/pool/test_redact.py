"""The database URL's password never leaves the store: not in an error, not in a log.

The store's errors go to 503 bodies of the API, to the CLI's output and to the
pool's log, so :class:`StoreUnavailable` must hide the password wherever the
URL (or the driver, echoing a part of it) would show it. The PostgreSQL cases
are real: trust authentication accepts any password, and the database the URL
names is one this test creates and drops.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tether.pool._db import StoreUnavailable, open_database, redact, redact_url
from tether.pool._store import Store

from ._pooltest import PG_BASE, require_postgres


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://u:pw@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert redact_url("postgresql://u:pw@[::1]/x") == "postgresql://u:***@[::1]/x"
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("/var/lib/tether/pool.db") == "/var/lib/tether/pool.db"
    assert "pw" not in redact_url("postgresql://u:pw@db:notaport/x")


def test_redact_url_hides_a_password_given_as_a_query_parameter() -> None:
    assert redact_url("postgresql://u@db/x?sslmode=require&password=pw&x=1") == (
        "postgresql://u@db/x?sslmode=require&password=***&x=1"
    )
    assert redact_url("postgresql://u@db/x?PASSWORD=pw") == "postgresql://u@db/x?PASSWORD=***"
    assert redact_url("postgresql://u@db/x?passwords=1") == "postgresql://u@db/x?passwords=1"


def test_redact_hides_the_url_and_every_echo_of_its_password() -> None:
    url = "postgresql://tether:p%40ss-9f3@db/x"
    text = f'cannot open {url}: invalid option "p%40ss-9f3", or rather "p@ss-9f3"'
    assert redact(text, url) == (
        'cannot open postgresql://tether:***@db/x: invalid option "***", or rather "***"'
    )
    # A password that is also the user name is hidden, and the URL still reads.
    same = "postgresql://tether:tether@db/x"
    assert redact(f"{same} refused tether", same) == "postgresql://tether:***@db/x refused ***"
    # Nothing to hide: the text comes back as it was.
    assert redact("lost /var/lib/pool.db", "/var/lib/pool.db") == "lost /var/lib/pool.db"


def test_an_unsupported_url_is_named_without_its_password() -> None:
    with pytest.raises(StoreUnavailable, match="unsupported database URL") as caught:
        open_database("mysql://u:hunter2-x@db/y")
    assert "hunter2-x" not in str(caught.value) and "mysql://u:***@db/y" in str(caught.value)


@pytest.fixture
def gone_pg_database() -> Iterator[str]:
    """The name of a PostgreSQL database that exists until the test drops it."""
    import psycopg

    require_postgres()
    name = f"tether_redact_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["user part", "query"])
def test_a_lost_postgres_database_is_named_without_its_password(
    gone_pg_database: str, where: str
) -> None:
    password = "s3cret-" + secrets.token_hex(4)  # trust auth ignores it
    server = PG_BASE.rsplit("/", 1)[0]
    if where == "user part":
        url = server.replace("://postgres@", f"://postgres:{password}@") + f"/{gone_pg_database}"
    else:
        url = f"{server}/{gone_pg_database}?password={password}"
    assert password in url
    store = Store.open(url)
    try:
        assert password not in store.db.url and "***" in store.db.url
        _drop(gone_pg_database)
        # The first finds its connection ended, the second cannot open a new one.
        messages = []
        for _ in range(2):
            with pytest.raises(StoreUnavailable) as caught:
                store.user_count()
            messages.append(str(caught.value))
        assert messages[0].startswith(f"lost the pool database {store.db.url}: "), messages
        assert messages[1].startswith(f"cannot open the pool database {store.db.url}: "), messages
        assert "does not exist" in messages[1], messages
        for message in messages:
            assert password not in message, message
    finally:
        store.close()
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(url)
    assert password not in str(caught.value) and "***" in str(caught.value)
