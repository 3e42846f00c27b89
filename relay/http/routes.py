"""HTTP routes under ``/v1/`` (protocol.md §3.2) and the operational endpoints.

Bodies are v1 frames (``version || msgpack``) with content type
``application/x-blindrelay``; every reply body is a v1 frame too, errors included.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources

from aiohttp import ClientPayloadError, web
from aiohttp.typedefs import Handler

from clientlib.errors import WireError
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import (
    ChallengeIssued,
    ClientFrame,
    Deposit,
    Fanout,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    Hello,
    Ok,
    Recall,
    RequestChallenge,
    SignedOwnerCommand,
    decode_client_frame,
)
from clientlib.wire.version import SUPPORTED_VERSIONS
from relay.appkeys import (
    config_key,
    frame_id_key,
    metrics_key,
    service_key,
    size_bucket_key,
    worker_key,
)
from relay.errors import RelayError, from_wire_error
from relay.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from relay.protocol import readable_id
from relay.service import PublicRequest

__all__ = ["CONTENT_TYPE", "PeerGone", "frame_response", "setup_routes"]

CONTENT_TYPE = "application/x-blindrelay"


class PeerGone(Exception):
    """The client closed its connection before its request body arrived (FIN or RST half
    way): not a relay failure. Logged at debug and counted (``peer_gone``), never answered
    (nobody is left to read it)."""


def frame_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=CONTENT_TYPE)


async def read_body(request: web.Request) -> bytes:
    """Read the body, bounded in size and time.

    Raises:
        RelayError: ``TOO_LARGE`` or ``TIMEOUT``.
    """
    cfg = request.app[config_key]
    if request.content_length is not None and request.content_length > cfg.max_frame_bytes:
        raise RelayError(ErrorCode.TOO_LARGE)
    try:
        async with asyncio.timeout(cfg.body_read_timeout_s):
            return await request.read()
    except TimeoutError:
        raise RelayError(ErrorCode.TIMEOUT) from None
    except web.HTTPRequestEntityTooLarge:
        raise RelayError(ErrorCode.TOO_LARGE) from None
    except (ConnectionError, ClientPayloadError) as exc:
        # The peer hung up mid-body: aiohttp fails the read (a short body, a reset).
        raise PeerGone from exc


async def read_frame(request: web.Request) -> tuple[int, ClientFrame]:
    """Read and decode the body, bounded in size and time.

    Raises:
        RelayError: ``TOO_LARGE``, ``TIMEOUT``, ``MALFORMED`` or ``VERSION``.
    """
    cfg = request.app[config_key]
    body = await read_body(request)
    try:
        version, frame = decode_client_frame(body, max_size=cfg.max_frame_bytes)
    except WireError as exc:
        found = readable_id(body, cfg.max_frame_bytes)
        if found is not None:
            request[frame_id_key] = found
        raise from_wire_error(exc) from None
    frame_id = getattr(frame, "id", None)
    if type(frame_id) is int:
        request[frame_id_key] = frame_id
    return version, frame


async def info(request: web.Request) -> web.Response:
    """``GET /v1/info``: version range and limits (the ``hello`` frame)."""
    limits = request.app[config_key].wire_limits()
    hello = Hello(min=SUPPORTED_VERSIONS.min, max=SUPPORTED_VERSIONS.max, limits=limits)
    return frame_response(hello.encode())


async def challenge(request: web.Request) -> web.Response:
    """``POST /v1/challenge``: a single-use challenge for one HTTP owner command."""
    version, frame = await read_frame(request)
    if not isinstance(frame, RequestChallenge):
        raise RelayError(ErrorCode.MALFORMED)
    nonce = await request.app[service_key].issue_http_challenge(frame.op, frame.rid)
    return frame_response(ChallengeIssued(id=frame.id, nonce=nonce).encode(version))


async def owner(request: web.Request) -> web.Response:
    """``POST /v1/owner``: a signed owner command (every operation but ``sub``)."""
    version, frame = await read_frame(request)
    if not isinstance(frame, SignedOwnerCommand):
        raise RelayError(ErrorCode.MALFORMED)
    service = request.app[service_key]
    reply = await service.execute(frame, transport=service.http)
    return frame_response(reply.encode(version))


async def deposit(request: web.Request) -> web.Response:
    """``POST /v1/deposit``: deposit one envelope; 200 only once durably stored."""
    version, frame = await read_frame(request)
    if not isinstance(frame, Deposit):
        raise RelayError(ErrorCode.MALFORMED)
    request[size_bucket_key] = len(frame.ct)  # a bucket size: ct lengths are buckets
    await request.app[service_key].deposit(frame)
    return frame_response(Ok(id=frame.id).encode(version))


async def recall(request: web.Request) -> web.Response:
    """``POST /v1/recall``: delete an undelivered envelope whose deposit carried the recall
    hash of ``rs`` (protocol.md §5.10); 200 ``ok`` whether or not anything was deleted."""
    version, frame = await read_frame(request)
    if not isinstance(frame, Recall):
        raise RelayError(ErrorCode.MALFORMED)
    await request.app[service_key].recall(frame)
    return frame_response(Ok(id=frame.id).encode(version))


async def fanout(request: web.Request) -> web.Response:
    """``POST /v1/fan``: one envelope to many group mailboxes (protocol.md §26.1); 200 with
    the refused entries once the others are durably stored."""
    version, frame = await read_frame(request)
    if not isinstance(frame, Fanout):
        raise RelayError(ErrorCode.MALFORMED)
    request[size_bucket_key] = len(frame.ct)
    reply = await request.app[service_key].fanout(frame)
    return frame_response(reply.encode(version))


def public_request(frame_type: type[PublicRequest]) -> Handler:
    """The route of one public request: its body must be a ``frame_type`` frame.

    ``POST /v1/bundle`` (the prekey bundle of a send id; consumes one one-time item),
    ``/v1/boundaries`` (a contact address's boundaries), ``/v1/mkeys`` (the relay's moderator
    keys; protocol.md §4.11) and ``/v1/pow`` (a single-use proof-of-work nonce). ``/v1/pow``
    is not limited per client here (HTTP requests are not tied to a connection and the relay
    keeps no addresses): operators rate-limit ``/v1/pow`` and ``/v1/deposit`` in the reverse
    proxy (deploy/nginx.conf).
    """

    async def route(request: web.Request) -> web.StreamResponse:
        version, frame = await read_frame(request)
        if not isinstance(frame, frame_type):
            raise RelayError(ErrorCode.MALFORMED)
        reply = await request.app[service_key].answer(frame)
        return frame_response(reply.encode(version))

    return route


def _worker(request: web.Request) -> dict[str, str]:
    """``X-Blindrelay-Worker``: which worker answered (``serve --workers``), else nothing."""
    worker = request.app.get(worker_key)
    return {} if worker is None else {"X-Blindrelay-Worker": worker}


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.Response(text="ok\n", headers=_worker(request))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: storage answers and has room (503 with the reason otherwise: a relay out
    of space refuses deposits, so a load balancer should send them elsewhere)."""
    service = request.app[service_key]
    try:
        async with asyncio.timeout(2):
            await service.ping()
    except (RelayError, TimeoutError):
        return web.Response(text="storage unavailable\n", status=503, headers=_worker(request))
    if service.storage_full():
        return web.Response(text="storage full\n", status=503, headers=_worker(request))
    return web.Response(text="ready\n", headers=_worker(request))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, aggregates only."""
    service = request.app[service_key]
    stored: int | None
    try:
        async with asyncio.timeout(2):
            stored = await service.count_envelopes()
    except (RelayError, TimeoutError):
        stored = None
    text = request.app[metrics_key].render(stored, service.backend, full=service.storage_full())
    return web.Response(
        text=text, headers={"Content-Type": METRICS_CONTENT_TYPE, **_worker(request)}
    )


@functools.cache
def openapi_document() -> bytes:
    """``relay/openapi.json`` (package data): the OpenAPI 3.1 document of every route."""
    return importlib.resources.files("relay").joinpath("openapi.json").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    """``GET /v1/openapi.json``: the OpenAPI 3.1 document of the relay's HTTP routes."""
    return web.Response(body=openapi_document(), content_type="application/json")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v1/info", info, name="info")
    app.router.add_post("/v1/challenge", challenge, name="challenge")
    app.router.add_post("/v1/owner", owner, name="owner")
    app.router.add_post("/v1/deposit", deposit, name="deposit")
    app.router.add_post("/v1/fan", fanout, name="fan")
    app.router.add_post("/v1/recall", recall, name="recall")
    app.router.add_post("/v1/bundle", public_request(FetchBundle), name="bundle")
    app.router.add_post("/v1/mkeys", public_request(GetModerationKeys), name="mkeys")
    app.router.add_post("/v1/boundaries", public_request(GetBoundaries), name="boundaries")
    app.router.add_post("/v1/pow", public_request(GetPow), name="pow")
    app.router.add_get("/v1/openapi.json", openapi, name="openapi")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    if app[config_key].metrics:
        app.router.add_get("/metrics", metrics, name="metrics")
