"""Per-request context, one canonical log line, the error-to-wire mapping, and the public
listener's browser surface (CORS, WebSocket ``Origin``).

Only :class:`~relay.errors.RelayError` becomes a wire error with its own code (its ``err``
echoes the request's ``id`` when the frame's id could be read, as on a WebSocket: protocol.md
§3.2); a client that hung up mid-body (:class:`~relay.http.routes.PeerGone`) is logged at
debug and counted, not treated as a failure; any other exception is a bug: it is logged
with its traceback (frames and exception types only, :mod:`relay.logging`) and answered
with ``INTERNAL``, never with the exception text. Every other answer that is not a protocol reply
is an ``err`` frame too (protocol.md §2.1): an unknown path (404), a method the path does not
take (405), a request aiohttp cannot parse (400, see :mod:`relay.webguard`) and aiohttp's
own refusals such as a plain GET of ``/v1/ws``; none of them echoes request bytes.

Browser apps (README "Browser apps"). Owners authenticate by signature and nothing is
authenticated by cookie or by the client's address, so another site's page gains nothing by
calling the relay in its visitor's browser that it could not do itself: CORS answers any
origin by default (``allowed_origins = "*"``), never with ``Allow-Credentials``. Preflights
are answered for the API's methods with ``Content-Type`` (the relay's own type is not a
"simple" one) and cached for ``Access-Control-Max-Age``. The WebSocket handshake checks
``Origin`` against the same setting when a browser sends one (other clients send none).
"""

from __future__ import annotations

import secrets
import time
from typing import Final

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import ErrorReply
from relay.appkeys import config_key, frame_id_key, metrics_key, size_bucket_key
from relay.errors import HTTP_STATUS, RelayError
from relay.http.routes import CONTENT_TYPE, PeerGone, frame_response
from relay.service import size_bucket
from relay.webguard import guard_unparsed

__all__ = ["CORS_MAX_AGE_S", "request_middleware", "setup_web_surface"]

log = structlog.get_logger("blindrelay")

#: How long a browser may cache a preflight answer (Chromium caps it at 2 hours).
CORS_MAX_AGE_S: Final = 7200
_CORS_METHODS: Final = "GET, POST, PUT"
#: Request headers a page may send: the frame type, and the blob routes' token, upload
#: offset and range (protocol.md §5.9).
_CORS_HEADERS: Final = "Content-Type, Blindrelay-Token, Upload-Offset, Range"
#: Answer headers a page may read (a ranged blob download's).
_CORS_EXPOSE: Final = "Content-Range"
_WS_ROUTE: Final = "ws"
#: Wire code for each status aiohttp or the router answers with by itself.
_STATUS_CODES: Final = {
    408: ErrorCode.TIMEOUT,
    413: ErrorCode.TOO_LARGE,
    431: ErrorCode.TOO_LARGE,
}


def _error(
    code: ErrorCode, status: int | None = None, request_id: int | None = None
) -> web.Response:
    reply = ErrorReply(code=code.value, id=request_id)
    return frame_response(reply.encode(), status or HTTP_STATUS[code])


def _code_for(status: int) -> ErrorCode:
    if status >= 500:
        return ErrorCode.INTERNAL
    return _STATUS_CODES.get(status, ErrorCode.MALFORMED)


def _http_error(exc: web.HTTPException) -> web.Response:
    """An ``err`` frame in place of aiohttp's text answer, keeping its status."""
    response = _error(_code_for(exc.status), exc.status)
    allow = exc.headers.get(hdrs.ALLOW)
    if allow is not None:
        response.headers[hdrs.ALLOW] = allow
    return response


def _preflight(request: web.Request) -> web.StreamResponse | None:
    """The answer to a CORS preflight (None: not one). 204 for a method the path takes;
    the CORS headers themselves are added in :func:`_cors_headers` (only for an allowed
    origin, so a refused origin's preflight fails in the browser)."""
    wanted = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
    if request.method != hdrs.METH_OPTIONS or wanted is None or hdrs.ORIGIN not in request.headers:
        return None
    exc = request.match_info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed) and wanted.upper() in exc.allowed_methods:
        response = web.Response(status=204)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = _CORS_METHODS
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = _CORS_HEADERS
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(CORS_MAX_AGE_S)
        return response
    return None


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    route = request.match_info.route.name or "unknown"
    structlog.contextvars.bind_contextvars(request_id=secrets.token_hex(12), route=route)
    started = time.perf_counter()
    error_code: str | None = None
    status = 500
    try:
        preflight = _preflight(request)
        if preflight is not None:
            response = preflight
        else:
            origin = request.headers.get(hdrs.ORIGIN)
            if (
                route == _WS_ROUTE
                and origin is not None
                and not request.app[config_key].origin_allowed(origin)
            ):
                raise RelayError(ErrorCode.AUTH)
            response = await handler(request)
        status = response.status
    except RelayError as exc:
        error_code = exc.code.value
        response = _error(exc.code, request_id=request.get(frame_id_key))
        status = response.status
    except PeerGone:
        # Nobody is left to read an answer; the peer's disconnect is not a relay error.
        request.app[metrics_key].inc("peer_gone")
        log.debug("peer_gone", method=request.method)
        return web.Response(status=400)
    except web.HTTPException as exc:
        # Routing errors (404, 405) and aiohttp's refusals: an err frame, never its text.
        if exc.status < 400:
            _log(request, route, exc.status, None, started)
            raise
        response = _http_error(exc)
        status = response.status
        error_code = _code_for(status).value
    except Exception:
        log.exception("request_failed")
        error_code = ErrorCode.INTERNAL.value
        response = _error(ErrorCode.INTERNAL)
        status = response.status
    _log(request, route, status, error_code, started)
    if error_code == ErrorCode.TIMEOUT.value:
        await _answer_and_hang_up(request, response)
    return response


async def _answer_and_hang_up(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` now and close the connection: a body that did not arrive within
    ``body_read_timeout_s`` is not read any further (aiohttp would otherwise keep reading
    the rest of a trickled body for its lingering time)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    protocol = request.protocol
    if protocol is not None:
        protocol.force_close()


def _log(
    request: web.Request, route: str, status: int, error_code: str | None, started: float
) -> None:
    metrics = request.app[metrics_key]
    metrics.inc("http_requests", route)
    if error_code is not None:
        metrics.inc("errors", error_code)
    fields: dict[str, object] = {
        "method": request.method,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if error_code is not None:
        fields["error_code"] = error_code
    bucket = request.get(size_bucket_key)
    if bucket is not None:
        fields["size_bucket"] = size_bucket(bucket)
    log.info("request_handled", **fields)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CORS headers on every answer to an allowed origin (errors too: a browser app must
    read the code); no ``Allow-Credentials``, ever."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or response.headers.get(hdrs.UPGRADE):
        return
    config = request.app[config_key]
    if not config.origin_allowed(origin):
        return
    response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _CORS_EXPOSE
    if config.allowed_origins.strip() == "*":
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
    else:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers.add(hdrs.VARY, hdrs.ORIGIN)


def _unparsed(response: web.StreamResponse) -> None:
    """aiohttp's own answer to an unparsable request, as an ``err`` frame."""
    if isinstance(response, web.Response):
        response.body = ErrorReply(code=_code_for(response.status).value).encode()
        response.content_type = CONTENT_TYPE
        response.charset = None


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """``Cache-Control: no-store`` on every answer of the public listener: owner replies
    carry envelopes, keys and account data (``envs``, ``info``, ``bundle``, ``keys``), and
    nothing the relay answers is worth caching in a browser or a proxy."""
    if response.headers.get(hdrs.UPGRADE):
        return
    response.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")


def setup_web_surface(app: web.Application) -> None:
    """Install the public listener's CORS headers, ``Cache-Control: no-store``, fixed
    ``Server`` header and ``err`` frames for requests aiohttp cannot parse."""
    app.on_response_prepare.append(_cors_headers)
    app.on_response_prepare.append(_no_store)
    guard_unparsed(app, _unparsed)
