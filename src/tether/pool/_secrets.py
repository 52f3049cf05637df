"""The pool's ticket secret: kept outside the database, rotated without downtime.

Every ticket key is derived from this secret (:func:`tether._ticket.node_key`),
so whoever holds it can mint tickets for every node. It therefore never goes
into the database (a copy or a dump of which must not be enough to forge a
ticket); it lives in a file given to ``tether pool serve --secret-file`` (mode
0600, created with a fresh secret on first start when absent) or in the
environment variable ``TETHER_POOL_SECRET``. Pool replicas sharing a database
must be given the same secret.

File format (text, one entry a line, ``#`` comments)::

    current <64 hex digits>
    previous <64 hex digits> <unix time until which it is still accepted>

Rotation (:func:`rotate_secret_file`, ``tether pool rotate-secret``) writes a
new ``current`` and keeps the old one as ``previous`` for a grace period. The
pool re-reads the file when it changes, signs with ``current`` at once and
accepts both until the grace period ends; acceptors get both keys with their
next heartbeat (or at the next connect that needs the new one), so no ticket
is refused while the keys change hands. The grace period should outlast a
ticket's life (``--ticket-ttl`` plus the clock skew allowed).
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from tether._errors import PoolError

__all__ = [
    "DEFAULT_GRACE_S",
    "ENV_SECRET",
    "PoolSecret",
    "SecretSource",
    "create_secret_file",
    "parse_secret_text",
    "rotate_secret_file",
]

#: The environment variable that may hold the current secret (hex) instead of a file.
ENV_SECRET = "TETHER_POOL_SECRET"
#: How long a rotated-out secret is still accepted: longer than a ticket's life.
DEFAULT_GRACE_S = 600.0
_MIN_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSecret:
    """The current secret, and the previous one with the time it stops counting."""

    current: bytes
    previous: bytes | None = None
    previous_until: float | None = None

    def verifying(self, now: float) -> tuple[bytes, ...]:
        """The secrets whose keys are accepted at ``now``: current first."""
        if self.previous is not None and (self.previous_until or 0.0) > now:
            return (self.current, self.previous)
        return (self.current,)


def _hex_secret(text: str, where: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise PoolError(f"{where}: the secret is not hex digits") from None
    if len(value) < _MIN_BYTES:
        raise PoolError(
            f"{where}: the secret has {len(value)} bytes; at least {_MIN_BYTES} random bytes "
            "(64 hex digits) are needed"
        )
    return value


def parse_secret_text(text: str, where: str) -> PoolSecret:
    """Parse a secret file's text (see the module docstring); PoolError says what is wrong."""
    current: bytes | None = None
    previous: bytes | None = None
    until: float | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        at = f"{where} line {number}"
        if parts[0] == "current" and len(parts) == 2:
            current = _hex_secret(parts[1], at)
        elif parts[0] == "previous" and len(parts) == 3:
            previous = _hex_secret(parts[1], at)
            try:
                until = float(parts[2])
            except ValueError:
                raise PoolError(f"{at}: 'previous' needs a unix time after the secret") from None
        elif len(parts) == 1 and current is None:
            current = _hex_secret(parts[0], at)  # a bare secret, as from openssl rand -hex 32
        else:
            raise PoolError(
                f"{at}: expected 'current HEX' or 'previous HEX UNTIL', got {parts[0]!r}"
            )
    if current is None:
        raise PoolError(f"{where} holds no secret: write 'current <64 hex digits>' in it")
    return PoolSecret(current=current, previous=previous, previous_until=until)


def _format(secret: PoolSecret) -> str:
    lines = [
        "# The tether pool's ticket secret: whoever reads it can forge session tickets.",
        "# Keep it mode 0600, outside the database; rotate with `tether pool rotate-secret`.",
        f"current {secret.current.hex()}",
    ]
    if secret.previous is not None and secret.previous_until is not None:
        lines.append(f"previous {secret.previous.hex()} {secret.previous_until:.3f}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_secret_file(path: Path) -> bool:
    """Create ``path`` (mode 0600) with a fresh secret unless it exists; True if created."""
    if path.exists():
        return False
    _write_private(path, _format(PoolSecret(current=secrets.token_bytes(_MIN_BYTES))))
    return True


def rotate_secret_file(path: Path, *, now: float, grace_s: float = DEFAULT_GRACE_S) -> PoolSecret:
    """Make a new current secret in ``path``; the old one stays accepted ``grace_s`` more."""
    if grace_s < 0:
        raise PoolError("the grace period cannot be negative")
    old = SecretSource(path).load()
    new = PoolSecret(
        current=secrets.token_bytes(_MIN_BYTES), previous=old.current, previous_until=now + grace_s
    )
    _write_private(path, _format(new))
    return new


class SecretSource:
    """Where the pool reads its secret: a file (re-read when it changes), or a value.

    ``SecretSource(path)`` reads the file; ``SecretSource.fixed(secret)`` holds one in
    memory (tests, the environment variable). :meth:`load` raises PoolError with what
    to do when the file is missing, unreadable, readable by others, or malformed.
    Thread-safe.
    """

    def __init__(self, path: Path | None, *, fixed: PoolSecret | None = None) -> None:
        self.path = path
        self._fixed = fixed
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._cached: PoolSecret | None = None

    @classmethod
    def fixed(cls, secret: PoolSecret) -> SecretSource:
        return cls(None, fixed=secret)

    @classmethod
    def ephemeral(cls) -> SecretSource:
        """A random secret in memory only (tests; tickets die with the process)."""
        return cls.fixed(PoolSecret(current=secrets.token_bytes(_MIN_BYTES)))

    @classmethod
    def from_env(cls, value: str) -> SecretSource:
        return cls.fixed(parse_secret_text(value.strip(), f"${ENV_SECRET}"))

    def load(self) -> PoolSecret:
        """The secret now (the file is parsed again only when it changed)."""
        if self._fixed is not None:
            return self._fixed
        assert self.path is not None
        with self._lock:
            try:
                st = self.path.stat()
            except OSError as exc:
                raise PoolError(
                    f"cannot read the pool's secret file {self.path}: {exc.strerror}"
                ) from None
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._cached is not None and seen == self._seen:
                return self._cached
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PoolError(
                    f"the pool's secret file {self.path} is readable by others "
                    f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 {self.path}"
                )
            try:
                text = self.path.read_text()
            except OSError as exc:
                raise PoolError(
                    f"cannot read the pool's secret file {self.path}: {exc.strerror}"
                ) from None
            self._cached = parse_secret_text(text, str(self.path))
            self._seen = seen
            return self._cached
