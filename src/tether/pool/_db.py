"""A thin, blocking database layer over sqlite3 and psycopg 3.

Theory of operation: the store writes its SQL once, with ``?`` placeholders, and
:class:`Database` adapts it to the driver (psycopg wants ``%s``). Each thread gets
its own connection (sqlite3 and psycopg connections are not to be shared between
threads mid-transaction); :meth:`Database.transaction` hands out a :class:`Tx`
that commits when the block ends normally and rolls back on any exception.

``serialize=True`` makes the transaction exclusive among every pool process that
uses this database: SQLite takes the write lock up front (``BEGIN IMMEDIATE``),
PostgreSQL takes a transaction-scoped advisory lock. Placement runs only inside
such a transaction, which is what makes double allocation impossible even with
several pool replicas on one PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from tether._errors import PoolError

__all__ = ["Database", "StoreUnavailable", "Tx", "open_database", "redact", "redact_url"]

Dialect = Literal["sqlite", "postgresql"]
Row = dict[str, Any]

# Any constant works; it only has to be the same in every pool process.
_ADVISORY_LOCK_KEY = 0x7E7E_0001


class StoreUnavailable(PoolError):
    """The pool's database cannot be opened or reached.

    Its message never holds the database's password: the API returns it in 503
    bodies and the CLI and the logs print it. Build it with :func:`redact`.
    """


# libpq also takes the password as a query parameter: postgresql://db/x?password=...
_QUERY_PASSWORD = re.compile(r"(?i)(^|&)(password=)([^&]*)")
_HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``.

    Both places a password can sit are hidden: the user part
    (``postgresql://user:PASSWORD@host/db``) and a ``password=`` query parameter.
    A URL too malformed to take apart is not shown at all.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            port = f":{parts.port}" if parts.port is not None else ""
            netloc = f"{user}:{_HIDDEN}@{host}{port}"
        query = _QUERY_PASSWORD.sub(rf"\1\2{_HIDDEN}", parts.query)
        if (netloc, query) == (parts.netloc, parts.query):
            return url
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # a port that is not a number, ...: say nothing of it
        return "(the configured database)"


def _passwords(url: str) -> set[str]:
    """The password(s) in ``url``, as written and percent-decoded."""
    try:
        parts = urlsplit(url)
        found = [m.group(3) for m in _QUERY_PASSWORD.finditer(parts.query)]
        if parts.password is not None:
            found.append(parts.password)
    except ValueError:  # cannot be taken apart: look for the user part by hand
        _scheme, _, rest = url.partition("://")
        userinfo, at, _host = rest.partition("/")[0].rpartition("@")
        found = [userinfo.partition(":")[2]] if at else []
    return {s for p in found for s in (p, unquote(p)) if s}


def redact(text: str, url: str) -> str:
    """``text`` (a message, a driver's error) with ``url`` and its password hidden.

    ``url`` is shown as :func:`redact_url` shows it, and the password is removed
    wherever else it appears (a driver may echo one option of the URL, such as
    ``invalid sslmode value: "..."``).
    """
    shown = redact_url(url)
    # The pieces between the URLs already shown: a password that is also, say, the
    # user name is hidden everywhere else without mangling the shown URL.
    pieces = text.replace(url, shown).split(shown)
    for secret in sorted(_passwords(url), key=len, reverse=True):
        pieces = [piece.replace(secret, _HIDDEN) for piece in pieces]
    return shown.join(pieces)


def _plain_read(sql: str) -> bool:
    """A statement that only reads and locks nothing (see :class:`Tx`)."""
    head = sql.lstrip()[:6].upper()
    return head == "SELECT" and "FOR " not in sql.upper() and "PG_ADVISORY" not in sql.upper()


class Tx:
    """One open transaction; valid only inside its ``with`` block.

    On PostgreSQL a transaction that is not serialised opens (``BEGIN``) only at
    its first statement that writes or locks: until then its plain SELECTs
    run on their own. Under READ COMMITTED, PostgreSQL's default, a ``SELECT``
    inside a transaction sees what was committed when it started, exactly as one
    outside does, so the answers are the same, and a read-only request saves two
    round trips (``BEGIN``, ``COMMIT``) to the server.
    """

    def __init__(self, dialect: Dialect, cursor: Any, *, begun: bool = True) -> None:
        self._dialect = dialect
        self._cursor = cursor
        self._begun = begun

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _sql(self, sql: str) -> str:
        if self._dialect == "postgresql":
            if not self._begun and not _plain_read(sql):
                self._cursor.execute("BEGIN")
                self._begun = True
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return int(self._cursor.rowcount)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(self._sql(sql), tuple(params))
        return [dict(r) for r in self._cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(self._sql(sql), tuple(params))
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested part of this transaction: on an exception in the block, what the
        block wrote is undone (the rest of the transaction stays) and the exception
        goes on. Both SQLite and PostgreSQL keep the transaction usable afterwards.

        If undoing fails (the connection is gone), that error is raised instead,
        chained to the block's, and the whole transaction is lost.
        """
        self.execute("SAVEPOINT tether_part")
        try:
            yield
        except BaseException:
            self._cursor.execute("ROLLBACK TO SAVEPOINT tether_part")
            self._cursor.execute("RELEASE SAVEPOINT tether_part")
            raise
        self._cursor.execute("RELEASE SAVEPOINT tether_part")


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


class Database:
    """Connections to one database, one per thread. Use :func:`open_database`."""

    def __init__(self, url: str, dialect: Dialect, target: str) -> None:
        #: The URL as it may be shown: password hidden (see :func:`redact_url`).
        self.url = redact_url(url)
        self._secret_url = url
        self.dialect: Dialect = dialect
        self._target = target
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._closed = False

    def _connect(self) -> Any:
        if self._closed:
            raise StoreUnavailable("the pool database has been closed")
        try:
            if self.dialect == "sqlite":
                memory = self._target == ":memory:"
                # Threads must share one in-memory database: a named shared cache.
                shared = f"file:tether-{id(self)}?mode=memory&cache=shared"
                target = shared if memory else self._target
                conn: Any = sqlite3.connect(
                    target, timeout=30.0, isolation_level=None, check_same_thread=False, uri=memory
                )
                conn.row_factory = _dict_factory
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA busy_timeout = 30000")
                if self._target != ":memory:":
                    conn.execute("PRAGMA journal_mode = WAL")
                    # Said, not left to the build's default (some make it NORMAL
                    # under WAL): every commit reaches the disk before the pool
                    # answers, which group commit makes cheap (docs/pool.md).
                    conn.execute("PRAGMA synchronous = FULL")
            else:
                import psycopg
                from psycopg.rows import dict_row

                # Autocommit: Database.transaction sends BEGIN itself, and only when
                # a transaction is needed (Tx).
                conn = psycopg.connect(
                    self._target, row_factory=dict_row, connect_timeout=10, autocommit=True
                )
        except Exception as exc:
            raise self._unavailable(f"cannot open the pool database {self.url}", exc) from exc
        with self._all_lock:
            self._all.append(conn)
        return conn

    def redact(self, text: str) -> str:
        """``text`` with this database's URL shown redacted and its password hidden."""
        return redact(text, self._secret_url)

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        """StoreUnavailable saying ``what`` and the driver's ``exc``, with no password."""
        return StoreUnavailable(self.redact(f"{what}: {exc}"))

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or (self.dialect == "postgresql" and conn.closed):
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    @contextmanager
    def transaction(self, *, serialize: bool = False) -> Iterator[Tx]:
        """A transaction; ``serialize`` makes it exclusive among all pool processes.

        Commits on normal exit, rolls back on exception (and re-raises it).
        Driver errors that mean the connection is gone raise StoreUnavailable.
        """
        conn = self._connection()
        if self.dialect == "sqlite":
            cursor = conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE" if serialize else "BEGIN")
            except sqlite3.OperationalError as exc:  # busy past the timeout, disk gone
                cursor.close()
                raise self._unavailable(
                    f"the pool database {self.url} is unavailable", exc
                ) from exc
            try:
                yield Tx("sqlite", cursor)
            except BaseException:
                conn.rollback()
                raise
            else:
                try:
                    conn.commit()
                except sqlite3.OperationalError as exc:
                    raise self._unavailable(
                        f"the pool database {self.url} is unavailable", exc
                    ) from exc
            finally:
                cursor.close()
            return
        import psycopg

        try:
            with conn.cursor() as cursor:
                tx = Tx("postgresql", cursor, begun=serialize)
                if serialize:
                    cursor.execute("BEGIN")
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
                try:
                    yield tx
                except BaseException:
                    if tx._begun and not conn.closed:
                        with suppress(psycopg.Error):
                            cursor.execute("ROLLBACK")
                    raise
                if tx._begun:
                    cursor.execute("COMMIT")
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise self._unavailable(f"lost the pool database {self.url}", exc) from exc

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(Exception):
                conn.close()


def open_database(url: str) -> Database:
    """A :class:`Database` for ``url``.

    ``postgresql://...`` (or ``postgres://``) uses psycopg 3; ``sqlite:///path``,
    ``sqlite://:memory:`` or a plain file path uses SQLite, creating the file and its
    directory on first use. Raises StoreUnavailable for other schemes.
    """
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise StoreUnavailable(
                "PostgreSQL needs psycopg 3: pip install 'tether[pool]'"
            ) from exc
        return Database(url, "postgresql", url)
    if url.startswith("sqlite:"):
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db.
        rest = url[len("sqlite:") :].removeprefix("//")
        target = rest[1:] if rest.startswith("/") else rest
        target = target or ":memory:"
    elif "://" in url:
        raise StoreUnavailable(
            f"unsupported database URL {redact_url(url)!r}: "
            "use a file path, sqlite:///PATH or postgresql://..."
        )
    else:
        target = url
    if target != ":memory:":
        Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
        target = str(Path(target).expanduser())
    return Database(url, "sqlite", target)
