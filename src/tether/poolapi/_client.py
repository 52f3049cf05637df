"""A small blocking client for the pool's HTTP API, standard library only.

(Over 400 lines: one short method per API route, each with its contract.)

The user's machine (``tether run --pool URL``), the CLI and acceptors use it;
none of them needs the pool's server-side dependencies. Every method is one
HTTP request (except :meth:`PoolClient.wait_for_slice`, which polls), and every
failure is one of Tether's errors:

- the pool cannot be reached (refused, DNS, timeout, an ``https://`` certificate
  that does not verify): :class:`ConnectError`;
- 401: :class:`AuthenticationError` with the server's reason;
- other 4xx: the :mod:`tether.poolapi._problems` class the server named
  (:class:`Refused`, :class:`Forbidden`, :class:`NotFound`, ...), carrying the
  server's message and ``detail`` (for quota refusals: limit, used, left);
- 5xx or a body that is not the API's JSON: :class:`PoolError`.

A client made with ``max_idle`` > 0 keeps up to that many connections open and
reuses them (:mod:`tether.poolapi._connections`, which says when a request is
sent twice: never a POST); its owner closes it (:meth:`PoolClient.close`, or a
``with`` block). Long-lived clients do (the acceptor's pool agent, a held
lease); by default a client keeps none, a connection a request, and owes
nobody a close. Behind an HTTP proxy (``$http_proxy`` ...) every request goes
through ``urllib`` on a connection of its own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Self

from tether._errors import AuthenticationError, ConnectError, PoolError
from tether.poolapi._connections import Connections
from tether.poolapi._problems import PoolRequestError, error_class_for
from tether.transport._tls import ca_from_env, client_context, verify_failure

__all__ = ["PoolClient"]

JSON = dict[str, Any]


class PoolClient:
    """Talks to one pool as one principal (a user's or a node's token).

    ``url`` is the pool's base URL (``http://host:8600`` or ``https://...``);
    ``timeout`` bounds each request in seconds. An ``https://`` pool must show a
    certificate for its host that chains to ``ca`` (a PEM file; default
    ``$TETHER_TLS_CA``, else the system's trust); there is no way to skip the
    check. Instances are safe to share between threads. With ``max_idle`` > 0
    they keep up to that many connections open for the next requests (see the
    module docstring): :meth:`close` them when done, or use the client as a
    context manager; a closed client may still be used (it connects again).
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        ca: str | os.PathLike[str] | None = None,
        max_idle: int = 0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ca = ca if ca is not None else ca_from_env()
        # Built once: loading a CA file costs milliseconds, a request should not.
        self._tls: ssl.SSLContext | None = (
            client_context(self.ca) if self.url.startswith("https://") else None
        )
        where = urllib.parse.urlsplit(self.url)
        self._base = where.path
        # Through a proxy (urllib's rules: $http_proxy, $no_proxy): urllib does it.
        proxy = urllib.request.getproxies().get(where.scheme)
        self._direct = proxy is None or bool(urllib.request.proxy_bypass(where.netloc))
        self._connections = Connections(
            where.hostname or "", where.port, timeout=timeout, tls=self._tls, max_idle=max_idle
        )
        # A client nobody closed closes its connections when it is collected.
        weakref.finalize(self, self._connections.close)

    def close(self) -> None:
        """Close the connections kept for the next requests (idempotent)."""
        self._connections.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- transport

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        """One API call; returns the decoded JSON (or the text, when ``raw``)."""
        target = path
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            if clean:
                target += "?" + urllib.parse.urlencode(clean)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self._direct:
                status, payload = self._connections.exchange(
                    method, self._base + target, data, headers
                )
            else:
                status, payload = self._via_urllib(method, self.url + target, data, headers)
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ConnectError(self._unreachable(reason)) from exc
        except http.client.HTTPException as exc:  # IncompleteRead: it died mid-answer
            raise ConnectError(
                f"the pool at {self.url} closed the connection in the middle of its answer "
                f"({type(exc).__name__}); what it was asked may or may not have been done"
            ) from exc
        if not 200 <= status < 300:
            raise self._error(status, payload)
        if raw:
            return payload.decode("utf-8", "replace")
        if status == 204 or not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise PoolError(f"the pool at {self.url} sent a body that is not JSON") from exc

    def _via_urllib(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One request through urllib (its proxies), on a connection of its own."""
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            exc.close()
            return exc.code, payload

    def _unreachable(self, reason: object) -> str:
        if isinstance(reason, ssl.SSLCertVerificationError):
            host = urllib.parse.urlsplit(self.url).hostname or self.url
            return verify_failure(reason, f"the pool at {self.url}", host)
        if isinstance(reason, ssl.SSLError):
            why = (reason.reason or str(reason)).lower().replace("_", " ")
            return (
                f"TLS handshake with the pool at {self.url} failed ({why}): "
                "is it serving https? (use http:// for a plain pool)"
            )
        if self._tls is None and isinstance(reason, ConnectionResetError | ConnectionAbortedError):
            return (
                f"the pool at {self.url} closed the connection without an answer ({reason}); "
                "if it serves HTTPS, use https://"
            )
        return f"cannot reach the pool at {self.url}: {reason}"

    def _error(self, status: int, payload: bytes) -> Exception:
        code: str | None = None
        message = f"HTTP {status}"
        detail: dict[str, Any] = {}
        try:
            info = json.loads(payload)["error"]
            code = str(info.get("code"))
            message = str(info.get("message", message))
            detail = dict(info.get("detail") or {})
        except (ValueError, KeyError, TypeError, AttributeError):
            text = payload.decode("utf-8", "replace").strip()
            if text:
                message = f"HTTP {status}: {text[:300]}"
        cls = error_class_for(status, code)
        if issubclass(cls, PoolRequestError):
            return cls(message, detail)
        if cls is AuthenticationError:
            return AuthenticationError(message)
        return PoolError(f"the pool failed: {message}")

    # ---------------------------------------------------------------- whoami

    def me(self) -> JSON:
        return self.request("GET", "/v1/me")  # type: ignore[no-any-return]

    # ------------------------------------------------------- teams and users

    def teams(self) -> list[JSON]:
        return self.request("GET", "/v1/teams")  # type: ignore[no-any-return]

    def create_team(self, name: str) -> JSON:
        return self.request("POST", "/v1/teams", {"name": name})  # type: ignore[no-any-return]

    def delete_team(self, name: str) -> None:
        self.request("DELETE", f"/v1/teams/{_q(name)}")

    def users(self) -> list[JSON]:
        return self.request("GET", "/v1/users")  # type: ignore[no-any-return]

    def create_user(
        self, name: str, *, admin: bool = False, teams: list[str] | None = None
    ) -> JSON:
        body = {"name": name, "admin": admin, "teams": list(teams or [])}
        return self.request("POST", "/v1/users", body)  # type: ignore[no-any-return]

    def add_member(self, team: str, user: str) -> JSON:
        return self.request(  # type: ignore[no-any-return]
            "POST", f"/v1/teams/{_q(team)}/members", {"user": user}
        )

    def remove_member(self, team: str, user: str) -> None:
        self.request("DELETE", f"/v1/teams/{_q(team)}/members/{_q(user)}")

    # ----------------------------------------------------------------- tokens

    def tokens(self, user: str | None = None) -> list[JSON]:
        return self.request("GET", "/v1/tokens", query={"user": user})  # type: ignore[no-any-return]

    def create_token(
        self,
        *,
        user: str | None = None,
        node: str | None = None,
        kind: str = "user",
        label: str = "",
    ) -> JSON:
        """Issue a token; the returned ``token`` field is the secret, shown only now."""
        body = {"kind": kind, "user": user, "node": node, "label": label}
        return self.request("POST", "/v1/tokens", body)  # type: ignore[no-any-return]

    def revoke_token(self, token_id: str) -> JSON:
        return self.request("DELETE", f"/v1/tokens/{_q(token_id)}")  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- quotas

    def quota(self, team: str) -> JSON:
        return self.request("GET", f"/v1/teams/{_q(team)}/quota")  # type: ignore[no-any-return]

    def set_quota(
        self,
        team: str,
        *,
        max_share: float | None = None,
        max_memory: str | int | None = None,
        device_hours_per_month: float | None = None,
    ) -> JSON:
        body = {
            "max_share": max_share,
            "max_memory": max_memory,
            "device_hours_per_month": device_hours_per_month,
        }
        return self.request("PUT", f"/v1/teams/{_q(team)}/quota", body)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ nodes

    def nodes(self) -> list[JSON]:
        return self.request("GET", "/v1/nodes")  # type: ignore[no-any-return]

    def devices(self) -> list[JSON]:
        return self.request("GET", "/v1/devices")  # type: ignore[no-any-return]

    def node_action(self, node: str, action: str) -> JSON:
        """``action`` is ``cordon``, ``drain`` or ``uncordon`` (admins only)."""
        return self.request("POST", f"/v1/nodes/{_q(node)}/{action}")  # type: ignore[no-any-return]

    def register_node(
        self,
        name: str,
        address: str,
        devices: list[Mapping[str, Any]],
        *,
        replace: bool = False,
    ) -> JSON:
        """Register an acceptor (node token).

        ``devices``: dicts with id, vendor, model, memory, arch, frameworks.
        """
        body = {
            "name": name,
            "address": address,
            "devices": [dict(d) for d in devices],
            "replace": replace,
            "sent_at": time.time(),
        }
        return self.request("POST", "/v1/nodes", body)  # type: ignore[no-any-return]

    def node_heartbeat(
        self,
        name: str,
        *,
        sessions: list[Mapping[str, Any]] | None = None,
        device_ids: list[str] | None = None,
    ) -> JSON:
        """Tell the pool the node is alive, with per-session metering figures.

        ``sessions``: dicts with ``session_id`` and the acceptor's ``SessionUsage``
        fields (``wall_seconds``, ``memory_hwm``, ``device_memory_hwm``, ...); the
        leases of the sessions listed are renewed.

        Returns ``{"status": ..., "ended_sessions": [...]}``: sessions the acceptor
        should stop because their lease is gone.
        """
        body: JSON = {"sent_at": time.time(), "sessions": [dict(s) for s in sessions or []]}
        if device_ids is not None:
            body["device_ids"] = list(device_ids)
        return self.request(  # type: ignore[no-any-return]
            "POST", f"/v1/nodes/{_q(name)}/heartbeat", body
        )

    # --------------------------------------------------------------- sessions

    def request_slice(self, **request: Any) -> JSON:
        """Ask for a slice; returns the session (``state`` placed or queued).

        Keyword arguments are the API's fields: fraction, memory, count, vendor,
        model, min_memory, frameworks, node, team, priority, wait,
        queue_timeout_s, policy, name. Raises :class:`Refused` when refused at once.
        """
        body = {k: v for k, v in request.items() if v is not None}
        return self.request("POST", "/v1/sessions", body)  # type: ignore[no-any-return]

    def session(self, session_id: str) -> JSON:
        return self.request("GET", f"/v1/sessions/{_q(session_id)}")  # type: ignore[no-any-return]

    def sessions(self, *, state: str | None = None, team: str | None = None) -> list[JSON]:
        return self.request(  # type: ignore[no-any-return]
            "GET", "/v1/sessions", query={"state": state, "team": team}
        )

    def heartbeat(self, session_id: str) -> JSON:
        return self.request(  # type: ignore[no-any-return]
            "POST", f"/v1/sessions/{_q(session_id)}/heartbeat"
        )

    def release(self, session_id: str) -> JSON:
        """End a lease (or withdraw a queued request)."""
        return self.request("DELETE", f"/v1/sessions/{_q(session_id)}")  # type: ignore[no-any-return]

    def wait_for_slice(
        self,
        *,
        on_position: Callable[[int, str], None] | None = None,
        poll_interval: float = 1.0,
        **request: Any,
    ) -> JSON:
        """Ask for a slice and wait in the queue until it is placed.

        ``on_position(position, reason)`` is called when the queue position
        changes. Returns the placed session (with ``address`` and ``ticket``).
        Raises :class:`Refused` when refused at once or when the request leaves
        the queue without a slice (timeout), and withdraws the request if the
        wait is interrupted (KeyboardInterrupt included).
        """
        from tether.poolapi._problems import Refused

        session = self.request_slice(**request)
        last: int | None = None
        try:
            while session["state"] == "queued":
                position = int(session.get("position") or 0)
                if on_position is not None and position != last:
                    on_position(position, str(session.get("reason") or ""))
                last = position
                time.sleep(poll_interval)
                session = self.session(session["id"])
        except BaseException:
            if session.get("state") == "queued":
                # Best effort: the queue timeout ends it anyway.
                with contextlib.suppress(Exception):
                    self.release(session["id"])
            raise
        if session["state"] != "placed":
            reason = session.get("end_reason") or "ended"
            message = session.get("reason") or f"the request left the queue: {reason}"
            raise Refused(str(message), {"reason": reason, "session": session["id"]})
        return session

    # ----------------------------------------------------------------- groups

    def request_group(self, **request: Any) -> JSON:
        """Ask for many slices of one shape in one call; returns the group (``state``
        placed, with its members, or queued as a unit).

        Keyword arguments are the API's fields: ``max_count`` (members), ``min_count``
        (default: all of them), ``name``, and the slice fields of
        :meth:`request_slice` for every member. Raises :class:`Refused` when refused
        at once (``detail["reason"]``: unsatisfiable, capacity, quota).
        """
        body = {k: v for k, v in request.items() if v is not None}
        return self.request("POST", "/v1/groups", body)  # type: ignore[no-any-return]

    def group(self, ref: str) -> JSON:
        """A group by id or name, with its members (and their tickets, for its user)."""
        return self.request("GET", f"/v1/groups/{_q(ref)}")  # type: ignore[no-any-return]

    def group_member(self, ref: str, index: int) -> JSON:
        """One placed member of a group, with its address and a fresh ticket."""
        return self.request(  # type: ignore[no-any-return]
            "GET", f"/v1/groups/{_q(ref)}/members/{int(index)}"
        )

    def groups(self, *, state: str | None = None, team: str | None = None) -> list[JSON]:
        return self.request(  # type: ignore[no-any-return]
            "GET", "/v1/groups", query={"state": state, "team": team}
        )

    def cancel_group(self, ref: str) -> JSON:
        """Withdraw a waiting group or release all its members' leases (idempotent)."""
        return self.request("DELETE", f"/v1/groups/{_q(ref)}")  # type: ignore[no-any-return]

    def group_usage(self, *, team: str | None = None, month: str | None = None) -> list[JSON]:
        """Usage per group in a month (default this one)."""
        body = self.request("GET", "/v1/usage/groups", query={"team": team, "month": month})
        return list(body["rows"])

    def group_usage_csv(self, *, team: str | None = None, month: str | None = None) -> str:
        return str(
            self.request(
                "GET",
                "/v1/usage/groups",
                query={"team": team, "month": month, "format": "csv"},
                raw=True,
            )
        )

    # ------------------------------------------------------------------ usage

    def usage(
        self, *, team: str | None = None, user: str | None = None, month: str | None = None
    ) -> list[JSON]:
        body = self.request("GET", "/v1/usage", query={"team": team, "user": user, "month": month})
        return list(body["rows"])

    def usage_csv(
        self, *, team: str | None = None, user: str | None = None, month: str | None = None
    ) -> str:
        return str(
            self.request(
                "GET",
                "/v1/usage",
                query={"team": team, "user": user, "month": month, "format": "csv"},
                raw=True,
            )
        )

    def status(self) -> JSON:
        return self.request("GET", "/v1/status")  # type: ignore[no-any-return]

    def verify_ticket(self, ticket: str) -> JSON:
        return self.request("POST", "/v1/tickets/verify", {"ticket": ticket})  # type: ignore[no-any-return]


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
