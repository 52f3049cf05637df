"""The pool's busiest routes, answered before FastAPI sees them.

Theory of operation
-------------------
Placing and releasing a slice (``POST /v1/sessions``, ``DELETE
/v1/sessions/{id}``) are nearly all of a busy pool's requests. Through FastAPI
each one crossed a dozen middlewares, a router, dependency solving and
Starlette's request and response objects: about half of the pool's CPU under
``bench/pool_write.py`` (docs/performance.md, *Pool write throughput*).
:class:`Front` is a plain ASGI application in front of the FastAPI one that
serves those two routes itself and passes every other request, untouched, to
FastAPI, which still owns the OpenAPI schema (the two routes stay declared
there, and FastAPI still serves them whenever the front declines).

The front only answers what it can answer exactly as FastAPI would; it
*declines* (hands the request, its body replayed, to FastAPI) whenever the
answer is an error FastAPI decides: no usable ``Authorization: Bearer`` header,
a body that is not ``application/json``, too large, malformed or invalid for
:class:`~tether.pool._schemas.SliceIn`. Those paths change nothing, so it does
not matter who answers them; FastAPI's error shapes stay the only ones. Once
the front calls the service it answers itself, with the same mapping of errors
to statuses as the API (:func:`tether.pool._api.error_response`), the same
status codes (201 placed, 202 queued) and the body validated and serialised
through the same response model.

The blocking work (checking the token, then the service's call) runs in one
hop to a thread of the front's own (:class:`Workers`), cheaper than AnyIO's
per-call capacity limiter and cancel scopes, and than an executor's futures.
Many threads matter: the service batches concurrent writers into one commit
(:mod:`tether.pool._core`), so a thread waiting for its commit must not keep
the next request from being taken.

A client that hangs up before its placement is answered cannot learn the
session's id; what was placed or queued for it is released at once, as the
FastAPI route did (``client left before its answer`` in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from queue import SimpleQueue
from typing import Any, TypeVar

from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError

from tether.pool import _schemas as s
from tether.pool._api import EXPECTED_ERRORS, error_response, slice_order
from tether.pool._auth import Principal
from tether.pool._metrics import Histogram
from tether.pool._service import PoolService
from tether.pool._session_views import SessionView

__all__ = ["HOT_THREADS", "Front", "Workers"]

log = logging.getLogger("tether.pool")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

#: Threads for the hot routes' blocking work: enough that writers waiting for a
#: group commit do not hold up the requests behind them. 16 and 40 measured
#: alike under 200 clients (bench/pool_write.py); each thread may hold a database
#: connection, beside the up to 40 of FastAPI's own pool for the other routes
#: (PostgreSQL's default max_connections is 100).
HOT_THREADS = 16
#: A bigger body is no slice request the front need read: FastAPI answers it.
MAX_BODY = 64 * 1024

_SESSION_PREFIX = "/v1/sessions/"
_SESSION_OUT: TypeAdapter[s.SessionOut] = TypeAdapter(s.SessionOut)
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Decline(Exception):
    """The front will not answer this request: FastAPI will."""


class Front:
    """The ASGI application the pool serves: the hot routes, then ``app``.

    ``app`` is what :func:`tether.pool._api.create_app` made (its ``state``
    holds the service and the placement histogram). :meth:`close` stops the
    front's threads (after the server has stopped).
    """

    def __init__(self, app: FastAPI, *, threads: int = HOT_THREADS) -> None:
        self.app = app
        self.service: PoolService = app.state.service
        self.placement: Histogram = app.state.placement
        self._workers = Workers(threads, name="pool-hot")

    def close(self) -> None:
        self._workers.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == "/v1/sessions":
                return await self._serve(self._place, "", scope, receive, send)
            if method == "DELETE" and path.startswith(_SESSION_PREFIX):
                session_id = path[len(_SESSION_PREFIX) :]
                if session_id and "/" not in session_id:
                    return await self._serve(self._release, session_id, scope, receive, send)
        await self.app(scope, receive, send)

    async def _serve(
        self,
        route: Callable[[str, bytes, str, Receive], Awaitable[tuple[int, bytes]]],
        arg: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body, more, ended = await _read_body(receive)
        if ended:
            return  # the client hung up mid-request: nobody to answer
        try:
            if more:
                raise _Decline  # too large for a slice request: FastAPI's answer
            token = _bearer(scope)
            status, payload = await route(token, body, arg, receive)
        except _Decline:
            await self.app(scope, _replay(body, more, receive), send)
            return
        except Exception as exc:
            if not isinstance(exc, EXPECTED_ERRORS):
                log.exception("internal error in %s %s", scope["method"], scope["path"])
            await error_response(exc, self.service)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(payload)).encode()), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _run(self, work: Callable[[], T]) -> T:
        return await self._workers.run(work)

    # ---------------------------------------------------------------- routes

    async def _place(
        self, token: str, body: bytes, _arg: str, receive: Receive
    ) -> tuple[int, bytes]:
        try:
            request = s.SliceIn.model_validate_json(body)
        except ValidationError:
            raise _Decline from None  # FastAPI's 400, in its words
        service = self.service

        def place() -> tuple[Principal, SessionView]:
            who = service.authenticate(token)
            order = slice_order(service, who, request)
            started = time.perf_counter()
            try:
                return who, service.request_slice(who, order)
            finally:
                self.placement.observe(time.perf_counter() - started)

        who, session = await self._run(place)
        if await _disconnected(receive):
            # The client hung up before its answer (it gave up, or died): it cannot
            # know the session's id, so nobody else could end the lease before
            # its timeout. What is placed or queued for it is given back now.
            log.warning("client left before its answer: released session %s", session.id)
            sid = session.id
            session = await self._run(lambda: service.release(who, sid))
        return (202 if session.state == "queued" else 201), _session_json(session)

    async def _release(
        self, token: str, _body: bytes, session_id: str, _receive: Receive
    ) -> tuple[int, bytes]:
        service = self.service

        def release() -> SessionView:
            return service.release(service.authenticate(token), session_id)

        return 200, _session_json(await self._run(release))


class Workers:
    """Threads that run blocking calls for an event loop.

    A call is handed over with one put on a :class:`queue.SimpleQueue` and its
    outcome handed back with one ``call_soon_threadsafe``: no
    :class:`concurrent.futures.Future` between the two, as
    ``run_in_executor`` has (its lock, condition and callbacks were ~5 % of the
    pool's busy event loop). A call whose awaiter was cancelled still runs to
    its end, as with an executor; its outcome is dropped.
    """

    def __init__(self, count: int, *, name: str) -> None:
        self._calls: SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """``call()`` in one of the threads; await the future for its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, call))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Let the calls handed over finish, then stop every thread; waits at most
        ``timeout`` seconds in all (a call stuck on the database is left to die with
        the process: the threads are daemons)."""
        for _ in self._threads:
            self._calls.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, call = item
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as exc:  # handed to the awaiter, whatever it is
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del item, call, outcome  # hold nothing while idle


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _session_json(session: SessionView) -> bytes:
    """What FastAPI sends for ``response_model=SessionOut``: validated, then dumped."""
    return _SESSION_OUT.dump_json(_SESSION_OUT.validate_python(session.to_json()), by_alias=True)


def _bearer(scope: Scope) -> str:
    """The token of ``Authorization: Bearer TOKEN``, read as FastAPI's ``HTTPBearer``
    reads it; declines (FastAPI's 401) without one, and unless the body is JSON."""
    authorization = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    if scope["method"] == "POST" and (
        content_type is None or content_type.partition(";")[0].strip().lower() != "application/json"
    ):
        raise _Decline
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if not (scheme and credentials) or scheme.lower() != "bearer":
        raise _Decline
    return credentials


async def _read_body(receive: Receive) -> tuple[bytes, bool, bool]:
    """The request's body, or its first MAX_BODY bytes and more: ``(body, more,
    ended)``; ``more``: the rest is unread, ``ended``: the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > MAX_BODY:
            return b"".join(chunks), more, False


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` for FastAPI: what the front read of the body, then the client's own."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _disconnected(receive: Receive) -> bool:
    """Whether the client has hung up, without waiting.

    Starlette's ``Request.is_disconnected`` does this with a cancelled scope:
    ``receive()`` runs to its first suspension and is stopped there. A server
    that knows of the hang-up answers before suspending (uvicorn does); a
    coroutine is driven by hand, which spares a task and two loop turns.
    """
    step = receive()
    if not isinstance(step, Coroutine):  # some other awaitable: give it one turn
        task = asyncio.ensure_future(step)
        await asyncio.sleep(0)
        if task.done():
            return bool(task.result().get("type") == "http.disconnect")
        task.cancel()
        return False
    try:
        step.send(None)
    except StopIteration as done:
        return bool(done.value.get("type") == "http.disconnect")
    step.close()  # suspended: nothing came, nothing was taken
    return False
