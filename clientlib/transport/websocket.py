"""A WebSocket connection to a relay that survives drops (protocol.md §2-§5).

:class:`WebSocketTransport` keeps one socket open to ``<base_url>/v1/ws``. It reads ``hello``,
picks the highest common protocol version, and multiplexes requests by ``id`` with a timeout
each. Pushed envelopes, ``drained`` markers and connection changes reach the application as
events (:meth:`WebSocketTransport.events`).

When the socket drops the transport reconnects with jittered exponential backoff (full
jitter: ``rng() * min(cap, base * 2**attempt)``), renews every subscription with fresh
challenges, and so receives again every envelope that was not acknowledged (at-least-once;
deduplicate by ``eid``). Requests in flight on the dropped socket fail with
:class:`~clientlib.errors.TransportError`; a deposit may then be retried with the *same*
``eid`` (the relay deduplicates it). Requests issued while reconnecting wait for the new
socket, bounded by their timeout.

Backpressure: events go through a bounded queue. When it is full the transport stops reading
the socket -- which also delays replies to requests -- so consume :meth:`events` in a task of
its own. The relay pauses pushes on its side after ``window`` unacknowledged envelopes.

Privacy: the relay sees which mailboxes one connection serves. A client that does not want
its mailboxes linked uses one transport per mailbox, e.g.::

    transports = [WebSocketTransport(session, url, rng=rng) for _ in creds]
    async with contextlib.AsyncExitStack() as stack:
        for t, cred in zip(transports, creds):
            await stack.enter_async_context(t)
            await t.subscribe(cred)

(:func:`clientlib.transport.spread` does the opening part.) Ideally each transport also uses
its own ``aiohttp.ClientSession`` so that no TCP connection or cookie is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.transport.api import FrameBuilder, RelayAPI, expect, owner_exchange
from clientlib.transport.base import (
    CaughtUp,
    Delivered,
    Disconnected,
    MailboxCredential,
    Reconnected,
    SignFn,
    SubscriptionLost,
    TransportEvent,
    check_id,
)
from clientlib.wire import (
    MAX_RELAY_FRAME_SIZE,
    OP_SUBSCRIBE,
    SUPPORTED_VERSIONS,
    Ack,
    Deposit,
    Drained,
    EnvelopeDelivered,
    ErrorReply,
    Hello,
    Ok,
    RelayFrame,
    RelayLimits,
    Unsubscribe,
    VersionRange,
    decode_map,
    decode_relay_frame,
    negotiate,
)
from clientlib.wire.limits import MAX_ACK_BATCH, MAX_REQUEST_ID

__all__ = ["WebSocketTransport"]

log = logging.getLogger("clientlib.transport")

_T = TypeVar("_T")
#: Any version byte, to read a ``hello`` before a version is agreed on.
_ANY_VERSION = VersionRange(1, 255)


class _EventQueue(Generic[_T]):
    """A bounded FIFO whose getters see the end once it is closed and empty."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[_T] = deque()
        self._max = maxsize
        self._closed = False
        self._cond = asyncio.Condition()

    async def put(self, item: _T) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._closed or len(self._items) < self._max)
            if not self._closed:
                self._items.append(item)
                self._cond.notify_all()

    async def get(self) -> _T | None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._closed or bool(self._items))
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    async def close(self) -> None:
        async with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Connection:
    """One open socket: its negotiated version, announced limits and pending requests."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, version: int, limits: RelayLimits
    ) -> None:
        self.ws = ws
        self.version = version
        self.limits = limits
        self.pending: dict[int, asyncio.Future[RelayFrame]] = {}
        self.reader: asyncio.Task[None] | None = None

    def fail_pending(self) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(TransportError("the connection to the relay was lost"))
        self.pending.clear()


class WebSocketTransport(RelayAPI):
    """A relay connection over WebSocket, with automatic reconnect and resubscription.

    The operations shared with :class:`~clientlib.transport.HTTPTransport` are those of
    :class:`~clientlib.transport.api.RelayAPI`; pushes (:meth:`events`, :meth:`subscribe`,
    :meth:`unsubscribe`, :meth:`ack`) are the WebSocket's own.

    Use as an async context manager; entering opens the first socket (no retry), leaving
    closes it and ends :meth:`events`.

    Args:
        session: the aiohttp session to connect with.
        base_url: the relay's base URL (``http(s)://host:port``).
        request_timeout: seconds each request may take, waiting for a reconnect included.
        connect_timeout: seconds one connection attempt (handshake and ``hello``) may take.
        queue_size: capacity of the event queue (backpressure, see the module docstring).
        rng: returns a float in ``[0, 1)``; the jitter of reconnect delays.
        sleep: the coroutine used to wait between reconnect attempts.
        backoff_base: the delay bound of the first reconnect attempt, in seconds.
        backoff_cap: the largest delay bound, in seconds.
        max_reconnect_attempts: give up after this many failed attempts in a row (``None``:
            never give up). Giving up closes the transport.
        heartbeat: seconds between client pings (detects dead sockets), or ``None``.
        versions: the protocol versions this client offers.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        queue_size: int = 256,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_reconnect_attempts: int | None = None,
        heartbeat: float | None = 30.0,
        versions: VersionRange = SUPPORTED_VERSIONS,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._session = session
        self._url = base_url.rstrip("/") + "/v1/ws"
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._events: _EventQueue[TransportEvent] = _EventQueue(queue_size)
        self._rng = rng
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_attempts = max_reconnect_attempts
        self._heartbeat = heartbeat
        self._versions = versions
        self._ids = itertools.count(1)
        self._creds: dict[bytes, MailboxCredential] = {}
        self._conn: _Connection | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._supervisor is not None or self._closed:
            raise LocalProtocolError("a transport can be entered only once")
        conn = await self._open()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(conn))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket, stop reconnecting, fail pending requests and end :meth:`events`."""
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._teardown(conn)
        self._connected.set()  # wake requests waiting for a socket: they see ``_closed``
        await self._events.close()

    @property
    def connected(self) -> bool:
        """Whether a socket is currently open."""
        return self._conn is not None

    @property
    def limits(self) -> RelayLimits | None:
        """The limits announced by the relay on the current socket (``None`` if down)."""
        return self._conn.limits if self._conn is not None else None

    @property
    def version(self) -> int | None:
        """The protocol version negotiated on the current socket (``None`` if down)."""
        return self._conn.version if self._conn is not None else None

    # --- WebSocket-only API (the shared operations are RelayAPI's) -------------------------

    async def events(self) -> AsyncIterator[TransportEvent]:
        """Yield events until the transport is closed.

        Yields:
            :class:`Delivered`, :class:`CaughtUp`, :class:`Disconnected`,
            :class:`Reconnected` and :class:`SubscriptionLost`, in the order they happened.
        """
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def subscribe(self, cred: MailboxCredential) -> None:
        """Subscribe to pushes for ``cred.rid``, and renew it after every reconnect.

        Raises:
            LocalProtocolError: the relay's subscription limit would be exceeded.
            RelayRejected: the relay refused (``AUTH``: no such mailbox or wrong key).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        check_id(cred.rid, "rid")

        async def run(conn: _Connection) -> None:
            if cred.rid not in self._creds and len(self._creds) >= conn.limits.max_subscriptions:
                raise LocalProtocolError("the relay's subscription limit is reached")
            await self._subscribe_on(conn, cred)

        await self._with_connection(run)
        self._creds[cred.rid] = cred

    async def unsubscribe(self, rid: bytes) -> None:
        """Stop pushes for ``rid`` and forget its credential.

        Raises:
            RelayRejected: ``AUTH`` if this connection was not subscribed.
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        self._creds.pop(rid, None)

        async def run(conn: _Connection) -> None:
            expect(await self._call(conn, lambda i: Unsubscribe(id=i, rid=rid)), Ok)

        await self._with_connection(run)

    async def ack(self, rid: bytes, seqs: Iterable[int]) -> None:
        """Acknowledge (delete) pushed envelopes of ``rid``; ``seq == 0`` entries are skipped.

        Raises:
            RelayRejected: ``AUTH`` if this connection is not subscribed to ``rid``.
            TransportError: the relay could not be reached in time or the socket dropped
                (acks are idempotent: retry, or let the envelopes be redelivered).
        """
        todo = sorted({s for s in seqs if s > 0})
        if not todo:
            return

        async def run(conn: _Connection) -> None:
            for start in range(0, len(todo), MAX_ACK_BATCH):
                chunk = tuple(todo[start : start + MAX_ACK_BATCH])
                reply = await self._call(conn, functools.partial(Ack, rid=rid, seqs=chunk))
                expect(reply, Ok)

        await self._with_connection(run)

    # --- requests -------------------------------------------------------------------------

    async def _with_connection(self, fn: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run ``fn`` on the current socket (waiting for one), within the request timeout."""
        try:
            async with asyncio.timeout(self._request_timeout):
                while True:
                    if self._closed:
                        raise TransportError("the transport is closed")
                    await self._connected.wait()
                    conn = self._conn
                    if conn is not None:
                        return await fn(conn)
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None

    def _next_id(self, conn: _Connection) -> int:
        while True:
            request_id = next(self._ids) & MAX_REQUEST_ID
            if request_id not in conn.pending:
                return request_id

    async def _call(self, conn: _Connection, build: FrameBuilder) -> RelayFrame:
        request_id = self._next_id(conn)
        frame = build(request_id)
        if isinstance(frame, Deposit) and len(frame.ct) > conn.limits.max_envelope:
            raise LocalProtocolError("ciphertext exceeds the relay's envelope limit")
        data = frame.encode(conn.version)
        if len(data) > conn.limits.max_frame:
            raise LocalProtocolError("frame exceeds the relay's frame limit")
        fut: asyncio.Future[RelayFrame] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = fut
        try:
            try:
                await conn.ws.send_bytes(data)
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                raise TransportError("the connection to the relay was lost") from exc
            reply = await fut
        finally:
            if conn.pending.get(request_id) is fut:
                del conn.pending[request_id]
        if isinstance(reply, ErrorReply):
            raise RelayRejected(reply.code)
        return reply

    async def _request(self, build: FrameBuilder) -> RelayFrame:
        """Send one frame on the current socket (waiting for one) and return its reply."""
        return await self._with_connection(lambda conn: self._call(conn, build))

    async def _owner_request(
        self, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        """Challenge and signed command on one socket: challenges are bound to it (§4.2)."""

        async def run(conn: _Connection) -> RelayFrame:
            return await self._owner_exchange(conn, op, rid, sign, **fields)

        return await self._with_connection(run)

    async def _owner_exchange(
        self, conn: _Connection, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        call = functools.partial(self._call, conn)
        return await owner_exchange(call, conn.version, op, rid, sign, **fields)

    def _mailbox_deleted(self, rid: bytes) -> None:
        self._creds.pop(rid, None)

    async def _subscribe_on(self, conn: _Connection, cred: MailboxCredential) -> None:
        expect(await self._owner_exchange(conn, OP_SUBSCRIBE, cred.rid, cred.sign), Ok)

    # --- connection management ------------------------------------------------------------

    async def _open(self) -> _Connection:
        """Open a socket, read ``hello`` and negotiate the version.

        Raises:
            TransportError: connecting failed, timed out, or no common version exists.
        """
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await self._session.ws_connect(
                    self._url,
                    max_msg_size=MAX_RELAY_FRAME_SIZE,
                    heartbeat=self._heartbeat,
                    autoping=True,
                    compress=0,
                )
                msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise TransportError("the relay did not send hello")
            try:
                _, fields = decode_map(
                    msg.data, max_size=MAX_RELAY_FRAME_SIZE, versions=_ANY_VERSION
                )
                if fields.get("t") != Hello.TYPE:
                    raise WireError("expected hello")
                hello = Hello.from_map(fields)
            except WireError as exc:
                raise TransportError("the relay sent an invalid hello") from exc
            version = negotiate(self._versions, VersionRange(hello.min, hello.max))
            if version is None:
                raise TransportError("no protocol version in common with the relay")
            conn = _Connection(ws, version, hello.limits)
        except TimeoutError:
            if ws is not None:
                await ws.close()
            raise TransportError("connecting to the relay timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            if ws is not None:
                await ws.close()
            raise TransportError("could not connect to the relay") from exc
        except BaseException:
            if ws is not None:
                await ws.close()
            raise
        conn.reader = asyncio.get_running_loop().create_task(self._read(conn))
        self._conn = conn
        self._connected.set()
        return conn

    async def _read(self, conn: _Connection) -> None:
        """Dispatch frames of one socket until it closes."""
        accepted = VersionRange(conn.version, conn.version)
        try:
            async for msg in conn.ws:  # ends on close; errors arrive as ERROR messages
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                try:
                    _, frame = decode_relay_frame(msg.data, versions=accepted)
                except WireError:
                    log.debug("relay sent an undecodable frame; reconnecting")
                    break
                if isinstance(frame, EnvelopeDelivered):
                    await self._events.put(Delivered(frame.rid, frame.env))
                elif isinstance(frame, Drained):
                    await self._events.put(CaughtUp(frame.rid))
                else:
                    request_id = getattr(frame, "id", None)
                    fut = conn.pending.pop(request_id, None) if request_id is not None else None
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
        finally:
            conn.fail_pending()

    async def _teardown(self, conn: _Connection) -> None:
        conn.fail_pending()
        with contextlib.suppress(Exception):
            await conn.ws.close()
        if conn.reader is not None:
            conn.reader.cancel()
            await asyncio.wait({conn.reader})
            if not conn.reader.cancelled() and conn.reader.exception() is not None:
                log.debug("the socket reader failed", exc_info=conn.reader.exception())

    def _backoff(self, attempt: int) -> float:
        bound = min(self._backoff_cap, self._backoff_base * 2.0 ** min(attempt, 62))
        return self._rng() * bound

    async def _supervise(self, conn: _Connection) -> None:
        """Wait for the socket to drop, then reconnect and resubscribe, forever."""
        while True:
            assert conn.reader is not None
            await asyncio.wait({conn.reader})
            self._connected.clear()
            self._conn = None
            await self._teardown(conn)
            await self._events.put(Disconnected())
            attempt = 0
            while True:
                await self._sleep(self._backoff(attempt))
                try:
                    conn = await self._open()
                    break
                except TransportError:
                    attempt += 1
                    if self._max_attempts is not None and attempt >= self._max_attempts:
                        await self._give_up()
                        return
            await self._events.put(Reconnected())
            await self._resubscribe(conn)

    async def _resubscribe(self, conn: _Connection) -> None:
        for rid, cred in list(self._creds.items()):
            try:
                async with asyncio.timeout(self._request_timeout):
                    await self._subscribe_on(conn, cred)
            except RelayRejected as exc:
                if self._creds.get(rid) is cred:
                    del self._creds[rid]
                await self._events.put(SubscriptionLost(rid, exc.code))
            except (TransportError, TimeoutError):
                # The socket failed again (or hangs): drop it; the supervisor reconnects.
                await conn.ws.close()
                return

    async def _give_up(self) -> None:
        self._closed = True
        self._connected.set()  # wake requests waiting for a socket: they see ``_closed``
        await self._events.put(Disconnected(final=True))
        await self._events.close()
