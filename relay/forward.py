"""Two-hop private routing on the relay (protocol.md §27.3): ``/v1/rkeys``, ``/v1/route``
(a client asks this relay, F, to forward) and ``/v1/fwd`` (another relay forwards to this
one, D).

F never opens a packet: it checks the destination, its limits and the packet's key id, posts
the packet to the destination's ``/v1/fwd`` over its own relay-to-relay connection and hands
the answer back unchanged (a refusal by D as D's ``err`` code). D opens the packet
(:mod:`relay.routing`), answers the inner frame as its own routes would, and seals the reply
for the client. Neither logs an address, a destination URL, an id or a size.

Abuse controls at F (each refusal a documented code, nothing forwarded):

* ``forwarding = false``: every ``route`` is ``ROUTE`` (and ``rkeys`` says ``fwd`` 0);
* the destination must be a relay URL (§27.1) whose host resolves only to public addresses
  (unless ``forward_allow_private``; checked at every connection by the resolver, so a name
  that changes its answer cannot reach an internal address), must answer ``rkeys?`` with
  keys signed by its relay identity (so only relays are reached), and must not be F itself
  (same relay identity: a loop) -- else ``ROUTE``;
* the packet must name one of the destination's published key ids (else ``RKEY``);
* ``forward_per_connection_minute`` route frames per client TCP connection per minute and
  ``forward_max_inflight`` forwards at once (else ``LIMIT``); a packet forwarded once is
  refused when repeated within the cache (``LIMIT``);
* ``forward_pow_bits``: a proof of work over the packet (else ``POW``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from clientlib.errors import WireError
from clientlib.wire.client_frames import (
    ClientFrame,
    Deposit,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    GetRouteKeys,
    Recall,
    Route,
    decode_client_frame,
)
from clientlib.wire.codes import ErrorCode
from clientlib.wire.limits import MAX_RELAY_FRAME_SIZE
from clientlib.wire.pow import leading_zero_bits
from clientlib.wire.relay_frames import (
    ErrorReply,
    Ok,
    RelayFrame,
    Routed,
    RouteKeysIssued,
    decode_relay_frame,
)
from clientlib.wire.relayurl import InvalidRelayUrl, normalize_relay_url
from relay.appkeys import config_key, metrics_key, service_key
from relay.config import RelayConfig
from relay.errors import RelayError
from relay.http.routes import CONTENT_TYPE, frame_response, read_body, read_frame
from relay.metrics import Metrics
from relay.routing import RouteKeys, load_route_seed, verify_entry

__all__ = ["Forwarder", "route_pow_digest", "setup_forwarding"]

log = structlog.get_logger("blindrelay")

#: How long F trusts a destination's published keys before asking again.
KEYS_TTL_S: Final = 300
#: Destinations whose keys F remembers (oldest dropped first).
MAX_KNOWN_RELAYS: Final = 1024
#: Packets F remembers having forwarded (a repeat is refused; D deduplicates deposits anyway).
MAX_SEEN_PACKETS: Final = 8192
_POW_LABEL: Final = b"blindrelay/v1/route-pow\x00"


def route_pow_digest(pkt: bytes, counter: int) -> bytes:
    """``SHA-256("blindrelay/v1/route-pow" || 0x00 || SHA-256(pkt) || u64(counter))``."""
    inner = hashlib.sha256(pkt).digest()
    return hashlib.sha256(_POW_LABEL + inner + struct.pack(">Q", counter)).digest()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


class _PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every non-public address: a
    host name that (now) points inside the operator's network reaches nothing."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if _public(r["host"])]
        if not allowed:
            raise OSError("no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class Forwarder:
    """F's side: destinations, limits, the relay-to-relay session (see the module docstring)."""

    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._own: RouteKeys | None = None
        self._session: aiohttp.ClientSession | None = None
        self._known: OrderedDict[str, tuple[float, RouteKeysIssued]] = OrderedDict()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._per_conn: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
        self._inflight = 0

    @property
    def own(self) -> RouteKeys:
        """Our route keys (set at startup).

        Raises:
            RelayError: ``UNAVAILABLE`` before startup.
        """
        if self._own is None:
            raise RelayError(ErrorCode.UNAVAILABLE)
        return self._own

    async def start(self) -> None:
        config = self._config
        if config.route_key or config.storage == "sqlite":
            seed = load_route_seed(config.route_key, config.resolved_data_dir())
        else:
            # Redis without a configured seed: each process would derive other keys, so
            # this one keeps its own until it stops (clients re-fetch after RKEY).
            seed = os.urandom(32)
            log.warning("route_key_ephemeral")
        self._own = RouteKeys(seed, config.route_key_rotation_s)
        resolver = None if self._config.forward_allow_private else _PublicOnlyResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, limit=256, ttl_dns_cache=60)
        # No proxy settings from the environment, no cookies, no redirects (per request).
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- checks ----------------------------------------------------------------------------

    def _destination(self, dst: str) -> str:
        try:
            url = normalize_relay_url(dst)
        except InvalidRelayUrl:
            raise RelayError(ErrorCode.ROUTE) from None
        host = urlsplit(url).hostname or ""
        if not self._config.forward_allow_private:
            with contextlib.suppress(ValueError):
                if not _public(host):  # an address literal: the resolver never sees it
                    raise RelayError(ErrorCode.ROUTE)
        return url

    def _charge(self, conn: object) -> None:
        minute = int(time.monotonic() // 60)
        slot = self._per_conn.get(conn)
        if slot is None or slot[0] != minute:
            slot = [minute, 0]
            with contextlib.suppress(TypeError):
                self._per_conn[conn] = slot
        slot[1] += 1
        if slot[1] > self._config.forward_per_connection_minute:
            raise RelayError(ErrorCode.LIMIT)

    # --- the destination's keys -------------------------------------------------------------

    async def keys_of(self, dst: str) -> RouteKeysIssued:
        """The destination's published keys (cached), verified against its relay identity.

        Raises:
            RelayError: ``ROUTE`` (forwarding off, not a relay URL, a private address, no
                valid answer as a relay, or this relay itself), ``UNAVAILABLE``.
        """
        if not self._config.forwarding:
            raise RelayError(ErrorCode.ROUTE)
        url = self._destination(dst)
        now = time.monotonic()
        hit = self._known.get(url)
        if hit is not None and now - hit[0] < KEYS_TTL_S:
            return hit[1]
        reply = await self._post(url + "/v1/rkeys", GetRouteKeys(id=1).encode(), ErrorCode.ROUTE)
        if not isinstance(reply, RouteKeysIssued) or not reply.keys:
            raise RelayError(ErrorCode.ROUTE)
        if not all(verify_entry(reply.ri, e) for e in reply.keys):
            raise RelayError(ErrorCode.ROUTE)
        if reply.ri == self.own.identity:
            raise RelayError(ErrorCode.ROUTE)  # a loop: the destination is this relay
        self._known[url] = (now, reply)
        self._known.move_to_end(url)
        while len(self._known) > MAX_KNOWN_RELAYS:
            self._known.popitem(last=False)
        return reply

    # --- forwarding -------------------------------------------------------------------------

    async def forward(self, frame: Route, conn: object) -> bytes:
        """Forward one packet; returns the destination's sealed answer, unchanged.

        Raises:
            RelayError: ``ROUTE``, ``RKEY``, ``LIMIT``, ``POW``, ``UNAVAILABLE`` (ours), or
                the destination's own refusal code, passed back unchanged.
        """
        self._charge(conn)
        bits = self._config.forward_pow_bits
        if bits and (
            frame.pwc is None or leading_zero_bits(route_pow_digest(frame.pkt, frame.pwc)) < bits
        ):
            raise RelayError(ErrorCode.POW)
        keys = await self.keys_of(frame.dst)
        (kid,) = struct.unpack(">I", frame.pkt[1:5])
        if frame.pkt[0] != 1:
            raise RelayError(ErrorCode.MALFORMED)
        if kid not in {e.kid for e in keys.keys}:
            raise RelayError(ErrorCode.RKEY)
        digest = hashlib.sha256(frame.pkt).digest()
        if digest in self._seen:
            raise RelayError(ErrorCode.LIMIT)
        if self._inflight >= self._config.forward_max_inflight:
            raise RelayError(ErrorCode.LIMIT)
        self._inflight += 1
        try:
            url = self._destination(frame.dst)
            reply = await self._post(url + "/v1/fwd", frame.pkt, ErrorCode.UNAVAILABLE)
        finally:
            self._inflight -= 1
        self._seen[digest] = None
        while len(self._seen) > MAX_SEEN_PACKETS:
            self._seen.popitem(last=False)
        if not isinstance(reply, Routed):
            raise RelayError(ErrorCode.UNAVAILABLE)
        return reply.ans

    async def _post(self, url: str, body: bytes, failure: ErrorCode) -> RelayFrame:
        """POST to another relay; its ``err`` frame becomes a RelayError of that code."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self._config.forward_timeout_s)
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                data = await resp.content.read(MAX_RELAY_FRAME_SIZE + 1)
        except (aiohttp.ClientError, OSError, TimeoutError):
            raise RelayError(failure) from None
        try:
            _, reply = decode_relay_frame(data)
        except WireError:
            raise RelayError(failure) from None
        if isinstance(reply, ErrorReply):
            try:
                code = ErrorCode(reply.code)
            except ValueError:
                raise RelayError(failure) from None
            raise RelayError(code)
        return reply


forwarder_key: web.AppKey[Forwarder] = web.AppKey("forwarder")


# --- routes -------------------------------------------------------------------------------


async def route_keys(request: web.Request) -> web.Response:
    """``POST /v1/rkeys``: our route keys, or with ``dst`` another relay's (fetched by us)."""
    version, frame = await read_frame(request)
    if not isinstance(frame, GetRouteKeys):
        raise RelayError(ErrorCode.MALFORMED)
    config = request.app[config_key]
    if frame.dst is not None:
        other = await request.app[forwarder_key].keys_of(frame.dst)
        reply = RouteKeysIssued(id=frame.id, ri=other.ri, keys=other.keys, fwd=other.fwd, fpow=0)
        return frame_response(reply.encode(version))
    keys = request.app[forwarder_key].own
    mine = RouteKeysIssued(
        id=frame.id,
        ri=keys.identity,
        keys=keys.published(time.time()),
        fwd=int(config.forwarding),
        fpow=config.forward_pow_bits,
    )
    return frame_response(mine.encode(version))


async def route(request: web.Request) -> web.Response:
    """``POST /v1/route``: forward a sealed packet to another relay (we are F)."""
    version, frame = await read_frame(request)
    if not isinstance(frame, Route):
        raise RelayError(ErrorCode.MALFORMED)
    metrics = request.app[metrics_key]
    try:
        ans = await request.app[forwarder_key].forward(frame, request.transport)
    except RelayError as exc:
        metrics.inc("forwarded", exc.code.value.lower())
        raise
    metrics.inc("forwarded", "ok")
    return frame_response(Routed(id=frame.id, ans=ans).encode(version))


async def forwarded(request: web.Request) -> web.Response:
    """``POST /v1/fwd``: a packet another relay forwards to us (we are D)."""
    metrics = request.app[metrics_key]
    pkt = await read_body(request)
    try:
        opened = request.app[forwarder_key].own.open(pkt, time.time())
    except RelayError as exc:
        metrics.inc("forward_in", exc.code.value.lower())
        raise
    reply, version = await _answer_inner(request, opened.inner)
    metrics.inc("forward_in", "ok")
    ans = RouteKeys.seal_answer(opened, reply.encode(version))
    return frame_response(Routed(id=0, ans=ans).encode())


async def _answer_inner(request: web.Request, inner: bytes) -> tuple[RelayFrame, int]:
    """Answer the inner frame as our own routes would; refusals are sealed too."""
    try:
        version, frame = decode_client_frame(
            inner, max_size=request.app[config_key].max_frame_bytes
        )
    except WireError:
        return ErrorReply(code=ErrorCode.MALFORMED.value), 1
    try:
        return await _dispatch_inner(request, frame), version
    except RelayError as exc:
        return ErrorReply(id=getattr(frame, "id", None), code=exc.code.value), version


async def _dispatch_inner(request: web.Request, frame: ClientFrame) -> RelayFrame:
    service = request.app[service_key]
    if isinstance(frame, Deposit):
        await service.deposit(frame)  # franked and stored as any deposit (§4.11)
        return Ok(id=frame.id)
    if isinstance(frame, Recall):  # the same way as the deposit it withdraws (§5.10)
        await service.recall(frame)
        return Ok(id=frame.id)
    if isinstance(frame, FetchBundle | GetBoundaries | GetPow | GetModerationKeys):
        return await service.answer(frame)
    raise RelayError(ErrorCode.MALFORMED)


async def _forwarding_ctx(app: web.Application) -> AsyncIterator[None]:
    forwarder = app[forwarder_key]
    await forwarder.start()
    try:
        yield
    finally:
        await forwarder.close()


def setup_forwarding(app: web.Application) -> None:
    """Route keys (from the configured seed or ``<data_dir>/route-key``), the forwarder and
    the three routes."""
    app[forwarder_key] = Forwarder(app[config_key], app[metrics_key])
    app.cleanup_ctx.append(_forwarding_ctx)
    app.router.add_post("/v1/rkeys", route_keys, name="rkeys")
    app.router.add_post("/v1/route", route, name="route")
    app.router.add_post("/v1/fwd", forwarded, name="fwd")
