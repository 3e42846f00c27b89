"""An in-memory link to an aiohttp application in this process, for tests and embedding.

:class:`MemoryLink` serves an ``aiohttp.web.Application`` -- the relay's, from
``relay.app.create_app`` -- without a listening socket: every connection a client session
opens through :meth:`MemoryLink.connector` is a pair of in-memory asyncio transports joined
to the application's own request handler. Both ends run aiohttp's real HTTP and WebSocket
protocol code, so :class:`~clientlib.transport.HTTPTransport` and
:class:`~clientlib.transport.WebSocketTransport` work over it unchanged and nothing is
mocked; only the kernel socket is gone (no port, no address, no subprocess).

The link never imports the relay (clientlib stays free of it, ``tests/unit/test_layering.py``):
the caller builds the application and hands it in::

    from relay.app import create_app
    from relay.config import RelayConfig

    app = create_app(RelayConfig(storage="sqlite", data_dir=str(tmp_path)))
    async with MemoryLink(app) as link:       # runs the app's startup (opens storage)
        async with link.websocket() as ws:    # a WebSocketTransport over the link
            rid, sid = await ws.create_mailbox(pk, sign)
        await link.http().deposit(sid, ct, eid=eid)

Limits: the pipes buffer without bound (no write flow control: fine for tests, not for
untrusted peers); TLS does not apply (use an ``http://`` URL); closing the link closes every
connection and refuses new ones with :class:`aiohttp.ClientConnectionError`, which the
transports report as :class:`~clientlib.errors.TransportError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp import web
from aiohttp.client_proto import ResponseHandler

from clientlib.transport.http import HTTPTransport
from clientlib.transport.websocket import WebSocketTransport

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

__all__ = ["MEMORY_URL", "MemoryConnector", "MemoryLink"]

#: The base URL transports over a :class:`MemoryLink` use (any host: nothing resolves it).
MEMORY_URL = "http://relay.memory"


class _Pipe(asyncio.Transport):
    """One end of an in-memory byte stream: ordered, reliable, closed by either end.

    Writes reach the peer's protocol on a later loop iteration (never re-entrantly), in
    order; ``pause_reading`` holds received bytes until ``resume_reading``. When one end
    closes, the other still receives what was written before, then ``eof_received`` and
    (unless the protocol keeps the stream half-open) ``connection_lost(None)``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__(extra={"peername": None, "sockname": None, "socket": None})
        self._loop = loop
        self._protocol = protocol
        self._peer: _Pipe | None = None
        self._inbox: deque[bytes] = deque()
        self._paused = False
        self._closing = False  # no more writes from this end
        self._eof = False  # the peer closed: after the inbox, the stream ends
        self._lost = False  # connection_lost was delivered

    @staticmethod
    def pair(
        loop: asyncio.AbstractEventLoop, a: asyncio.Protocol, b: asyncio.Protocol
    ) -> tuple[_Pipe, _Pipe]:
        """Two joined ends, for protocols ``a`` and ``b`` (not yet told ``connection_made``)."""
        end_a, end_b = _Pipe(loop, a), _Pipe(loop, b)
        end_a._peer, end_b._peer = end_b, end_a
        return end_a, end_b

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview[int]) -> None:
        if self._closing or not data or self._peer is None:
            return
        self._loop.call_soon(self._peer._receive, bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[int]]) -> None:
        self.write(b"".join(bytes(d) for d in list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return  # nothing is buffered on the writing side

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._peer is not None:
            # Queued after every write of this end, so the peer reads them all first.
            self._loop.call_soon(self._peer._peer_closed)
        self._loop.call_soon(self._lose)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    # --- asyncio.ReadTransport ------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._paused and not self._lost

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._loop.call_soon(self._flush)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # --- delivery -------------------------------------------------------------------------

    def _receive(self, chunk: bytes) -> None:
        if self._lost or self._closing:
            return  # like a socket closed locally: unread bytes are discarded
        self._inbox.append(chunk)
        self._flush()

    def _peer_closed(self) -> None:
        self._eof = True
        self._flush()

    def _flush(self) -> None:
        while self._inbox and not self._paused and not self._lost:
            self._protocol.data_received(self._inbox.popleft())
        if self._eof and not self._inbox and not self._lost and not self._closing:
            self._eof = False
            if not self._protocol.eof_received():
                self.close()
            else:
                self._closing = True  # half-open: the peer reads no more

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._inbox.clear()
        self._peer = None  # break the cycle; the peer's writes to this end are dropped
        self._protocol.connection_lost(None)


class MemoryConnector(aiohttp.BaseConnector):
    """An aiohttp connector whose every connection is an in-memory pipe into ``link``.

    Args:
        link: the running link to connect to.
        **kwargs: passed to :class:`aiohttp.BaseConnector` (``limit``, ``force_close``...).
    """

    def __init__(self, link: MemoryLink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._link = link

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature; nothing waits)
    ) -> ResponseHandler:
        """A new pipe to the application's request handler.

        Raises:
            aiohttp.ClientConnectionError: the link is not running.
        """
        server = self._link.server
        if server is None:
            raise aiohttp.ClientConnectionError("the in-memory link is not running")
        client = self._factory()
        handler = server()
        client_end, server_end = _Pipe.pair(self._loop, client, handler)
        handler.connection_made(server_end)
        client.connection_made(client_end)
        return client


class MemoryLink:
    """Runs an aiohttp application in this process and connects clients to it in memory.

    Use as an async context manager: entering runs the application's startup (for the
    relay: opens its storage), leaving closes the default session and every connection,
    then runs the application's shutdown and cleanup.

    Args:
        app: the application to serve (not yet started).
        shutdown_timeout: seconds open connections may take to finish on exit.
    """

    def __init__(self, app: web.Application, *, shutdown_timeout: float = 5.0) -> None:
        # As the relay's own server runs it (``relay serve``): no access log (it would
        # hold addresses), no signal handlers.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
        )
        self._entered = False
        self._running = False
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a MemoryLink can be entered only once")
        self._entered = True
        await self._runner.setup()
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the default session, every connection, and shut the application down."""
        if not self._running:
            return
        self._running = False
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        """The base URL to give transports on this link."""
        return MEMORY_URL

    @property
    def server(self) -> web.Server | None:
        """The application's protocol factory while the link runs (None otherwise)."""
        return self._runner.server if self._running else None

    def connector(self, **kwargs: Any) -> MemoryConnector:
        """A new connector into this link (``kwargs``: :class:`aiohttp.BaseConnector`'s)."""
        return MemoryConnector(self, **kwargs)

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A new client session whose connections go to this link; the caller closes it.

        Raises:
            RuntimeError: the link is not running.
        """
        if not self._running:
            raise RuntimeError("the in-memory link is not running")
        return aiohttp.ClientSession(connector=self.connector(), **kwargs)

    @property
    def default_session(self) -> aiohttp.ClientSession:
        """A session the link owns (created on first use, closed with the link).

        Raises:
            RuntimeError: the link is not running.
        """
        if self._session is None:
            self._session = self.session()
        return self._session

    def http(self, session: aiohttp.ClientSession | None = None, **kwargs: Any) -> HTTPTransport:
        """An :class:`HTTPTransport` over this link (``kwargs``: its keyword arguments).

        Raises:
            RuntimeError: the link is not running.
        """
        return HTTPTransport(session or self.default_session, self.url, **kwargs)

    def websocket(
        self, session: aiohttp.ClientSession | None = None, **kwargs: Any
    ) -> WebSocketTransport:
        """A new, unopened :class:`WebSocketTransport` over this link (enter it to connect).

        Raises:
            RuntimeError: the link is not running.
        """
        return WebSocketTransport(session or self.default_session, self.url, **kwargs)
