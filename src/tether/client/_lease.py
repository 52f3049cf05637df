"""Holding a pool slice for a client: request, wait in the queue, heartbeat, release.

``tether run --pool`` uses :func:`acquire` before it starts the script and
:meth:`Lease.release` after it exits (also when it crashed or was killed by a
signal the launcher saw). Between the two a daemon thread renews the lease
every ``interval`` seconds and writes each fresh ticket the pool answers with
into ``ticket_file``, which the script reads (``TETHER_TOKEN_FILE``) when it
connects, so a script that connects late never shows an expired ticket.

If the launcher itself dies without a word (SIGKILL), nothing releases the
lease: the pool ends it when neither the client's heartbeats nor the
acceptor's (which renew the leases of the sessions it still runs) arrive for
its lease timeout.

Standard library only (plus :mod:`tether.poolapi`), like every client piece.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tether._errors import ConnectError, PoolError
from tether._units import parse_fraction, parse_memory

__all__ = ["Lease", "acquire", "slice_request"]

#: Seconds between lease heartbeats (the pool's default lease timeout is 90 s).
DEFAULT_HEARTBEAT_S = 10.0

#: To a file or pipe, an unchanged queue line is repeated this often at most
#: (``TETHER_QUEUE_REPORT_S`` overrides it).
LOG_EVERY_S = 10.0

#: How often the queue is listed again for "the request ahead" while the position holds.
AHEAD_EVERY_S = 5.0


def slice_request(
    *,
    gpus: float | None = None,
    memory: str | None = None,
    vendor: str | None = None,
    model: str | None = None,
    frameworks: list[str] | None = None,
    node: str | None = None,
    team: str | None = None,
    wait: bool = True,
    queue_timeout_s: float | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The pool's request body for ``tether run``'s options.

    ``name`` is the session's name in the pool (``tether run --name``).

    ``gpus`` in (0, 1] is a fraction of one device; a whole number above 1 is a
    count of whole devices. With neither ``gpus`` nor ``memory``, one whole device.
    Raises ValueError for a value that is neither.
    """
    body: dict[str, Any] = {}
    if gpus is not None:
        if gpus <= 1:
            body["fraction"] = parse_fraction(gpus, what="--gpus")
        elif float(gpus).is_integer():
            body["count"] = int(gpus)
        else:
            raise ValueError(
                f"--gpus {gpus:g}: use a fraction of one device (0.5) or a whole number (2)"
            )
    elif memory is None:
        body["fraction"] = 1.0
    if memory is not None:
        parse_memory(memory, what="--gpu-memory")  # refused here, before the pool is asked
        body["memory"] = memory
    extra = {
        "vendor": vendor,
        "model": model,
        "node": node,
        "team": team,
        "queue_timeout_s": queue_timeout_s,
        "name": name,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    if frameworks:
        body["frameworks"] = list(frameworks)
    body["wait"] = wait
    return body


class _PositionLine:
    """The live 'waiting in the queue' line on stderr.

    On a terminal it is redrawn at every poll, so the wait so far advances; to
    a file or pipe a line is written when the position or the request ahead
    changes, and at most every :data:`LOG_EVERY_S` seconds otherwise.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.shown = False
        self.started = time.monotonic()
        self._last: tuple[int, str, str] | None = None
        self._last_at = 0.0
        self.every = float(os.environ.get("TETHER_QUEUE_REPORT_S") or LOG_EVERY_S)

    def __call__(
        self, position: int, reason: str, ahead: str = "", deadline: float | None = None
    ) -> None:
        """Show the line. ``deadline`` (unix time) is when the pool gives up on
        the request: the one end the pool knows. When the request will be placed
        it cannot know (no running session states when it will end), so the ETA
        is said to be unknown rather than guessed."""
        now = time.monotonic()
        key = (position, reason, ahead)
        if not self.tty and key == self._last and now - self._last_at < self.every:
            return
        self._last, self._last_at = key, now
        text = f"tether: waiting for a slice: position {position} in the queue"
        if reason:
            text += f" ({reason})"
        text += f", waiting {_duration(now - self.started)} so far"
        if ahead:
            text += f"; ahead: {ahead}"
        text += "; ETA unknown (running sessions set no end time)"
        if deadline is not None:
            text += f", gives up in {_duration(max(0.0, deadline - time.time()))}"
        if self.tty:
            self.out.write("\r\x1b[K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown and self.tty:
            self.out.write("\n")
            self.out.flush()


@dataclass
class Lease:
    """A placed slice held by this process; see the module docstring."""

    client: Any  # tether.poolapi.PoolClient
    session: dict[str, Any]
    ticket_file: Path | None = None
    out: TextIO | None = None
    #: The CA file that verifies the pool's and its acceptors' certificates (None: the
    #: system's trust), for ``tether.connect(lease.address, lease.ticket, tls_ca=lease.ca)``.
    ca: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ended_reason: str | None = None
        if self.ticket_file is not None:
            self._write_ticket(self.session)

    @property
    def id(self) -> str:
        return str(self.session["id"])

    @property
    def address(self) -> str:
        return str(self.session["address"])

    @property
    def ticket(self) -> str:
        return str(self.session["ticket"])

    def describe(self) -> str:
        devices = ", ".join(
            f"{d['id']} x{d['fraction']:.2f}" for d in self.session.get("devices", [])
        )
        memory = self.session.get("memory_bytes") or 0
        return (
            f"session {self.id} on node {self.session.get('node')} ({self.address}): "
            f"{devices or '?'}, memory {_gib(memory)}"
        )

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def start_heartbeat(self, interval: float = DEFAULT_HEARTBEAT_S) -> None:
        """Renew the lease from a daemon thread until :meth:`release`."""
        self._thread = threading.Thread(
            target=self._beat, args=(interval,), name="tether-lease", daemon=True
        )
        self._thread.start()

    def _beat(self, interval: float) -> None:
        from tether.poolapi import Gone, NotFound

        while not self._stop.wait(interval):
            try:
                current = self.client.heartbeat(self.id)
            except (Gone, NotFound) as exc:
                # No line here: the acceptor ends the worker and the script's
                # session ends with one line that says who and why.
                self.ended_reason = str(exc)
                return
            except (ConnectError, PoolError):
                continue  # transient: the acceptor's heartbeats renew it meanwhile
            self._write_ticket(current)

    def _write_ticket(self, session: Mapping[str, Any]) -> None:
        ticket = session.get("ticket")
        if self.ticket_file is None or not ticket:
            return
        tmp = self.ticket_file.with_name(self.ticket_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(ticket) + "\n")
        tmp.replace(self.ticket_file)  # atomic: the script never reads half a ticket

    def release(self) -> None:
        """Stop the heartbeats and end the lease (best effort: the pool's timeout
        ends it anyway if the pool cannot be reached now); closes the client's
        connections to the pool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with contextlib.suppress(ConnectError, PoolError):
                self.client.release(self.id)
        finally:
            self.client.close()


def acquire(
    client: Any,
    request: Mapping[str, Any],
    *,
    out: TextIO | None = None,
    ticket_file: Path | None = None,
    poll_interval: float = 0.5,
    ca: str | None = None,
) -> Lease:
    """Ask ``client``'s pool for a slice and wait until it is placed.

    While queued, a position line goes to ``out`` (default stderr). Raises
    :class:`tether.poolapi.Refused` (over quota, nothing fits with
    ``wait=False``, queue timeout) with the pool's message, ConnectError or
    AuthenticationError. An interrupted wait withdraws the request.
    """
    stream = out if out is not None else sys.stderr
    line = _PositionLine(stream)
    try:
        session = _wait_for_slice(client, line, poll_interval, request)
    finally:
        line.done()
    return Lease(client, session, ticket_file=ticket_file, out=stream, ca=ca)


def _wait_for_slice(
    client: Any, line: _PositionLine, poll_interval: float, request: Mapping[str, Any]
) -> dict[str, Any]:
    """``client.wait_for_slice``, but the line is told at every poll (so the wait
    advances) and names the request ahead; withdraws the request if interrupted."""
    from tether.poolapi import Refused

    session: dict[str, Any] = client.request_slice(**request)
    ahead: tuple[str, float | None] = ("", None)
    asked_at, asked_for = 0.0, -1
    try:
        while session["state"] == "queued":
            position = int(session.get("position") or 0)
            if position != asked_for or time.monotonic() - asked_at > AHEAD_EVERY_S:
                # One listing per change of place (and now and then): not per poll.
                ahead, asked_at, asked_for = _ahead(client, position), time.monotonic(), position
            text, since = ahead
            if since is not None:
                text += f", waiting {_duration(max(0.0, time.time() - since))}"
            deadline = session.get("queue_deadline")
            line(
                position,
                str(session.get("reason") or ""),
                text,
                float(deadline) if isinstance(deadline, int | float) else None,
            )
            time.sleep(poll_interval)
            session = client.session(session["id"])
    except BaseException:
        if session.get("state") == "queued":
            with contextlib.suppress(Exception):  # the queue timeout ends it anyway
                client.release(session["id"])
        raise
    if session["state"] != "placed":
        reason = session.get("end_reason") or "ended"
        message = session.get("reason") or f"the request left the queue: {reason}"
        raise Refused(str(message), {"reason": reason, "session": session["id"]})
    return session


def _ahead(client: Any, position: int) -> tuple[str, float | None]:
    """The request just ahead in the queue, in a few words, and when it was made.

    The pool shows users only their teams' sessions: one of another team's is
    "another team's request". Empty when first in line or on any failure (the
    line is a courtesy; the wait goes on without it).
    """
    if position <= 1:
        return "", None
    try:
        queued = client.sessions(state="queued")
    except (ConnectError, PoolError):
        return "", None
    for other in queued:
        if other.get("position") == position - 1:
            what = _describe_request(other.get("request") or {})
            since = other.get("submitted_at")
            return (
                f"{other.get('user')} ({other.get('team')}), {what}",
                float(since) if since else None,
            )
    return "another team's request", None


def _describe_request(request: Mapping[str, Any]) -> str:
    parts = []
    if request.get("count"):
        parts.append(f"{request['count']} devices")
    elif request.get("fraction") is not None:
        parts.append(f"{float(request['fraction']):g} device")
    memory = request.get("memory_bytes") or request.get("memory")
    if memory:
        parts.append(_gib(int(memory)) if isinstance(memory, int | float) else str(memory))
    return " + ".join(parts) or "a slice"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds / 3600:.1f}h"


def _gib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f}GiB"
    return f"{n / (1 << 20):.0f}MiB"
