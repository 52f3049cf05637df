"""The pool's web dashboard (``/ui``): a thin shell over :class:`PoolService`.

It calls the same service methods the JSON API calls, as the logged-in
principal, so what a page shows and what a button does are exactly what that
token could see and do through ``/v1``: admins see every team, users their
own; cancelling a session is the API's release (admins, or the session's own
user). The pages are rendered on the server (:mod:`tether.pool._ui_pages`,
charts :mod:`tether.pool._ui_svg`) and need no JavaScript.

Routes::

    GET  /ui                        -> /ui/devices, or /ui/login when logged out
    GET  /ui/login, POST /ui/login  the token form; sets the session cookie
    POST /ui/logout                 ends the session, clears the cookie
    GET  /ui/devices|sessions|queue|quotas|usage
    GET  /ui/usage.csv?months=N     the usage table as CSV
    POST /ui/sessions/{id}/cancel   release a lease or withdraw a request

Security: the login session is a random id in an ``HttpOnly; SameSite=Strict;
Path=/ui`` cookie (``Secure`` over HTTPS); the token stays on the server
(:mod:`tether.pool._ui_auth`). Every POST that changes something carries the
session's CSRF token and is refused (403) without it, and every POST from a
page of another origin is refused (Origin/Referer check, which also stops
login CSRF). Pages are sent with a Content-Security-Policy that allows nothing
from anywhere (no scripts at all), ``nosniff``, ``same-origin`` referrers, ``no-store``
and ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from tether._errors import AuthenticationError
from tether.pool import _ui_pages as pages
from tether.pool._auth import Principal
from tether.pool._db import StoreUnavailable
from tether.pool._service import PoolService
from tether.pool._ui_auth import COOKIE, LoginSessions, csrf_matches
from tether.pool._usage_views import UsageView
from tether.poolapi import PoolRequestError

__all__ = ["mount_ui"]

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it browsers send "Origin: null" with the page's own
    # forms, and the origin check below could not tell them from a foreign page.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
#: A login or cancel form is a few hundred bytes; refuse to read megabytes.
_MAX_FORM_BYTES = 16 * 1024
_MONTHS_DEFAULT, _MONTHS_MAX = 6, 24
_FOREIGN = "refused: the form was posted from another site (its Origin is not this pool)"
_NO_CSRF = "refused: the form's token is missing or wrong (reload the page and try again)"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=_HEADERS)


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site.

    Browsers send Origin with every POST (and Referer unless told not to); a
    client that sends neither is not a browser a page can drive, and still needs
    the CSRF token for anything but logging in. Host and port are compared with
    the request's Host header, not the scheme: behind a proxy that ends TLS the
    pool sees http while the browser says https. (A proxy must pass the Host
    header on: ``proxy_set_header Host $host`` in nginx.) ``Origin: null``
    (sandboxed frames, data: URLs) has no host and is refused.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(source).netloc == host


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (first value of each field); None if too large."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > _MAX_FORM_BYTES):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def mount_ui(
    app: FastAPI,
    service: PoolService,
    *,
    clock: Callable[[], float] = time.time,
    logins: LoginSessions | None = None,
) -> LoginSessions:
    """Add the dashboard's routes to ``app``; returns its login-session table.

    ``clock`` gives the "now" that ages and waits are measured against (the
    service's clock, when a test or the screenshot script fakes time).
    """
    table = logins if logins is not None else LoginSessions()

    def viewer_of(request: Request) -> tuple[Principal, pages.Viewer] | None:
        """The logged-in principal and how pages address them; None when logged out."""
        session = table.get(request.cookies.get(COOKIE), clock())
        if session is None:
            return None
        try:
            principal = service.authenticate(session.token)
        except AuthenticationError:
            # Revoked, or the user was deleted: the login dies with the token.
            table.close(request.cookies.get(COOKIE))
            return None
        me = service.me(principal)
        viewer = pages.Viewer(
            user=str(me.user), admin=me.admin, teams=me.teams,
            csrf=session.csrf,
        )  # fmt: skip
        return principal, viewer

    def page(render: Callable[[Principal, pages.Viewer], str]) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            viewer = None
            try:
                who = viewer_of(request)
                if who is None:
                    return _redirect("/ui/login")
                viewer = who[1]
                return _html(render(*who))
            except PoolRequestError as exc:
                return _html(pages.error_page(viewer, exc.status, exc.message), exc.status)
            except StoreUnavailable as exc:
                # A page, not the API's JSON; the store's message hides the password.
                message = service.store.db.redact(str(exc))
                return _html(pages.error_page(viewer, 503, message), 503)

        return handler

    # ------------------------------------------------------------- login

    @app.get("/ui", include_in_schema=False)
    def ui_root(request: Request) -> Response:
        logged_in = table.get(request.cookies.get(COOKIE), clock()) is not None
        return _redirect("/ui/devices" if logged_in else "/ui/login")

    @app.get("/ui/login", include_in_schema=False)
    def login_form() -> Response:
        # Never read a token from the query string: URLs end up in logs and history.
        return _html(pages.login_page())

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return _html(pages.login_page(_FOREIGN), 403)
        form = await _form(request)
        if form is None:
            return _html(pages.login_page("the form is too large: paste only the token"), 413)
        token = form.get("token", "").strip()
        if not token:
            return _html(pages.login_page("enter an API token (tu_...)"), 400)
        try:
            principal = await run_in_threadpool(service.authenticate, token)
        except AuthenticationError as exc:
            return _html(pages.login_page(f"not logged in: {exc}"), 401)
        if principal.kind != "user":
            return _html(
                pages.login_page("node tokens cannot log in: use a user's token (tu_...)"), 403
            )
        table.close(request.cookies.get(COOKIE))  # a new login never reuses an old id
        session_id, _ = table.open(token, clock())
        response = _redirect("/ui/devices")
        response.set_cookie(
            COOKIE,
            session_id,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = table.get(request.cookies.get(COOKIE), clock())
        form = await _form(request) or {}
        if session is not None and not _same_origin(request):
            return _html(pages.error_page(None, 403, _FOREIGN), 403)
        if session is not None and not csrf_matches(session.csrf, form.get("csrf")):
            return _html(pages.error_page(None, 403, _NO_CSRF), 403)
        table.close(request.cookies.get(COOKIE))
        response = _redirect("/ui/login")
        response.delete_cookie(
            COOKIE, path="/ui", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    # ------------------------------------------------------------- pages

    def devices(principal: Principal, viewer: pages.Viewer) -> str:
        return pages.devices_page(
            viewer, service.nodes(), service.sessions(principal, state="placed"), now=clock()
        )

    def sessions(principal: Principal, viewer: pages.Viewer) -> str:
        return pages.sessions_page(viewer, service.sessions(principal, state="placed"), now=clock())

    def queue(principal: Principal, viewer: pages.Viewer) -> str:
        return pages.queue_page(viewer, service.sessions(principal, state="queued"), now=clock())

    def quotas(principal: Principal, viewer: pages.Viewer) -> str:
        open_sessions = service.sessions(principal)
        month = service.usage(principal, team=None, user=None, month=None)
        hours = {r.team: r.device_seconds / 3600.0 for r in month if r.user == "*"}
        lines = []
        for team in service.teams(principal):
            name = team.name
            quota = service.quota(principal, name)
            mine = [s for s in open_sessions if s.team == name]
            placed = [s for s in mine if s.state == "placed"]
            lines.append(
                pages.QuotaLine(
                    team=name,
                    max_share=quota.max_share,
                    max_memory_bytes=quota.max_memory_bytes,
                    device_hours_per_month=quota.device_hours_per_month,
                    share_used=sum(float(s.share or 0) for s in placed),
                    memory_used=sum(int(s.memory_bytes or 0) for s in placed),
                    device_hours_used=hours.get(name, 0.0),
                    queued=len(mine) - len(placed),
                )
            )
        return pages.quotas_page(viewer, lines)

    def months_of(request: Request) -> list[str]:
        raw = request.query_params.get("months", "")
        count = int(raw) if raw.isdigit() else _MONTHS_DEFAULT
        return pages.month_labels(clock(), max(1, min(count, _MONTHS_MAX)))

    def usage_rows(principal: Principal, months: list[str]) -> list[UsageView]:
        rows: list[UsageView] = []
        for month in months:
            rows.extend(service.usage(principal, team=None, user=None, month=month))
        return rows

    app.get("/ui/devices", include_in_schema=False)(page(devices))
    app.get("/ui/sessions", include_in_schema=False)(page(sessions))
    app.get("/ui/queue", include_in_schema=False)(page(queue))
    app.get("/ui/quotas", include_in_schema=False)(page(quotas))

    @app.get("/ui/usage", include_in_schema=False)
    def usage(request: Request) -> Response:
        months = months_of(request)

        def render(principal: Principal, viewer: pages.Viewer) -> str:
            totals = [r for r in usage_rows(principal, months) if r.user == "*"]
            href = f"/ui/usage.csv?months={len(months)}"
            return pages.usage_page(viewer, months, totals, csv_href=href)

        return page(render)(request)

    @app.get("/ui/usage.csv", include_in_schema=False)
    def usage_csv(request: Request) -> Response:
        who = viewer_of(request)
        if who is None:
            return _redirect("/ui/login")
        months = months_of(request)
        from tether.pool._api import usage_csv as to_csv  # the API's own CSV, column for column

        text = to_csv(usage_rows(who[0], months))
        name = f"tether-usage-{months[0]}-to-{months[-1]}.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={**_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------ cancel

    @app.post("/ui/sessions/{session_id}/cancel", include_in_schema=False)
    async def cancel(session_id: str, request: Request) -> Response:
        who = await run_in_threadpool(viewer_of, request)
        if who is None:
            return _redirect("/ui/login")
        principal, viewer = who
        form = await _form(request) or {}
        if not _same_origin(request):
            return _html(pages.error_page(viewer, 403, _FOREIGN), 403)
        if not csrf_matches(viewer.csrf, form.get("csrf")):
            return _html(pages.error_page(viewer, 403, _NO_CSRF), 403)
        try:
            await run_in_threadpool(service.release, principal, session_id)
        except PoolRequestError as exc:
            return _html(pages.error_page(viewer, exc.status, exc.message), exc.status)
        back = form.get("back")
        return _redirect(f"/ui/{back}" if back in ("sessions", "queue") else "/ui/sessions")

    return table
