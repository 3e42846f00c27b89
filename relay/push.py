"""Push wake-ups without content (protocol.md §28, revision 12).

An owner registers, per mailbox, a push endpoint (``url``, UnifiedPush-compatible) and a
32-byte opaque token. When an envelope is stored for a mailbox no socket of this process
subscribes to, :meth:`PushDispatcher.wake` queues the mailbox; after a random delay (up to
``push_delay_max_s``) a worker reads the endpoint and POSTs the token, the whole body, unless
this endpoint was woken less than ``push_interval_s`` ago (coalescing) or the owner connected
meanwhile. Nothing else identifies the mailbox: no id, sender, size or content in the body,
URL or headers. Endpoints are never logged.

Outbound requests resolve the host, refuse it unless every address is public (unless
``push_allow_private``), and connect to the checked addresses (aiohttp's connector uses the
addresses the resolver returned); no redirects, no proxy from the environment, bounded
timeouts, a bounded queue (wake-ups beyond it are dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult

from clientlib.wire.codes import ErrorCode
from relay.config import RelayConfig
from relay.errors import RelayError
from relay.metrics import Metrics
from relay.storage.errors import StorageError

__all__ = ["PushDispatcher", "check_push_url"]

log = structlog.get_logger("blindrelay")

#: Workers POSTing at once (each POST is bounded by ``push_timeout_s``).
_WORKERS = 8
#: Headers of a wake-up besides those aiohttp always sends (Host, Content-Length).
_HEADERS = {"Content-Type": "application/octet-stream", "TTL": "86400", "Urgency": "high"}


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def check_push_url(url: str, *, allow_private: bool) -> None:
    """Refuse an endpoint URL a relay will not POST to (protocol.md §28.1).

    ``https`` with a host name or a public address literal; ``http`` only to a loopback host
    and only with ``allow_private``. No user information, no fragment, no whitespace or
    control characters.

    Raises:
        RelayError: ``MALFORMED``.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        raise RelayError(ErrorCode.MALFORMED)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise RelayError(ErrorCode.MALFORMED) from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise RelayError(ErrorCode.MALFORMED)
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if parts.scheme == "https":
        if literal is not None and not allow_private and not _is_public(host):
            raise RelayError(ErrorCode.MALFORMED)
        return
    loopback = host == "localhost" or (literal is not None and literal.is_loopback)
    if parts.scheme == "http" and allow_private and loopback:
        return
    raise RelayError(ErrorCode.MALFORMED)


class _PublicResolver(AbstractResolver):
    """aiohttp's threaded resolver, then every address must be public: a host name with any
    private, loopback or link-local address reaches nothing (counted ``push{refused}``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._metrics = metrics

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(_is_public(r["host"]) for r in found):
            self._metrics.inc("push", "refused")
            raise OSError("push endpoint is not a public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


class PushDispatcher:
    """Queues, delays, coalesces and sends wake-ups (see the module docstring)."""

    def __init__(
        self,
        config: RelayConfig,
        metrics: Metrics,
        *,
        endpoint_of: Callable[[bytes], Awaitable[tuple[str, bytes] | None]],
        connected: Callable[[bytes], bool],
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._endpoint_of = endpoint_of
        self._connected = connected
        self._clock = clock
        self._random = random.SystemRandom()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(config.push_queue)
        self._pending: set[bytes] = set()  # queued or delayed: coalesced before the read
        self._sent: OrderedDict[str, float] = OrderedDict()  # endpoint -> last POST
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        resolver = None if self._config.push_allow_private else _PublicResolver(self._metrics)
        connector = aiohttp.TCPConnector(resolver=resolver, limit=64, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=self._config.push_timeout_s),
        )
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(_WORKERS)]

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self, rid: bytes) -> None:
        """An envelope was stored for ``rid``: wake its endpoint, if any, after a delay."""
        if self._session is None or rid in self._pending or self._connected(rid):
            return
        if len(self._pending) >= self._config.push_queue:
            self._metrics.inc("push", "dropped")
            return
        self._pending.add(rid)
        delay = self._random.uniform(0, self._config.push_delay_max_s)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def due() -> None:
            if timer is not None:
                self._timers.discard(timer)
            self._queue.put_nowait(rid)  # never full: bounded by _pending above

        timer = loop.call_later(delay, due)
        self._timers.add(timer)

    async def _work(self) -> None:
        while True:
            rid = await self._queue.get()
            self._pending.discard(rid)
            try:
                await self._send(rid)
            except Exception as exc:  # a bug: the worker goes on
                # Only the exception's type: its message or traceback could quote the
                # registered endpoint, which is never logged (protocol.md §28).
                log.error("push_failed", exception=type(exc).__name__)
                self._metrics.inc("push", "failed")

    async def _send(self, rid: bytes) -> None:
        if self._connected(rid):
            self._metrics.inc("push", "connected")
            return
        try:
            endpoint = await self._endpoint_of(rid)
        except StorageError:
            self._metrics.inc("push", "failed")
            return
        if endpoint is None:
            return
        url, token = endpoint
        now = self._clock()
        last = self._sent.get(url)
        if last is not None and now - last < self._config.push_interval_s:
            self._metrics.inc("push", "coalesced")
            return
        self._sent[url] = now
        self._sent.move_to_end(url)
        while self._sent and now - next(iter(self._sent.values())) >= self._config.push_interval_s:
            self._sent.popitem(last=False)
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=token, headers=_HEADERS, allow_redirects=False
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, OSError, TimeoutError):
            ok = False
        self._metrics.inc("push", "sent" if ok else "failed")
