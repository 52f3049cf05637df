"""The pool's HTTP JSON API (``/v1/...``), a thin FastAPI shell over :class:`PoolService`.

(Over 400 lines: one short route per endpoint, declared in one ``create_app`` so the
OpenAPI schema and the routes cannot drift apart.)

Every route needs ``Authorization: Bearer TOKEN`` but ``/v1/openapi.json`` and
the probes ``/v1/health`` and ``/v1/ready`` (:mod:`tether.pool._health`);
``/metrics`` too, unless the server was started with public metrics. Every
error, whatever raised it, leaves as one JSON shape::

    {"error": {"code": "bad-request", "message": "fraction must be ...", "detail": {}}}

with 400 for bad input (malformed JSON, unknown fields, out-of-range values),
401 for a missing, wrong or revoked token, 403 for what the caller may not do,
404/409/410 for unknown, conflicting or ended things. Handlers are plain
``def`` functions: FastAPI runs them in its thread pool, where the blocking
service and database belong. ``POST /v1/sessions`` is the exception: it runs
the service in the thread pool itself, so that afterwards it can see whether
the client is still there, and give back what it was given if not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import fields
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether._errors import AuthenticationError
from tether._version import __version__
from tether.pool import _health, _metrics
from tether.pool import _schemas as s
from tether.pool._auth import Principal
from tether.pool._db import StoreUnavailable
from tether.pool._metering import SessionReport
from tether.pool._model import DeviceSpec
from tether.pool._orders import GroupOrder, SliceOrder, device_specs
from tether.pool._service import PoolService
from tether.pool._session_views import SessionView
from tether.pool._ui import mount_ui
from tether.pool._usage_views import GroupUsageView, UsageView
from tether.pool._values import PoolInputError
from tether.pool._views import JsonView
from tether.poolapi import PoolRequestError

__all__ = [
    "EXPECTED_ERRORS",
    "create_app",
    "error_response",
    "group_order",
    "group_usage_csv",
    "slice_order",
    "usage_csv",
]

log = logging.getLogger("tether.pool")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorBody, "description": text}
    for code, text in (
        (400, "bad input: nothing was changed"),
        (401, "missing, wrong or revoked token"),
        (403, "not allowed for this token"),
        (404, "no such thing (among what this token may see)"),
        (409, "conflict, or refused: see error.detail"),
        (410, "the session has ended"),
        (503, "the pool's database is unavailable; retry later"),
    )
}

_bearer = HTTPBearer(auto_error=False, description="a user or node token: tu_... or tn_...")


def _error(
    status: int, code: str, message: str, detail: dict[str, Any] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message, "detail": detail or {}}},
        status_code=status,
        headers=headers,
    )


#: What the service raises for a request it refuses (anything else is a bug: 500).
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    PoolRequestError,
    AuthenticationError,
    StoreUnavailable,
)


def error_response(exc: Exception, service: PoolService) -> JSONResponse:
    """The API's answer to ``exc``, raised while serving a request: its status and
    the error shape above (for :mod:`tether.pool._front` too)."""
    if isinstance(exc, PoolRequestError):
        return _error(exc.status, exc.code, exc.message, exc.detail)
    if isinstance(exc, AuthenticationError):
        return _error(401, "unauthorized", str(exc))
    if isinstance(exc, StoreUnavailable):
        # The store's messages hide the password already; once more, at the boundary.
        return _error(503, "unavailable", service.store.db.redact(str(exc)))
    # The last line of defence: a JSON body, never a traceback, for any bug.
    return _error(500, "internal", f"internal error: {type(exc).__name__}")


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        kind = err.get("type", "")
        if kind == "json_invalid":
            return "malformed JSON in the request body", []
        if kind == "extra_forbidden":
            text = f"unknown field {where!r}"
        elif kind == "missing":
            text = f"missing field {where!r}" if where else "missing request body"
        else:
            text = f"{where or 'body'}: {err.get('msg', 'invalid')}"
        problems.append({"field": where, "problem": text})
    message = "; ".join(p["problem"] for p in problems[:5]) or "invalid request"
    return message, problems


def slice_order(service: PoolService, who: Principal, body: s.SliceIn) -> SliceOrder:
    """The order in ``who``'s ``POST /v1/sessions`` body: the one place a slice body
    becomes the service's record, so each bad unit gets one message (400, nothing
    changed). A bad body is answered as the service always answered it: first
    whether ``who`` may order for the team it names (403, 404), then the 400."""
    try:
        return SliceOrder.from_json(body.model_dump())
    except PoolInputError as exc:
        service.team_for(who, body.team)
        raise PoolRequestError(str(exc)) from None


def group_order(service: PoolService, who: Principal, body: s.GroupIn) -> GroupOrder:
    """The order in a ``POST /v1/groups`` body, as :func:`slice_order` makes one."""
    try:
        return GroupOrder.from_json(body.model_dump())
    except PoolInputError as exc:
        service.team_for(who, body.team)
        raise PoolRequestError(str(exc)) from None


def node_devices(
    service: PoolService, who: Principal, body: s.NodeRegisterIn
) -> tuple[DeviceSpec, ...]:
    """The devices in ``who``'s ``POST /v1/nodes`` body, as :func:`slice_order`
    makes an order: a bad device is answered as the service always answered it,
    first whether ``who`` may register the node it names (403), then the 400."""
    try:
        return device_specs(d.model_dump() for d in body.devices)
    except PoolInputError as exc:
        service.require_node(who, body.name)
        raise PoolRequestError(str(exc)) from None


def _json(views: Iterable[JsonView]) -> list[dict[str, Any]]:
    """The JSON of a listing: each view's own."""
    return [v.to_json() for v in views]


def principal(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    request: Request,
) -> Principal:
    """The dependency that authenticates every route: the caller, or 401."""
    if creds is None:
        header = request.headers.get("authorization")
        raise AuthenticationError(
            "missing Authorization header: send 'Authorization: Bearer TOKEN'"
            if not header
            else "the Authorization header must be 'Bearer TOKEN'"
        )
    service: PoolService = request.app.state.service
    return service.authenticate(creds.credentials)


# Module level: FastAPI resolves the (string) annotations in this module's globals.
Who = Annotated[Principal, Depends(principal)]
# The busiest routes take the token as it came (no I/O, on the event loop) and
# check it in the same worker thread as their work: one thread-pool hop a
# request instead of two (bench/pool_write.py). Same 401s as ``Who``.
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def create_app(service: PoolService, *, public_metrics: bool = False) -> FastAPI:
    """The ASGI application serving ``service``."""
    app = FastAPI(
        title="Tether pool",
        version=__version__,
        description="Share accelerator hosts: inventory, fractional placement, quotas, usage.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    placement = _metrics.Histogram(_metrics.PLACEMENT_BUCKETS)  # this process's answers
    app.state.placement = placement  # observed by _front's placements too

    @app.exception_handler(RequestValidationError)
    def _on_validation(request: Request, exc: RequestValidationError) -> Any:
        message, problems = _validation_message(exc)
        return _error(400, "bad-request", message, {"problems": problems} if problems else None)

    for kind in EXPECTED_ERRORS:  # the service's errors: the same answers in _front

        @app.exception_handler(kind)
        def _on_service_error(request: Request, exc: Exception) -> Any:
            return error_response(exc, service)

    @app.exception_handler(StarletteHTTPException)
    def _on_http(request: Request, exc: StarletteHTTPException) -> Any:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    def _on_crash(request: Request, exc: Exception) -> Any:
        return error_response(exc, service)

    r = _ERRORS

    # -------------------------------------------------------------- probes

    @app.get("/v1/health", response_model=_health.HealthOut, tags=["probes"])
    def health() -> Any:
        """Liveness, no token: the process answers. Touches no database, so a database
        outage does not make it fail (restarting the pool would not help)."""
        return _health.health()

    @app.get(
        "/v1/ready",
        response_model=_health.ReadyOut,
        responses={503: _ERRORS[503]},
        tags=["probes"],
    )
    def ready() -> Any:
        """Readiness, no token: one cheap query through the store. 503 with the reason
        when the database does not answer or holds an older schema than this pool's."""
        return _health.ready(service.store)

    # ------------------------------------------------------------ identity

    @app.get("/v1/me", response_model=s.MeOut, responses=r, tags=["identity"])
    def me(who: Who) -> Any:
        """Who this token is: user (admin flag, teams) or node."""
        return service.me(who).to_json()

    @app.get("/v1/status", response_model=s.StatusOut, responses=r, tags=["identity"])
    def status(who: Who) -> Any:
        """Nodes, devices with their allocation, and the sessions this token may see."""
        sessions = service.sessions(who) if who.kind == "user" else []
        return {
            "nodes": _json(service.nodes()),
            "sessions": _json(sessions),
            "queue_length": sum(1 for x in sessions if x.state == "queued"),
        }

    # --------------------------------------------------------------- teams

    @app.get("/v1/teams", response_model=list[s.TeamOut], responses=r, tags=["admin"])
    def list_teams(who: Who) -> Any:
        """Teams: all of them for admins, your own for users."""
        return _json(service.teams(who))

    @app.post("/v1/teams", response_model=s.TeamOut, status_code=201, responses=r, tags=["admin"])
    def create_team(body: s.TeamIn, who: Who) -> Any:
        """Create a team (admins)."""
        return service.create_team(who, body.name).to_json()

    @app.delete("/v1/teams/{team}", status_code=204, responses=r, tags=["admin"])
    def delete_team(team: str, who: Who) -> Response:
        """Delete a team that has no sessions on record (admins)."""
        service.delete_team(who, team)
        return Response(status_code=204)

    @app.post("/v1/teams/{team}/members", response_model=s.UserOut, responses=r, tags=["admin"])
    def add_member(team: str, body: s.MemberIn, who: Who) -> Any:
        """Add a user to a team (admins)."""
        return service.set_membership(who, team, body.user, member=True).to_json()

    @app.delete(
        "/v1/teams/{team}/members/{user}", response_model=s.UserOut, responses=r, tags=["admin"]
    )
    def remove_member(team: str, user: str, who: Who) -> Any:
        """Remove a user from a team (admins)."""
        return service.set_membership(who, team, user, member=False).to_json()

    @app.get("/v1/teams/{team}/quota", response_model=s.QuotaOut, responses=r, tags=["admin"])
    def get_quota(team: str, who: Who) -> Any:
        """A team's quota (members and admins); null limits are unlimited."""
        return service.quota(who, team).to_json()

    @app.put("/v1/teams/{team}/quota", response_model=s.QuotaOut, responses=r, tags=["admin"])
    def set_quota(team: str, body: s.QuotaIn, who: Who) -> Any:
        """Set a team's quota (admins). Omitted or null limits are unlimited."""
        return service.set_quota(
            who,
            team,
            max_share=body.max_share,
            max_memory=body.max_memory,
            device_hours_per_month=body.device_hours_per_month,
        ).to_json()

    # --------------------------------------------------------------- users

    @app.get("/v1/users", response_model=list[s.UserOut], responses=r, tags=["admin"])
    def list_users(who: Who) -> Any:
        """Users: all for admins, yourself for users."""
        return _json(service.users(who))

    @app.post("/v1/users", response_model=s.UserOut, status_code=201, responses=r, tags=["admin"])
    def create_user(body: s.UserIn, who: Who) -> Any:
        """Create a user, optionally an admin, optionally in teams (admins)."""
        return service.create_user(
            who, name=body.name, admin=body.admin, teams=body.teams
        ).to_json()

    # -------------------------------------------------------------- tokens

    @app.get("/v1/tokens", response_model=list[s.TokenOut], responses=r, tags=["admin"])
    def list_tokens(who: Who, user: Annotated[str | None, Query(max_length=64)] = None) -> Any:
        """Tokens (never their secrets): all or one user's for admins, your own for users."""
        return _json(service.tokens(who, user))

    @app.post(
        "/v1/tokens",
        response_model=s.IssuedTokenOut,
        status_code=201,
        responses=r,
        tags=["admin"],
    )
    def create_token(body: s.TokenIn, who: Who) -> Any:
        """Issue a token; its secret is in this response only. Node tokens: admins."""
        return service.create_token(
            who, kind=body.kind, user=body.user, node=body.node, label=body.label
        ).to_json()

    @app.delete("/v1/tokens/{token_id}", response_model=s.TokenOut, responses=r, tags=["admin"])
    def revoke_token(token_id: str, who: Who) -> Any:
        """Revoke a token: it stops working at once (admins; users: their own)."""
        return service.revoke_token(who, token_id).to_json()

    # --------------------------------------------------------------- nodes

    @app.get("/v1/nodes", response_model=list[s.NodeOut], responses=r, tags=["nodes"])
    def list_nodes(who: Who) -> Any:
        """Nodes with their devices and allocated shares."""
        return _json(service.nodes())

    @app.get("/v1/devices", response_model=list[s.DeviceOut], responses=r, tags=["nodes"])
    def list_devices(who: Who) -> Any:
        """Every registered device with its allocated share and memory."""
        return _json(service.devices())

    @app.post(
        "/v1/nodes",
        response_model=s.NodeRegisterOut,
        status_code=201,
        responses=r,
        tags=["nodes"],
    )
    def register_node(body: s.NodeRegisterIn, who: Who) -> Any:
        """Register an acceptor and its devices (node token). 409 if the name is alive."""
        return service.register_node(
            who,
            name=body.name,
            address=body.address,
            devices=node_devices(service, who, body),
            replace=body.replace,
            sent_at=body.sent_at,
        ).to_json()

    @app.post(
        "/v1/nodes/{node}/heartbeat",
        response_model=s.NodeHeartbeatOut,
        responses=r,
        tags=["nodes"],
    )
    def node_heartbeat(node: str, body: s.NodeHeartbeatIn, who: Who) -> Any:
        """An acceptor is alive; renews the leases of the sessions it reports."""
        return service.node_heartbeat(
            who,
            node,
            sent_at=body.sent_at,
            device_ids=body.device_ids,
            sessions=[SessionReport.from_dict(m.model_dump()) for m in body.sessions],
            registration=body.registration,
        ).to_json()

    @app.post("/v1/nodes/{node}/admit", response_model=s.AdmitOut, responses=r, tags=["nodes"])
    def admit(node: str, body: s.AdmitIn, who: Who) -> Any:
        """An acceptor's check at connect (node token): 200 if the ticket's lease is
        open and the ticket unused (it is then used); 410 lease ended, 409 used."""
        return service.admit(
            who, node, registration=body.registration, ticket=body.ticket
        ).to_json()

    @app.post(
        "/v1/nodes/{node}/{action}", response_model=s.NodeStatusOut, responses=r, tags=["nodes"]
    )
    def node_action(node: str, action: Literal["cordon", "drain", "uncordon"], who: Who) -> Any:
        """Cordon (no new slices), drain (end its leases too) or uncordon a node (admins)."""
        return service.node_admin(who, node, action).to_json()

    # ------------------------------------------------------------ sessions

    @app.post(
        "/v1/sessions",
        response_model=s.SessionOut,
        status_code=201,
        responses={**r, 202: {"model": s.SessionOut, "description": "queued"}},
        tags=["sessions"],
    )
    async def request_slice(
        body: s.SliceIn, token: Bearer, request: Request, response: Response
    ) -> Any:
        """Ask for a slice: 201 placed (address + ticket), 202 queued (position),
        409 refused (error.detail says why: capacity, quota with its figures, ...)."""

        def place() -> tuple[Principal, SessionView]:
            who = principal(token, request)
            order = slice_order(service, who, body)
            started = time.perf_counter()
            try:
                return who, service.request_slice(who, order)
            finally:
                placement.observe(time.perf_counter() - started)

        who, session = await run_in_threadpool(place)
        if await request.is_disconnected():
            # The client hung up before its answer (it gave up, or died): it cannot
            # know the session's id, so nobody else could end the lease before
            # its timeout. What is placed or queued for it is given back now.
            log.warning("client left before its answer: released session %s", session.id)
            session = await run_in_threadpool(service.release, who, session.id)
        if session.state == "queued":
            response.status_code = 202
        return session.to_json()

    @app.get("/v1/sessions", response_model=list[s.SessionOut], responses=r, tags=["sessions"])
    def list_sessions(
        who: Who,
        state: Literal["queued", "placed", "ended"] | None = None,
        team: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Any:
        """Sessions of your teams (admins: all); queued and placed unless a state is named."""
        return _json(service.sessions(who, state=state, team=team))

    @app.get(
        "/v1/sessions/{session_id}", response_model=s.SessionOut, responses=r, tags=["sessions"]
    )
    def get_session(session_id: str, who: Who) -> Any:
        """A session: its queue position, or its address and a fresh ticket, or its end."""
        return service.session(who, session_id).to_json()

    @app.post(
        "/v1/sessions/{session_id}/heartbeat",
        response_model=s.SessionOut,
        responses=r,
        tags=["sessions"],
    )
    def session_heartbeat(session_id: str, who: Who) -> Any:
        """Renew a lease; 410 if it has ended."""
        return service.heartbeat(who, session_id).to_json()

    @app.delete(
        "/v1/sessions/{session_id}", response_model=s.SessionOut, responses=r, tags=["sessions"]
    )
    def release(session_id: str, token: Bearer, request: Request) -> Any:
        """Release a lease, or withdraw a queued request. Releasing twice is harmless."""
        return service.release(principal(token, request), session_id).to_json()

    # -------------------------------------------------------------- groups

    @app.post(
        "/v1/groups",
        response_model=s.GroupOut,
        status_code=201,
        responses={**r, 202: {"model": s.GroupOut, "description": "queued as one unit"}},
        tags=["groups"],
    )
    def request_group(body: s.GroupIn, who: Who, response: Response) -> Any:
        """Ask for many slices of one shape in one call: 201 placed (every member with
        its address and ticket), 202 queued as a unit, 409 refused (error.detail says
        why: unsatisfiable, capacity, quota with its figures)."""
        group = service.request_group(who, group_order(service, who, body))
        if group.state == "queued":
            response.status_code = 202
        return group.to_json()

    @app.get("/v1/groups", response_model=list[s.GroupOut], responses=r, tags=["groups"])
    def list_groups(
        who: Who,
        state: Literal["queued", "placed", "ended"] | None = None,
        team: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Any:
        """Groups of your teams (admins: all), without their members."""
        return _json(service.groups(who, state=state, team=team))

    @app.get("/v1/groups/{ref}/usage", response_model=s.GroupUsageOut, responses=r, tags=["groups"])
    def group_usage_one(
        ref: str, who: Who, month: Annotated[str | None, Query(max_length=32)] = None
    ) -> Any:
        """One group's usage in a month (its members' sums)."""
        group = service.group(who, ref)
        rows = service.group_usage(who, team=group.team, month=month)
        return {"rows": [row.to_json() for row in rows if row.group_id == group.id]}

    @app.get(
        "/v1/groups/{ref}/members/{index}",
        response_model=s.GroupMemberOut,
        responses=r,
        tags=["groups"],
    )
    def get_group_member(
        ref: str, index: Annotated[int, PathParam(ge=0, le=10_000)], who: Who
    ) -> Any:
        """One placed member: its session, address and a fresh ticket (for its user)."""
        return service.group_member(who, ref, index).to_json()

    @app.get("/v1/groups/{ref}", response_model=s.GroupOut, responses=r, tags=["groups"])
    def get_group(ref: str, who: Who) -> Any:
        """A group by id or name: its queue position, or its members (with their
        addresses and fresh tickets, for the group's own user)."""
        return service.group(who, ref).to_json()

    @app.delete("/v1/groups/{ref}", response_model=s.GroupOut, responses=r, tags=["groups"])
    def cancel_group(ref: str, who: Who) -> Any:
        """Withdraw a waiting group, or release every member's lease. Idempotent."""
        return service.cancel_group(who, ref).to_json()

    @app.post("/v1/tickets/verify", response_model=s.TicketOut, responses=r, tags=["sessions"])
    def verify_ticket(body: s.TicketIn, who: Who) -> Any:
        """Check a ticket as its acceptor would (node tokens, admins); 400 if invalid."""
        return service.verify_ticket(who, body.ticket, body.node).to_json()

    # --------------------------------------------------------------- usage

    @app.get(
        "/v1/usage",
        response_model=s.UsageOut,
        responses={
            **r,
            200: {
                "description": "usage rows (JSON, or CSV with format=csv)",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
        },
        tags=["usage"],
    )
    def usage(
        who: Who,
        team: Annotated[str | None, Query(max_length=64)] = None,
        user: Annotated[str | None, Query(max_length=64)] = None,
        month: Annotated[str | None, Query(max_length=32)] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Usage per team, user and month (UTC; default this month), with team totals (user *)."""
        rows = service.usage(who, team=team, user=user, month=month)
        if format == "csv":
            return PlainTextResponse(usage_csv(rows), media_type="text/csv")
        return {"rows": _json(rows)}

    @app.get(
        "/v1/usage/groups",
        response_model=s.GroupUsageOut,
        responses={
            **r,
            200: {
                "description": "group usage rows (JSON, or CSV with format=csv)",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
        },
        tags=["usage"],
    )
    def usage_groups(
        who: Who,
        team: Annotated[str | None, Query(max_length=64)] = None,
        month: Annotated[str | None, Query(max_length=32)] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Usage per group request in a month (UTC; default this month): one row per
        group, its members' device-seconds, memory-GiB-seconds and peak share summed."""
        rows = service.group_usage(who, team=team, month=month)
        if format == "csv":
            return PlainTextResponse(group_usage_csv(rows), media_type="text/csv")
        return {"rows": _json(rows)}

    # ------------------------------------------------------------- metrics

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not public_metrics:
            try:
                principal(_bearer_from(request), request)
            except AuthenticationError as exc:
                raise AuthenticationError(
                    f"{exc}; /metrics takes any valid token (Prometheus: "
                    "authorization.credentials_file), or start the pool with --public-metrics"
                ) from None
        text = _metrics.render(service.statistics(), placement)
        return Response(text, media_type=_metrics.CONTENT_TYPE)

    mount_ui(app, service)  # the web dashboard, /ui: a shell over the same service
    return app


def _bearer_from(request: Request) -> HTTPAuthorizationCredentials | None:
    header = request.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=value.strip())


def usage_csv(rows: Iterable[UsageView]) -> str:
    """Usage rows as CSV (the API's ``format=csv`` and the dashboard's export)."""
    return _csv(rows, UsageView)


def group_usage_csv(rows: Iterable[GroupUsageView]) -> str:
    """Group usage rows as CSV (``GET /v1/usage?by=group&format=csv``)."""
    return _csv(rows, GroupUsageView)


def _csv(rows: Iterable[UsageView | GroupUsageView], view: type) -> str:
    """``rows`` as CSV, a column per field of ``view`` in its order (the JSON's keys)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(view)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_json())
    return out.getvalue()
