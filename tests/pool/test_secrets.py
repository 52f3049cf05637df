"""The pool's ticket secret: its file, its checks, its rotation, and the migration
that takes it out of the database."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from tether._errors import PoolError
from tether.pool._db import open_database
from tether.pool._migrations import MIGRATIONS
from tether.pool._secrets import (
    PoolSecret,
    SecretSource,
    create_secret_file,
    parse_secret_text,
    rotate_secret_file,
)
from tether.pool._store import Store

from ._pooltest import db_url  # noqa: F401  (fixture)

HEX = "0f" * 32


def test_the_file_is_created_private_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "pool-secret"
    assert create_secret_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = SecretSource(path).load()
    assert len(first.current) == 32 and first.previous is None
    assert not create_secret_file(path)  # never overwritten
    assert SecretSource(path).load() == first


def test_a_file_others_can_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "pool-secret"
    create_secret_file(path)
    path.chmod(0o644)
    with pytest.raises(PoolError, match=r"readable by others .*chmod 600"):
        SecretSource(path).load()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no secret"),
        ("current zz", "not hex digits"),
        ("current abcd", "at least 32 random bytes"),
        (f"previous {HEX} soon", "needs a unix time"),
        (f"next {HEX}", "expected 'current HEX'"),
    ],
)
def test_malformed_secret_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PoolError, match=message):
        parse_secret_text(text, "pool-secret")


def test_a_bare_hex_secret_is_accepted() -> None:
    assert parse_secret_text(f"{HEX}\n", "env").current == bytes.fromhex(HEX)


def test_rotation_keeps_the_old_secret_for_its_grace_period(tmp_path: Path) -> None:
    path = tmp_path / "pool-secret"
    create_secret_file(path)
    source = SecretSource(path)
    old = source.load().current
    rotated = rotate_secret_file(path, now=1000.0, grace_s=60.0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    now = source.load()  # the running pool sees the change
    assert now == rotated and now.previous == old and now.current != old
    assert now.verifying(1059.0) == (now.current, old)
    assert now.verifying(1060.0) == (now.current,)


def test_without_a_previous_secret_only_the_current_one_verifies() -> None:
    secret = PoolSecret(current=b"c" * 32)
    assert secret.verifying(0.0) == (b"c" * 32,)


def test_migration_drops_the_secret_the_database_held(
    db_url: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database as the previous release left it: schema 1, the secret in settings.
    db = open_database(db_url)
    try:
        with db.transaction(serialize=True) as tx:
            tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            tx.execute("INSERT INTO schema_version (version) VALUES (1)")
            for statement in MIGRATIONS[0][1]:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('ticket_secret', ?)", ("ab" * 32,)
            )
    finally:
        db.close()
    with caplog.at_level(logging.WARNING, logger="tether.pool"):
        store = Store.open(db_url)
    try:
        assert store.schema_version() == MIGRATIONS[-1][0]
        with store.db.transaction() as tx:
            assert tx.all("SELECT key FROM settings") == []
    finally:
        store.close()
    assert "dropping the ticket secret kept in the database" in caplog.text
