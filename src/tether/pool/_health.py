"""What probes ask the pool: ``GET /v1/health`` (alive) and ``GET /v1/ready`` (can serve).

Both answer without a token, so a kubelet, a load balancer or a systemd watchdog
needs no secret. *Health* touches nothing but the process: a pool whose
database is down is still alive (its API answers 503 and recovers by itself), so
restarting it would not help. *Readiness* runs one cheap query through the store
(the schema version) and is 503 when the database does not answer, or answers
with a schema older than this pool's migrations (it was replaced or emptied
after the pool started: every other request would fail). Neither body names the
database URL's password (the store's messages never do: see
:func:`tether.pool._db.redact`), which matters all the more as these routes are public.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tether._version import __version__
from tether.pool._db import StoreUnavailable
from tether.pool._migrations import MIGRATIONS
from tether.pool._store import Store

__all__ = ["HealthOut", "ReadyOut", "health", "ready"]

#: The schema version this pool migrates to; a database below it cannot serve us.
SCHEMA_VERSION = MIGRATIONS[-1][0]


class HealthOut(BaseModel):
    status: Literal["ok"] = Field(description="always ok: the process answers")
    version: str = Field(description="tether's version")


class ReadyOut(BaseModel):
    status: Literal["ready"] = Field(description="the database answered")
    version: str = Field(description="tether's version")
    database: Literal["sqlite", "postgresql"]
    schema_version: int = Field(description="the database's schema version")


def health() -> HealthOut:
    """The process is alive; touches no database."""
    return HealthOut(status="ok", version=__version__)


def ready(store: Store) -> ReadyOut:
    """One query through ``store``; raises StoreUnavailable saying why it cannot serve.

    Any failure of the query counts (a driver error of a kind the store does not
    translate, such as a SQLite file that is no longer a database, too): a probe
    must say "not ready", not crash. The message never holds the URL's password.
    """
    try:
        version = store.schema_version()
    except Exception as exc:
        text = str(exc) if isinstance(exc, StoreUnavailable) else f"{type(exc).__name__}: {exc}"
        text = store.db.redact(text)
        if isinstance(exc, StoreUnavailable):
            raise StoreUnavailable(text) from None
        raise StoreUnavailable(f"the pool database does not answer: {text}") from None
    if version < SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the pool database {store.db.url} has schema version {version}, this pool "
            f"needs {SCHEMA_VERSION}: it was replaced or emptied after the pool started "
            "(restart the pool to migrate it)"
        )
    return ReadyOut(
        status="ready", version=__version__, database=store.db.dialect, schema_version=version
    )
