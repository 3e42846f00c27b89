"""The WebSocket I/O shell: feeds frames to :class:`RelayConnection` and the service, pushes
envelopes to subscribed owners (protocol.md §3 and §5.3).

Each subscription runs a *pump*: it pushes stored envelopes oldest first, keeping at most
``push_window`` unacknowledged on the wire, and sends ``drained`` once everything stored when
it started has been pushed. A deposit on this process wakes the pump with the envelope in
hand, so an online owner gets it without a storage read; a deposit on another process (Redis
mode) wakes it through pub/sub and the pump reads storage.

Requests are processed concurrently (bounded by ``max_inflight_requests``), except that
deposits to the same send id on one connection are stored in the order they arrived, so a
sender that pipelines keeps its order.

Output is batched: every frame queued for a connection during one turn of the event loop is
framed here and handed to the transport in one ``writelines`` (one ``send()`` for a burst of
``ok`` replies or pushes instead of one per frame), with no writer task per connection; when
the transport asks to pause (its buffer is above the high-water mark) the queue waits for it
to drain. A pump reads storage only when something may be waiting there: the highest stored
sequence number a wake-up announced, or an unfinished page, not every ack.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import (
    Ack,
    Deposit,
    Drained,
    Fanout,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    Recall,
    RequestChallenge,
    SignedOwnerCommand,
    StoredEnvelope,
    Unsubscribe,
)
from clientlib.wire.limits import MAX_FETCH_BYTES
from relay.appkeys import (
    closer_key,
    config_key,
    metrics_key,
    service_key,
    sockets_key,
    worker_key,
)
from relay.errors import RelayError, wire_code
from relay.protocol import ConnectionLimits, RelayConnection
from relay.service import MailboxService, PublicRequest, Transport, WakeEvent
from relay.ws.closing import CLOSE_TIMEOUT_S
from relay.ws.inline import Inline
from relay.ws.timer import SLOW_MESSAGE_CLOSE, MessageTimer

__all__ = ["setup_websocket", "websocket_handler"]

log = structlog.get_logger("blindrelay")


class Subscription:
    """Push state of one mailbox on one connection.

    ``more`` says storage may hold envelopes after ``last_pushed`` that this subscription has
    not seen: true at first, after a wake-up it could not push at once, and when the pump
    stopped at a full window or a full page; false once a fetch came back short. An ack that
    frees window room restarts the pump only when ``more`` is set, so a subscription that is
    up to date costs no storage read per ack.
    """

    __slots__ = (
        "_dirty",
        "_pumping",
        "_task",
        "conn",
        "drained_sent",
        "inflight",
        "last_pushed",
        "more",
        "rid",
    )

    def __init__(self, conn: Connection, rid: bytes) -> None:
        self.conn = conn
        self.rid = rid
        self.last_pushed = 0
        self.inflight: set[int] = set()
        self.drained_sent = False
        self.more = True
        self._pumping = False
        self._dirty = True
        self._task: asyncio.Task[None] | None = None

    def on_event(self, event: WakeEvent) -> None:
        """Wake-up callback (runs on the event loop, must not block)."""
        if event.at:
            # From the envelope's storing to this subscriber's connection hearing of it.
            self.conn.metrics.wakeup_lag(event.via, time.time() - event.at)
        if event.kind == "online":
            if event.env is not None:
                self.conn.push(self.rid, event.env)
            return
        if event.kind == "deleted":
            self.conn.drop_subscription(self.rid)
            return
        if event.kind == "recheck":
            self.more = True
            self.kick()
            return
        if event.seq <= self.last_pushed:
            return
        room = len(self.inflight) < self.conn.window
        if (
            event.env is not None
            and not self._pumping
            and not self.more
            and event.seq == self.last_pushed + 1
            and room
        ):
            # Fast path: the next envelope, in hand, with room in the window.
            self.last_pushed = event.seq
            self.inflight.add(event.seq)
            self.conn.push(self.rid, event.env)
            return
        self.more = True
        if room or self._pumping:
            self.kick()
        # else: the window is full; the ack that frees room restarts the pump.

    def kick(self) -> None:
        self._dirty = True
        if not self._pumping and not self.conn.closed:
            self._pumping = True
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        service = self.conn.service
        # A page that could have been cut by the byte limit rather than by the end of the
        # queue: at most MAX_FETCH_BYTES, the last envelope at most max_envelope_bytes.
        cut_at = MAX_FETCH_BYTES - self.conn.max_envelope
        try:
            while self._dirty and not self.conn.closed:
                self._dirty = False
                while not self.conn.closed:
                    room = self.conn.window - len(self.inflight)
                    if room <= 0:
                        self.more = True
                        break
                    envs = await service.pending(self.rid, self.last_pushed, room)
                    if self.rid not in self.conn.subs:
                        return
                    size = 0
                    for env in envs:
                        size += len(env.ct)
                        if env.seq > self.last_pushed:
                            self.last_pushed = env.seq
                            self.inflight.add(env.seq)
                            self.conn.push(self.rid, env)
                    if len(envs) < room and size <= cut_at:
                        # Everything stored when the fetch ran has been pushed; a deposit
                        # that landed meanwhile woke us (``_dirty``) and the outer loop reads
                        # again.
                        self.more = False
                        if not self.drained_sent:
                            self.drained_sent = True
                            self.conn.send(Drained(rid=self.rid).encode(self.conn.proto.version))
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Storage failed while pushing (anything else is a bug, logged as one). Dropping
            # the subscription silently would leave the owner connected but deaf, so close
            # the socket with 1013 (try again later): the client reconnects with backoff and
            # re-subscribes, and nothing unacked is lost (protocol.md §5.3).
            if wire_code(exc) is not None:
                log.warning("push_failed", conn_id=self.conn.conn_id)
                self.conn.metrics.inc("storage_errors", "push")
            else:
                log.exception("push_failed", conn_id=self.conn.conn_id)
            self.conn.abort(WSCloseCode.TRY_AGAIN_LATER)
        finally:
            self._pumping = False
            self._task = None

    def acked(self, seqs: tuple[int, ...]) -> None:
        before = len(self.inflight)
        self.inflight.difference_update(seqs)
        if self.more and len(self.inflight) < before:
            self.kick()

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


_PACK_LEN1 = struct.Struct("!BB").pack
_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack
_BINARY_FIN: Final = 0x82  # FIN + opcode 2 (binary); server frames are never masked
_OK_HEAD: Final = b"\x82\xa1t\xa2ok\xa2id"  # msgpack {"t": "ok", "id": ...} up to the id
_ENV_HEAD: Final = b"\x83\xa1t\xa3env\xa3rid"  # msgpack {"t": "env", "rid": ...}
_ENV_KEY: Final = b"\xa3env"
_packb: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True).pack
_DATA: Final = frozenset({WSMsgType.BINARY, WSMsgType.TEXT})


def _size(data: bytes | str) -> int:
    """A message's size in bytes on the wire (a text message is UTF-8)."""
    return len(data) if isinstance(data, bytes) else len(data.encode())


def ok_frame(version: int, request_id: int) -> bytes:
    """``Ok(id=request_id).encode(version)``, byte for byte, without building the frame."""
    return bytes((version,)) + _OK_HEAD + _packb(request_id)


def env_frame(version: int, rid: bytes, env: StoredEnvelope) -> bytes:
    """``EnvelopeDelivered(rid=rid, env=env).encode(version)``, byte for byte (the map's keys
    in schema order, ``env`` packed as its own map)."""
    return bytes((version,)) + _ENV_HEAD + _packb(rid) + _ENV_KEY + _packb(env.to_map())


def ws_frame_header(length: int) -> bytes:
    """The RFC 6455 header of an unmasked, final, binary frame of ``length`` bytes."""
    if length < 126:
        return _PACK_LEN1(_BINARY_FIN, length)
    if length < 65536:
        return _PACK_LEN2(_BINARY_FIN, 126, length)
    return _PACK_LEN3(_BINARY_FIN, 127, length)


@functools.lru_cache(maxsize=8)
def _limits_of(
    max_frame: int, pending: int, subs: int, ttl: int, per_minute: int
) -> ConnectionLimits:
    """One shared (frozen) :class:`ConnectionLimits` per configuration, not one per socket."""
    return ConnectionLimits(
        max_frame=max_frame,
        max_pending_challenges=pending,
        max_subscriptions=subs,
        challenge_ttl_s=ttl,
        requests_per_minute=per_minute,
    )


class Connection:
    """One authenticated-or-not WebSocket connection (slotted: an idle one is small)."""

    __slots__ = (
        "_draining",
        "_flush_scheduled",
        "_loop",
        "closed",
        "conn_id",
        "frames",
        "inline",
        "max_envelope",
        "max_inflight",
        "metrics",
        "outq",
        "proto",
        "pushed_at",
        "service",
        "sid_tails",
        "subs",
        "tasks",
        "window",
        "ws",
    )

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        app = request.app
        cfg = app[config_key]
        self.ws = ws
        self.service: MailboxService = app[service_key]
        self.metrics = app[metrics_key]
        self.conn_id = secrets.token_hex(6)
        self.window = cfg.push_window
        self.max_inflight = cfg.max_inflight_requests
        self.proto = RelayConnection(
            _limits_of(
                cfg.max_frame_bytes,
                cfg.max_pending_challenges,
                cfg.max_subscriptions,
                cfg.challenge_ttl_s,
                cfg.requests_per_connection_minute,
            )
        )
        self.max_envelope = cfg.max_envelope_bytes
        self.subs: dict[bytes, Subscription] = {}
        #: Requests in flight (Tasks, or Inline for deposits and acks) and helper tasks.
        self.tasks: set[asyncio.Task[None] | Inline] = set()
        #: Deposits and acks run without a Task when the store allows it.
        self.inline = getattr(self.service.store, "task_free", False) is True
        self.sid_tails: dict[bytes, asyncio.Future[None]] = {}
        self.closed = False
        self.frames = 0
        self.outq: list[bytes] = []  # frames queued during this loop turn
        self.pushed_at: list[float] = []  # queueing time of each push in outq
        self._flush_scheduled = False
        self._draining = False
        self._loop = asyncio.get_running_loop()

    # --- output ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one frame for the socket; everything queued in this loop turn is written
        together, in order, by :meth:`flush`."""
        if self.closed:
            return
        self.outq.append(data)
        if self._draining:
            self.metrics.queued(1)  # held until the transport drains
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued frame with one ``writelines`` (unless the transport is paused:
        then :meth:`_drain` writes them once it has drained)."""
        self._flush_scheduled = False
        if self._draining or not self.outq:
            return
        frames, self.outq = self.outq, []
        pushed, self.pushed_at = self.pushed_at, []
        writer: Any = getattr(self.ws, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None or transport.is_closing() or getattr(writer, "_closing", False):
            self.closed = True  # the peer is gone or the socket is closing: drop the frames
            return
        parts: list[bytes] = []
        for data in frames:
            parts.append(ws_frame_header(len(data)))
            parts.append(data)
        try:
            transport.writelines(parts)
        except (ConnectionError, RuntimeError):
            self.closed = True
            return
        if pushed:
            now = time.perf_counter()
            observe = self.metrics.observe
            for t in pushed:
                observe("push", now - t)
        protocol = getattr(writer, "protocol", None)
        if protocol is not None and getattr(protocol, "_paused", False):
            # The transport's buffer is above its high-water mark: queue until it drains.
            self._draining = True
            task = self._loop.create_task(self._drain(protocol))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _drain(self, protocol: Any) -> None:
        try:
            await protocol._drain_helper()
        except (ConnectionError, RuntimeError):
            self.closed = True
        finally:
            self._draining = False
            self.metrics.queued(-len(self.outq))  # written below, or dropped
            if self.closed:
                self.outq.clear()
                self.pushed_at.clear()
        self.flush()

    def push(self, rid: bytes, env: StoredEnvelope) -> None:
        if self.closed:
            return
        self.metrics.inc("pushed")
        self.pushed_at.append(time.perf_counter())
        self.send(env_frame(self.proto.version, rid, env))

    def reply_error(self, code: ErrorCode, request_id: int | None) -> None:
        self.metrics.inc("errors", code.value)
        self.send(self.proto.error(code, request_id))

    # --- the owner channel (relay.service.OwnerChannel) -----------------------------------

    @property
    def kind(self) -> Transport:
        return Transport.SOCKET

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        return await self.proto.take_challenge(nonce, now)

    def can_subscribe(self, rid: bytes) -> bool:
        return self.proto.can_subscribe(rid)

    def subscribe(self, rid: bytes) -> None:
        self.add_subscription(rid)

    def unsubscribe(self, rid: bytes) -> None:
        self.drop_subscription(rid)

    # --- subscriptions --------------------------------------------------------------------

    def add_subscription(self, rid: bytes) -> None:
        if rid in self.subs:
            return
        sub = Subscription(self, rid)
        self.subs[rid] = sub
        self.proto.subscriptions.add(rid)
        self.service.listen(rid, sub.on_event)
        sub.kick()

    def drop_subscription(self, rid: bytes) -> None:
        sub = self.subs.pop(rid, None)
        self.proto.subscriptions.discard(rid)
        if sub is not None:
            self.service.unlisten(rid, sub.on_event)
            sub.cancel()

    # --- input ----------------------------------------------------------------------------

    def handle(self, data: bytes) -> None:
        self.frames += 1
        try:
            frame = self.proto.receive_frame(data)
        except RelayError as exc:
            self.reply_error(exc.code, self.proto.readable_id(data))
            return
        if isinstance(frame, RequestChallenge):
            try:
                self.send(
                    self.proto.issue_challenge(frame, self.service.new_nonce(), self.service.now())
                )
            except RelayError as exc:
                self.reply_error(exc.code, frame.id)
            return
        if len(self.tasks) >= self.max_inflight:
            self.reply_error(ErrorCode.LIMIT, getattr(frame, "id", None))
            return
        if isinstance(frame, GetPow) or (isinstance(frame, Deposit) and frame.hdl is not None):
            # Contact requests and pow nonces: a per-connection allowance (protocol.md §4.9).
            try:
                self.proto.count_request(self.service.now())
            except RelayError as exc:
                self.reply_error(exc.code, frame.id)
                return
        match frame:
            case Deposit():
                self.spawn(frame.id, self._deposit(frame), inline=self.inline)
            case Fanout():
                self.spawn(frame.id, self._fanout(frame))
            case Recall():
                self.spawn(frame.id, self._deposit(frame))
            case Ack():
                self.spawn(frame.id, self._ack(frame), inline=self.inline)
            case SignedOwnerCommand():
                self.spawn(frame.id, self._owner(frame))
            case FetchBundle() | GetBoundaries() | GetModerationKeys() | GetPow():
                self.spawn(frame.id, self._answer(frame))
            case Unsubscribe():
                if frame.rid in self.subs:
                    self.drop_subscription(frame.rid)
                    self.send(ok_frame(self.proto.version, frame.id))
                else:
                    self.reply_error(ErrorCode.AUTH, frame.id)

    def spawn(
        self, request_id: int, coro: Awaitable[bytes | None], *, inline: bool = False
    ) -> None:
        """Run one request; its reply (or error) is queued when it is done. ``inline``: with
        no Task (:class:`~relay.ws.inline.Inline`; its first step runs now)."""

        async def run() -> None:
            try:
                reply = await coro
                if reply is not None:
                    self.send(reply)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = wire_code(exc)
                if code is None:
                    log.exception("request_failed", conn_id=self.conn_id)
                    code = ErrorCode.INTERNAL
                self.reply_error(code, request_id)

        if inline:
            request = Inline(run(), self.tasks.discard)
            self.tasks.add(request)
            request.start()
            return
        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deposit(self, frame: Deposit | Recall) -> bytes:
        # Deposits to one send id from this connection are stored in arrival order, and a
        # recall runs after the deposits sent before it (protocol.md §5.8, §5.10).
        loop = asyncio.get_running_loop()
        previous = self.sid_tails.get(frame.sid)
        mine: asyncio.Future[None] = loop.create_future()
        self.sid_tails[frame.sid] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            if isinstance(frame, Recall):
                await self.service.recall(frame)
            else:
                await self.service.deposit(frame)
            return ok_frame(self.proto.version, frame.id)
        finally:
            mine.set_result(None)
            if self.sid_tails.get(frame.sid) is mine:
                del self.sid_tails[frame.sid]

    async def _fanout(self, frame: Fanout) -> bytes:
        reply = await self.service.fanout(frame)
        return reply.encode(self.proto.version)

    async def _ack(self, frame: Ack) -> bytes:
        self.proto.require_subscribed(frame.rid)
        await self.service.ack(frame.rid, frame.seqs)
        sub = self.subs.get(frame.rid)
        if sub is not None:
            sub.acked(frame.seqs)
        return ok_frame(self.proto.version, frame.id)

    async def _answer(self, frame: PublicRequest) -> bytes:
        reply = await self.service.answer(frame)
        return reply.encode(self.proto.version)

    async def _owner(self, frame: SignedOwnerCommand) -> bytes:
        reply = await self.service.execute(frame, transport=self)
        return reply.encode(self.proto.version)

    def cut_slow_message(self) -> None:
        """A message did not arrive within ``body_read_timeout_s`` of its first byte
        (relay.timeouts.MessageTimer): close with 1008."""
        self.metrics.inc("slow_clients", "ws_message")
        log.debug("slow_client_cut", what="ws_message")
        self.abort(SLOW_MESSAGE_CLOSE)

    def abort(self, code: WSCloseCode) -> None:
        """Close the socket from inside (storage failure); the reader loop then ends."""
        if self.closed:
            return
        self.closed = True

        async def close() -> None:
            await self.ws.close(code=code)

        task = asyncio.get_running_loop().create_task(close())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        self.closed = True
        for rid in list(self.subs):
            self.drop_subscription(rid)
        running = list(self.tasks)
        for task in running:
            task.cancel()
        for task in running:
            if isinstance(task, Inline):
                await task.wait()
        tasks = [t for t in running if not isinstance(t, Inline)]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """``GET /v1/ws``: the owner and sender socket."""
    app = request.app
    cfg = app[config_key]
    metrics = app[metrics_key]
    sockets = app[sockets_key]
    if len(sockets) >= cfg.max_connections:
        raise RelayError(ErrorCode.LIMIT)
    ws = web.WebSocketResponse(
        # aiohttp's reader refuses a message whose size *equals* max_msg_size; the limit
        # admits max_frame_bytes (protocol.md §7), so the reader gets one byte more and the
        # loop below enforces the exact limit whatever aiohttp does at the boundary.
        max_msg_size=cfg.max_frame_bytes + 1,
        heartbeat=cfg.heartbeat_s,
        compress=False,
        autoping=True,
        timeout=CLOSE_TIMEOUT_S,  # the longest a close waits for the client's reply
    )
    worker = app.get(worker_key)
    if worker is not None:  # serve --workers: the handshake names the worker (a test reads it)
        ws.headers["X-Blindrelay-Worker"] = worker
    closer = app[closer_key]
    if closer.shutting_down:
        raise RelayError(ErrorCode.UNAVAILABLE)
    await ws.prepare(request)
    sockets.add(ws)
    closer.add(ws)
    metrics.connections += 1
    metrics.inc("connections")
    conn = Connection(request, ws)
    timer = MessageTimer.attach(request, ws, cfg.body_read_timeout_s, conn.cut_slow_message)
    started = time.monotonic()
    structlog.contextvars.bind_contextvars(conn_id=conn.conn_id)
    log.info("connection_opened", protocol_version=conn.proto.version)
    reason = "closed"
    close_code = WSCloseCode.OK
    try:
        try:
            await ws.send_bytes(RelayConnection.hello(cfg.wire_limits()))
            async for msg in ws:
                if msg.type in _DATA and _size(msg.data) > cfg.max_frame_bytes:
                    reason = "too_large"
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG)
                    break
                if msg.type == WSMsgType.BINARY:
                    conn.handle(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    conn.reply_error(ErrorCode.MALFORMED, None)
                elif msg.type == WSMsgType.ERROR:
                    reason = (
                        "too_large" if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG else "error"
                    )
                    break
        except asyncio.CancelledError:
            # Shutdown stops the wait for the next message so that this task closes the
            # socket itself, handshake included (relay/ws/closing.py); any other
            # cancellation propagates.
            if not closer.claim(ws):
                raise
            reason, close_code = "shutdown", WSCloseCode.GOING_AWAY
    finally:
        closer.discard(ws)
        if timer is not None:
            timer.cancel()
        await conn.close()
        metrics.connections -= 1
        sockets.discard(ws)
        if not ws.closed:
            message = b"relay shutting down" if close_code == WSCloseCode.GOING_AWAY else b""
            await ws.close(code=close_code, message=message)
        log.info(
            "connection_closed",
            reason=reason,
            frames=conn.frames,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
    return ws


def setup_websocket(app: web.Application) -> None:
    app.router.add_get("/v1/ws", websocket_handler, name="ws")
