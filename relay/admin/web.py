"""The moderation web page: a separate aiohttp application on the admin listener.

``blindrelay serve`` starts it on ``admin_host:admin_port`` when at least one admin token is
configured (README "Moderation"); the public listener never routes ``/admin``. Every page
needs a moderator's session (:mod:`relay.admin.auth`); every POST needs its CSRF token.
Responses carry a strict Content-Security-Policy and no JavaScript; the one stylesheet is
served by the app itself.

Against a hostile browser (issue 23): the page answers only to its own host names
(``admin_hosts``, by default ``blindrelay-admin.localhost``), so its cookie is never sent to
another service on 127.0.0.1 or localhost and a DNS-rebinding name is refused; a POST must
come from the page itself (``Sec-Fetch-Site: same-origin``, or without that header an
``Origin`` equal to the page's, never ``null``); a request with more than one session cookie
is refused (a cookie tossed in beside the real one cannot swap the acting moderator).
Behind a TLS proxy listed in ``admin_trusted_proxies`` (``X-Forwarded-Proto: https``) the
cookies are ``__Host-`` cookies with ``Secure`` and every answer carries HSTS; from any other
peer those headers are ignored. A malformed form is a 400, never a traceback.

Logged per request: the route *name*, method, status and duration, as on the public
listener. Never logged: tokens, cookies, report contents, ids or the moderator's input.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import MultiDictProxy

from relay.admin import render
from relay.admin.auth import LOGIN_NONCE_TTL_S, AdminAuth, AdminSession, LoginThrottle
from relay.admin.common import AdminInputError, find_report, parse_suspend_target
from relay.config import RelayConfig
from relay.moderation import ModerationError, ModerationService, image_type
from relay.webguard import guard_unparsed

__all__ = ["ATTACHMENT_CSP", "HSTS", "REPORT_CSP", "SECURITY_HEADERS", "create_admin_app"]

log = structlog.get_logger("blindrelay")

SESSION_COOKIE: Final = "blindrelay_admin"
LOGIN_COOKIE: Final = "blindrelay_login"
#: Cookie name prefix behind TLS: the browser keeps such a cookie only with Secure, Path=/
#: and no Domain, so no sibling host can set or shadow it.
SECURE_PREFIX: Final = "__Host-"
HSTS: Final = "max-age=31536000"
#: Largest form the admin app reads (a note is at most 1,000 characters).
MAX_FORM_BYTES: Final = 16 * 1024
MAX_NOTE_CHARS: Final = 1000
#: Rows a list page shows.
PAGE_ROWS: Final = 500
CSP: Final = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: The report page also shows the revealed images, which the admin listener itself serves.
REPORT_CSP: Final = CSP + "; img-src 'self'"
#: A revealed attachment: nothing in it may run or load, even if a browser opens it as a
#: document (``sandbox``: no script, no plugin, a unique origin).
ATTACHMENT_CSP: Final = "default-src 'none'; frame-ancestors 'none'; sandbox"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_PUBLIC_ROUTES: Final = frozenset({"admin_root", "admin_login_form", "admin_login", "admin_css"})
_CSS: Final = (
    importlib.resources.files("relay.admin").joinpath("admin.css").read_text(encoding="utf-8")
)


@dataclass(frozen=True, slots=True)
class AdminSite:
    """Where the page may be reached: its host names and the proxies it believes."""

    hosts: frozenset[str]
    proxies: frozenset[str]


moderation_key = web.AppKey("moderation", ModerationService)
auth_key = web.AppKey("admin_auth", AdminAuth)
site_key = web.AppKey("admin_site", AdminSite)
_session_key = web.RequestKey("admin_session", AdminSession)
_form_key = web.RequestKey("admin_form", dict[str, str])
#: A Content-Security-Policy that replaces :data:`CSP` for this answer.
_csp_key = web.RequestKey("admin_csp", str)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    csp = request.get(_csp_key)
    if csp is not None:
        response.headers["Content-Security-Policy"] = csp
    if _secure(request):
        response.headers[hdrs.STRICT_TRANSPORT_SECURITY] = HSTS


def _unparsed(response: web.StreamResponse) -> None:
    """aiohttp's own answer to an unparsable request: the security headers, no echo."""
    response.headers.update(SECURITY_HEADERS)
    if isinstance(response, web.Response):
        response.text = "Bad request.\n"


def _from_proxy(request: web.Request) -> bool:
    return request.remote is not None and request.remote in request.app[site_key].proxies


def _secure(request: web.Request) -> bool:
    """Direct TLS, or a trusted proxy that says the browser used HTTPS."""
    if request.secure:
        return True
    if not _from_proxy(request):
        return False
    proto = request.headers.get(hdrs.X_FORWARDED_PROTO, "").split(",")[-1].strip().lower()
    return proto == "https"


def _client(request: web.Request) -> str:
    """The browser's address for the login throttle (the proxy's last hop when trusted)."""
    if _from_proxy(request):
        forwarded = request.headers.get(hdrs.X_FORWARDED_FOR, "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.remote or ""


def _cookie(request: web.Request, base: str) -> str:
    return SECURE_PREFIX + base if _secure(request) else base


def _cookie_values(request: web.Request, name: str) -> list[str]:
    """Every value of cookie ``name`` the browser sent (aiohttp's mapping keeps one)."""
    values: list[str] = []
    for header in request.headers.getall(hdrs.COOKIE, []):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                values.append(value)
    return values


def _hostname(host: str) -> str:
    """``host`` of a Host header without its port, lower-case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    name, sep, port = host.rpartition(":")
    return (name if sep and port.isdigit() else host).lower()


def _flat_form(form: MultiDictProxy[Any]) -> dict[str, str] | None:
    """The form's single-valued text fields, or None if it has files or repeated fields."""
    out: dict[str, str] = {}
    for key, value in form.items():
        if not isinstance(value, str) or key in out:
            return None
        out[key] = value
    return out


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Canonical log line, login and CSRF checks for every admin request."""
    structlog.contextvars.clear_contextvars()
    route = request.match_info.route.name or "unknown"
    structlog.contextvars.bind_contextvars(request_id=secrets.token_hex(12), route=route)
    started = time.perf_counter()
    try:
        response = await _guarded(request, handler, route)
    except web.HTTPException as exc:
        _log(request, exc.status, started)
        raise
    except Exception:
        log.exception("admin_request_failed")
        response = _html(render.error_page("Error", "Internal error."), 500)
    _log(request, response.status, started)
    return response


def _same_origin(request: web.Request) -> bool:
    """Whether a POST comes from the page itself. ``Sec-Fetch-Site`` where the browser sends
    it; otherwise an ``Origin``, if any, must be the page's (``null`` is not)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True  # not a browser (a browser sends Origin with every POST)
    scheme = "https" if _secure(request) else "http"
    return origin.lower() == f"{scheme}://{request.host.lower()}"


async def _read_form(request: web.Request) -> dict[str, str] | None:
    try:
        return _flat_form(await request.post())
    except web.HTTPException:
        raise  # 413 for a body over MAX_FORM_BYTES
    except Exception:  # a bogus charset, multipart without a boundary, broken encoding
        return None


async def _guarded(request: web.Request, handler: Handler, route: str) -> web.StreamResponse:
    if _hostname(request.host) not in request.app[site_key].hosts:
        log.warning("admin_host_refused")
        page = render.error_page("Misdirected request", "This page has another address.")
        return _html(page, 421)
    if request.method == "POST":
        if not _same_origin(request):
            return _html(render.error_page("Forbidden", "Cross-origin request refused."), 403)
        form = await _read_form(request)
        if form is None:
            return _html(render.error_page("Bad request", "Malformed form."), 400)
        request[_form_key] = form
    cookies = _cookie_values(request, _cookie(request, SESSION_COOKIE))
    if len(cookies) > 1:
        log.warning("admin_cookies_refused")
        response = _html(
            render.error_page(
                "Bad request",
                "The browser sent several session cookies for this page; another site may "
                "have set one. Log in again.",
            ),
            400,
        )
        _forget_session_cookies(request, response)
        return response
    if route in _PUBLIC_ROUTES:
        return await handler(request)
    auth = request.app[auth_key]
    session = auth.session(cookies[0] if cookies else None)
    if session is None:
        if request.method in ("GET", "HEAD"):
            raise _see_other("/admin/login")
        return _html(render.error_page("Forbidden", "Log in first."), 403)
    if request.method == "POST" and not auth.check_csrf(session, request[_form_key].get("csrf")):
        log.warning("admin_csrf_refused")
        return _html(
            render.error_page(
                "Forbidden",
                "The form's CSRF token is missing or wrong; reload the page and try again.",
                moderator=session.moderator,
                csrf=auth.csrf_token(session),
            ),
            403,
        )
    request[_session_key] = session
    return await handler(request)


def _log(request: web.Request, status: int, started: float) -> None:
    log.info(
        "admin_request_handled",
        method=request.method,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


# --- handlers ------------------------------------------------------------------------------


async def root(_: web.Request) -> web.StreamResponse:
    raise _see_other("/admin/reports")


async def stylesheet(_: web.Request) -> web.StreamResponse:
    return web.Response(text=_CSS, content_type="text/css", charset="utf-8")


def _set_cookie(
    request: web.Request, response: web.StreamResponse, base: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        _cookie(request, base),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def _forget_session_cookies(request: web.Request, response: web.StreamResponse) -> None:
    name = _cookie(request, SESSION_COOKIE)
    response.del_cookie(name, path="/", secure=_secure(request), samesite="Strict")
    if not _secure(request):  # a plain-HTTP cookie may have been tossed in on another path
        response.headers.add(
            hdrs.SET_COOKIE, f"{name}=; Max-Age=0; Path=/admin; HttpOnly; SameSite=Strict"
        )


def _login_response(request: web.Request, *, error: str | None, status: int) -> web.Response:
    nonce, csrf = request.app[auth_key].login_nonce()
    response = _html(render.login_page(csrf, error=error), status)
    _set_cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_NONCE_TTL_S)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    cookies = _cookie_values(request, _cookie(request, SESSION_COOKIE))
    if cookies and request.app[auth_key].session(cookies[0]) is not None:
        raise _see_other("/admin/reports")
    return _login_response(request, error=None, status=200)


async def login(request: web.Request) -> web.StreamResponse:
    auth = request.app[auth_key]
    form = request[_form_key]
    client = _client(request)
    wait = auth.throttle.retry_after(client)
    if wait > 0:
        log.warning("admin_login_throttled")
        seconds = math.ceil(wait)
        response = _login_response(
            request,
            error=f"Too many wrong tokens; try again in {seconds} seconds.",
            status=429,
        )
        response.headers[hdrs.RETRY_AFTER] = str(seconds)
        return response
    nonces = _cookie_values(request, _cookie(request, LOGIN_COOKIE))
    if len(nonces) != 1 or not auth.check_login_csrf(nonces[0], form.get("csrf")):
        log.warning("admin_csrf_refused")
        return _login_response(
            request, error="The login form expired; please try again.", status=403
        )
    moderator = auth.check_token(form.get("token", ""))
    if moderator is None:
        auth.throttle.failed(client)
        log.warning("admin_login_failed")
        return _login_response(request, error="Wrong token.", status=403)
    _, cookie = auth.login(moderator)
    log.info("admin_login")
    response = _see_other("/admin/reports")
    _set_cookie(request, response, SESSION_COOKIE, cookie, int(auth.session_ttl_s))
    response.del_cookie(
        _cookie(request, LOGIN_COOKIE), path="/", secure=_secure(request), samesite="Strict"
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[auth_key].logout(request[_session_key])
    log.info("admin_logout")
    response = _see_other("/admin/login")
    _forget_session_cookies(request, response)
    raise response


def _who(request: web.Request) -> tuple[str, str]:
    session = request[_session_key]
    return session.moderator, request.app[auth_key].csrf_token(session)


async def reports(request: web.Request) -> web.StreamResponse:
    wanted = request.query.get("status", "open")
    if wanted not in ("open", "resolved", "all"):
        raise web.HTTPBadRequest(text="status is open, resolved or all")
    status = None if wanted == "all" else wanted
    found = await request.app[moderation_key].list_reports(status=status, limit=PAGE_ROWS)
    moderator, csrf = _who(request)
    return _html(render.reports_page(found, status, moderator=moderator, csrf=csrf))


async def report(request: web.Request) -> web.StreamResponse:
    moderator, csrf = _who(request)
    try:
        found = await find_report(request.app[moderation_key], request.match_info["report_id"])
    except AdminInputError as exc:
        return _html(render.error_page("Not found", str(exc), moderator=moderator, csrf=csrf), 404)
    notice = None
    if request.query.get("resolved") and found.status != "open":
        notice = f"Resolved: {found.action or 'none'}."
    request[_csp_key] = REPORT_CSP
    return _html(render.report_page(found, moderator=moderator, csrf=csrf, notice=notice))


async def attachment(request: web.Request) -> web.StreamResponse:
    """``/admin/reports/<id>/attachments/<n>``: a revealed attachment plaintext, only on this
    listener and only to a moderator. An image (by its leading bytes) is answered as that
    image type for the report page's blurred preview; anything else as a download. Never
    cached, never sniffed, sandboxed."""
    index = request.match_info["index"]
    report_id = request.match_info["report_id"]
    data = None
    if index.isdigit() and len(index) <= 2 and len(report_id) == 32:
        data = await request.app[moderation_key].attachment(report_id, int(index))
    if data is None:
        moderator, csrf = _who(request)
        page = render.error_page("Not found", "No such attachment.", moderator=moderator, csrf=csrf)
        return _html(page, 404)
    request[_csp_key] = ATTACHMENT_CSP
    name = f"report-{report_id[:12]}-attachment-{int(index)}"
    response: web.StreamResponse
    if isinstance(data, bytes):
        mime = image_type(data)
        response = web.Response(body=data, content_type=mime or "application/octet-stream")
    else:  # revealed by hash and streamed (protocol.md §5.9): a file, streamed from disk
        mime = await asyncio.to_thread(_leading_type, data)
        response = web.FileResponse(data)
        response.content_type = mime or "application/octet-stream"
    response.headers[hdrs.CONTENT_DISPOSITION] = (
        f'inline; filename="{name}.{mime.split("/")[1]}"'
        if mime is not None
        else f'attachment; filename="{name}.bin"'
    )
    log.info("admin_attachment_served")
    return response


def _leading_type(path: Path) -> str | None:
    with path.open("rb") as fh:
        return image_type(fh.read(16))


async def resolve(request: web.Request) -> web.StreamResponse:
    moderator, csrf = _who(request)
    service = request.app[moderation_key]
    try:
        found = await find_report(service, request.match_info["report_id"])
    except AdminInputError as exc:
        return _html(render.error_page("Not found", str(exc), moderator=moderator, csrf=csrf), 404)
    form = request[_form_key]
    action = form.get("action", "")
    note = form.get("note", "").strip()
    error: str | None = None
    status = 400
    suspend_sid: bytes | None = None
    if action not in ("none", "revoke", "suspend"):
        error = "Choose an action."
    elif len(note) > MAX_NOTE_CHARS:
        error = f"The note is longer than {MAX_NOTE_CHARS} characters."
    elif action == "suspend":
        try:
            suspend_sid = parse_suspend_target(form.get("suspend_sid", ""))
        except AdminInputError as exc:
            error = str(exc)
    if error is None:
        try:
            await service.resolve(
                found.id, action=action, moderator=moderator, note=note, suspend_sid=suspend_sid
            )
        except ModerationError as exc:
            error, status = str(exc), 409
    if error is not None:
        found = await service.get_report(found.id) or found
        page = render.report_page(found, moderator=moderator, csrf=csrf, error=error)
        return _html(page, status)
    log.info("admin_report_resolved", reason=action)
    raise _see_other(f"/admin/reports/{found.id}?resolved=1")


async def audit(request: web.Request) -> web.StreamResponse:
    entries = await request.app[moderation_key].audit(limit=PAGE_ROWS)
    moderator, csrf = _who(request)
    return _html(render.audit_page(entries, moderator=moderator, csrf=csrf))


def create_admin_app(
    config: RelayConfig,
    service: ModerationService,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the moderation application.

    Args:
        config: a validated configuration with at least one admin token.
        service: the moderation service over the relay's store.
        clock: the time source for sessions (tests).
    """
    app = web.Application(middlewares=[admin_middleware], client_max_size=MAX_FORM_BYTES)
    app[moderation_key] = service
    app[auth_key] = AdminAuth(
        config.admin_token_map(),
        config.admin_session_ttl_s,
        idle_timeout_s=config.admin_idle_timeout_s,
        throttle=LoginThrottle(
            per_client=config.admin_login_failures_per_client,
            overall=config.admin_login_failures_global,
            clock=clock,
        ),
        clock=clock,
    )
    app[site_key] = AdminSite(config.admin_host_names(), config.admin_proxy_addresses())
    app.on_response_prepare.append(_security_headers)
    guard_unparsed(app, _unparsed)
    app.router.add_get("/", root, name="admin_root", allow_head=False)
    app.router.add_get("/admin", root, name="admin_home", allow_head=False)
    app.router.add_get("/admin/", root, name="admin_index", allow_head=False)
    app.router.add_get("/admin/static/admin.css", stylesheet, name="admin_css")
    app.router.add_get("/admin/login", login_form, name="admin_login_form")
    app.router.add_post("/admin/login", login, name="admin_login")
    app.router.add_post("/admin/logout", logout, name="admin_logout")
    app.router.add_get("/admin/reports", reports, name="admin_reports")
    app.router.add_get("/admin/reports/{report_id}", report, name="admin_report")
    app.router.add_post("/admin/reports/{report_id}/resolve", resolve, name="admin_resolve")
    app.router.add_get(
        "/admin/reports/{report_id}/attachments/{index}", attachment, name="admin_attachment"
    )
    app.router.add_get("/admin/audit", audit, name="admin_audit")
    return app
