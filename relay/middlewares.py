"""Per-request context, one canonical log line, and the error-to-wire mapping.

Only :class:`~relay.errors.RelayError` becomes a wire error with its own code; any other
exception is a bug: it is logged with its traceback (no local variables) and answered with
``INTERNAL``, never with the exception text.
"""

from __future__ import annotations

import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import ErrorReply
from relay.appkeys import metrics_key, size_bucket_key
from relay.errors import HTTP_STATUS, RelayError
from relay.http.routes import frame_response
from relay.service import size_bucket

__all__ = ["request_middleware"]

log = structlog.get_logger("blindrelay")


def _error(code: ErrorCode) -> web.Response:
    return frame_response(ErrorReply(code=code.value).encode(), HTTP_STATUS[code])


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    route = request.match_info.route.name or "unknown"
    structlog.contextvars.bind_contextvars(request_id=secrets.token_hex(12), route=route)
    started = time.perf_counter()
    error_code: str | None = None
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except RelayError as exc:
        error_code = exc.code.value
        response = _error(exc.code)
        status = response.status
    except web.HTTPException as exc:
        # Routing errors (404, 405) carry no peer data; aiohttp renders them.
        status = exc.status
        _log(request, route, status, None, started)
        raise
    except Exception:
        log.exception("request_failed")
        error_code = ErrorCode.INTERNAL.value
        response = _error(ErrorCode.INTERNAL)
        status = response.status
    _log(request, route, status, error_code, started)
    return response


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
