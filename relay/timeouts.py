"""Slow clients are cut off (protocol.md §7; issue 19, item 6).

aiohttp bounds neither the time a request head may take nor, on a WebSocket, the time one
message may take: its keep-alive timer only closes a connection that is idle when it fires,
and its WebSocket heartbeat counts every received byte as a sign of life, so a client that
trickles a header line or a frame byte every second holds a socket forever. Here:

- ``header_read_timeout_s``: a request head (request line and headers) must be complete
  within this many seconds of the connection opening, or of its first byte for a later
  request on a kept-alive connection. When it is not, a client that sent part of a head gets
  ``408`` with an ``err TIMEOUT`` frame and the connection is closed; a connection that sent
  nothing is closed without an answer.
- ``keepalive_timeout_s``: an HTTP connection idle between requests is closed after this
  long (aiohttp's own keep-alive timer, set through the application's handler arguments).
  It is longer than reverse proxies keep idle upstream connections (deploy/), so a proxy
  never sends a request on a connection the relay is closing.
- ``body_read_timeout_s`` bounds an HTTP body (relay/http/routes.py) and, on a WebSocket,
  one message from its first byte (:class:`relay.ws.timer.MessageTimer`): a message that
  takes longer closes the socket with 1008 (policy violation).

aiohttp has no public hook for the first: :func:`install` makes the application's server
build a :class:`RequestHandler` subclass (the application's ``_make_handler`` is wrapped,
as :mod:`relay.webguard` wraps its ``_make_request``). ``tests/integration/test_slow_clients.py``
trickles heads, bodies and frames over real sockets, so an aiohttp release that changes
these paths fails the suite instead of reopening the hole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import ErrorReply
from relay.webguard import SERVER_HEADER

__all__ = ["TIMEOUT_ANSWER", "install"]

log = structlog.get_logger("blindrelay")

_ERR_TIMEOUT: Final = ErrorReply(code=ErrorCode.TIMEOUT.value).encode()
#: The answer to a request head that did not arrive in time (nothing of it is echoed).
TIMEOUT_ANSWER: Final = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/x-blindrelay\r\n"
    b"Content-Length: " + str(len(_ERR_TIMEOUT)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"Server: " + SERVER_HEADER.encode() + b"\r\n"
    b"\r\n" + _ERR_TIMEOUT
)

OnCut = Callable[[str], None]


class _HeadTimedHandler(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a request-head deadline.

    The deadline runs while aiohttp waits for the next request (its ``_waiter`` is pending:
    no complete head is queued and no request is in progress): from the connection's start,
    and from the first byte of each later head. When it passes and the same head is still
    incomplete, the connection is closed.
    """

    __slots__ = ("_head_bytes", "_head_count", "_head_timeout", "_head_timer", "_on_cut")

    def __init__(
        self, manager: web.Server, *, header_read_timeout: float, on_cut: OnCut, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = header_read_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0
        self._head_bytes = False
        self._on_cut = on_cut

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(with_bytes=False)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not data or self._upgraded or self._force_close or self._close:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # a head completed (or a request is in progress): no deadline now
        if self._head_timer is not None and self._head_count == self._request_count:
            self._head_bytes = True  # the same head, still incomplete: its deadline holds
            return
        self._arm(with_bytes=True)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, *, with_bytes: bool) -> None:
        self._disarm()
        self._head_count = self._request_count
        self._head_bytes = with_bytes
        self._head_timer = self._loop.call_later(self._head_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._upgraded or self._force_close:
            return
        waiter = self._waiter
        if self._request_count != self._head_count or waiter is None or waiter.done():
            return  # the head arrived in time
        if self._head_bytes:
            transport.write(TIMEOUT_ANSWER)
        self._on_cut("header")
        log.debug("slow_client_cut", what="header", partial=self._head_bytes)
        self.force_close()


class _HeadTimedServer(web.Server):
    """An aiohttp server whose connections are :class:`_HeadTimedHandler`."""

    _header_read_timeout: float
    _on_cut: OnCut

    def __call__(self) -> RequestHandler:
        return _HeadTimedHandler(
            self,
            loop=self._loop,
            header_read_timeout=self._header_read_timeout,
            on_cut=self._on_cut,
            **self._kwargs,
        )


def install(app: web.Application, header_read_timeout: float, on_cut: OnCut) -> None:
    """Make every server built for ``app`` (``AppRunner``, ``TestServer``) enforce the head
    deadline. The keep-alive timeout is a handler argument of the application itself."""
    make: Callable[..., web.Server] = app._make_handler

    def make_handler(**kwargs: Any) -> web.Server:
        server = make(**kwargs)
        server.__class__ = _HeadTimedServer  # same state, one method more
        assert isinstance(server, _HeadTimedServer)
        server._header_read_timeout = header_read_timeout
        server._on_cut = on_cut
        return server

    # object.__setattr__: aiohttp's debug mode (-X dev) warns on any attribute set on an
    # Application that it does not declare.
    object.__setattr__(app, "_make_handler", make_handler)
