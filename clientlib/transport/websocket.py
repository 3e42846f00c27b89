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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.transport.base import (
    CaughtUp,
    Delivered,
    Disconnected,
    MailboxCredential,
    Reconnected,
    SignFn,
    SubscriptionLost,
    TransportEvent,
    check_report_id,
    create_fields,
    deposit_fields,
    id_list,
    prekey_chunks,
    report_fields,
)
from clientlib.wire import (
    CAPABILITY_HASH_SIZE,
    ENVELOPE_ID_SIZE,
    HANDLE_SIZE,
    KIND_OPEN,
    MAILBOX_ID_SIZE,
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    MAX_RELAY_FRAME_SIZE,
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_DELETE,
    OP_INFO,
    OP_PREKEYS,
    OP_REPORT,
    OP_REPORT_STATUS,
    OP_SUBSCRIBE,
    SUPPORTED_VERSIONS,
    Ack,
    Boundaries,
    BoundariesIssued,
    BundleIssued,
    ChallengeIssued,
    ClientFrame,
    Deposit,
    Drained,
    EnvelopeDelivered,
    ErrorReply,
    FetchBundle,
    GetBoundaries,
    GetPow,
    Hello,
    MailboxCreated,
    MailboxInfo,
    Ok,
    OwnerCommand,
    PowIssued,
    PreKeysStored,
    RelayFrame,
    RelayLimits,
    ReportAccepted,
    ReportStatus,
    RequestChallenge,
    SignedOwnerCommand,
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
_F = TypeVar("_F", bound=RelayFrame)
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


class WebSocketTransport:
    """A relay connection over WebSocket, with automatic reconnect and resubscription.

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

    # --- public API -----------------------------------------------------------------------

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

    async def create_mailbox(
        self,
        owner_key: bytes,
        sign: SignFn,
        *,
        kind: str = KIND_OPEN,
        boundaries: Boundaries | None = None,
    ) -> tuple[bytes, bytes]:
        """Create a mailbox owned by ``owner_key`` (proof of possession by ``sign``).

        Args:
            owner_key: the new mailbox's Ed25519 owner key.
            sign: signs the command with that key.
            kind: ``"open"`` (anyone with the send id may deposit), ``"pair"`` (deposits need
                a registered send capability, :meth:`set_caps`) or ``"addr"`` (a contact
                address: deposits are contact requests within ``boundaries``), protocol.md
                §4.8.
            boundaries: for ``"addr"`` only; the relay's defaults if None.

        Returns:
            ``(rid, sid)``: the receive id (keep it secret) and the send id (for senders).

        Raises:
            LocalProtocolError: an unknown kind, or boundaries for another kind.
            RelayRejected: the relay refused (``MALFORMED`` for an invalid key, or a relay
                before revision 3 for kinds other than open; ``AUTH``).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        fields = create_fields(kind, boundaries)

        async def run(conn: _Connection) -> tuple[bytes, bytes]:
            cmd = await self._owner_command(conn, OP_CREATE, None, sign, key=owner_key, **fields)
            created = self._expect(cmd, MailboxCreated)
            return created.rid, created.sid

        return await self._with_connection(run)

    async def subscribe(self, cred: MailboxCredential) -> None:
        """Subscribe to pushes for ``cred.rid``, and renew it after every reconnect.

        Raises:
            LocalProtocolError: the relay's subscription limit would be exceeded.
            RelayRejected: the relay refused (``AUTH``: no such mailbox or wrong key).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")

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
            self._expect(await self._call(conn, lambda i: Unsubscribe(id=i, rid=rid)), Ok)

        await self._with_connection(run)

    async def delete_mailbox(self, cred: MailboxCredential) -> None:
        """Delete the mailbox with everything it holds; its ids become unknown (``AUTH``).

        Raises:
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached in time or the socket dropped.
        """

        async def run(conn: _Connection) -> None:
            reply = await self._owner_command(conn, OP_DELETE, cred.rid, cred.sign)
            self._expect(reply, Ok)

        await self._with_connection(run)
        self._creds.pop(cred.rid, None)

    async def deposit(
        self,
        sid: bytes,
        ct: bytes,
        *,
        eid: bytes,
        flags: int = 0,
        fc: bytes | None = None,
        cap: bytes | None = None,
        hdl: bytes | None = None,
        att: Sequence[bytes] = (),
        pow: tuple[bytes, int] | None = None,
    ) -> None:
        """Deposit one envelope; returns once the relay has stored it (or pushed it, for
        online-only envelopes).

        Args:
            sid: the destination mailbox's send id.
            ct: the ciphertext, already padded to an envelope bucket.
            eid: 16 random bytes chosen by the caller; reuse them when retrying.
            flags: envelope flags (``FLAG_ONLINE_ONLY``).
            fc: optional 32-byte franking commitment.
            cap: the 32-byte send capability a pairwise mailbox requires (protocol.md §4.8).
            hdl: the 16-byte requester handle a contact address requires (§4.9).
            att: attachment ids (16 bytes each, at most 16) the envelope references.
            pow: ``(nonce, counter)``: a proof of work for a contact address that asks for
                one (:meth:`pow_challenge`, then :func:`clientlib.wire.solve`). A retry after
                a lost reply needs a fresh nonce (the first one was consumed) but the same
                ``eid``.

        Raises:
            LocalProtocolError: ``ct`` is larger than the relay's announced limit, or a field
                has the wrong length.
            RelayRejected: the relay refused (``AUTH`` unknown sid or capability, banned
                handle; ``BOUNDARY``; ``POW``; ``QUOTA``; ``LIMIT``, ...).
            TransportError: no reply in time, or the socket dropped (retry with ``eid``).
        """
        _check_id(sid, "sid")
        if len(eid) != ENVELOPE_ID_SIZE:
            raise LocalProtocolError("eid must be 16 bytes")
        extra = deposit_fields(cap, hdl, att, pow)

        async def run(conn: _Connection) -> None:
            if len(ct) > conn.limits.max_envelope:
                raise LocalProtocolError("ciphertext exceeds the relay's envelope limit")
            reply = await self._call(
                conn,
                lambda i: Deposit(id=i, sid=sid, eid=eid, flags=flags, ct=ct, fc=fc, **extra),
            )
            self._expect(reply, Ok)

        await self._with_connection(run)

    async def set_caps(
        self,
        cred: MailboxCredential,
        *,
        add: Sequence[bytes] = (),
        remove: Sequence[bytes] = (),
    ) -> None:
        """Register and revoke send capabilities of a pairwise mailbox (protocol.md §4.8).

        Takes capability *hashes* (:func:`clientlib.wire.capability_hash`), never the
        capabilities; ``remove`` applies before ``add``. Revoking blocks that contact at the
        relay; adding the same hash again unblocks it.

        Raises:
            LocalProtocolError: more than 64 hashes in ``add`` or ``remove``, or not 32 bytes.
            RelayRejected: ``QUOTA`` (more than the relay's ``max_caps``; nothing changed),
                ``MALFORMED`` (not a pairwise mailbox, or a relay before revision 3),
                ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        added = id_list(add, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        removed = id_list(remove, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        await self._owner_call(cred, OP_CAPS, Ok, add=added, remove=removed)

    async def set_boundaries(self, cred: MailboxCredential, boundaries: Boundaries) -> None:
        """Replace the boundaries of a contact address (protocol.md §4.9).

        Raises:
            RelayRejected: ``MALFORMED`` (not a contact address, or a relay before revision
                3), ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        await self._owner_call(cred, OP_BOUNDARIES, Ok, bnd=boundaries)

    async def ban(
        self,
        cred: MailboxCredential,
        *,
        add: Sequence[bytes] = (),
        remove: Sequence[bytes] = (),
    ) -> None:
        """Ban (``add``) and unban (``remove``, applied first) requester handles of a contact
        address (protocol.md §4.9): the relay refuses their requests with ``AUTH``.

        Raises:
            LocalProtocolError: more than 64 handles in ``add`` or ``remove``, or not 16 bytes.
            RelayRejected: ``QUOTA`` (more than the relay's ``max_bans``; nothing changed),
                ``MALFORMED`` (not a contact address, or a relay before revision 3),
                ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        banned = id_list(add, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        unbanned = id_list(remove, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        await self._owner_call(cred, OP_BAN, Ok, hdl=banned, unban=unbanned)

    async def mailbox_info(self, cred: MailboxCredential) -> MailboxInfo:
        """Everything the relay keeps for the mailbox (protocol.md §4.10).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay
                before revision 3).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        return await self._owner_call(cred, OP_INFO, MailboxInfo)

    async def report(
        self,
        cred: MailboxCredential,
        *,
        msg: bytes,
        fk: bytes,
        fc: bytes,
        ft: bytes,
        fx: bytes,
        sender: bytes,
        recipient: bytes,
        attachments: Sequence[bytes] = (),
        reason: str,
        note: str | None = None,
    ) -> bytes:
        """Report an abusive message delivered to ``cred``'s mailbox (protocol.md §4.11).

        The relay verifies its franking tag and the sender's commitment, then stores the
        report for its moderators. Reporting reveals the message, its attachments and both
        identity keys to the relay operator.

        Args:
            cred: the mailbox the envelope was delivered to (only its owner may report it).
            msg: the exact content bytes under the commitment (``MessageReceived.plaintext``).
            fk: the message's franking key (``MessageReceived.franking_key``).
            fc: the franking commitment delivered with the envelope.
            ft: the relay's franking tag delivered with it (``StoredEnvelope.ft``).
            fx: the tag's context delivered with it (``StoredEnvelope.fx``).
            sender: the sender's 32-byte identity key.
            recipient: our 32-byte identity key (the recipient under the commitment).
            attachments: the attachment plaintexts, in the order of their hashes.
            reason: one of ``clientlib.wire.REPORT_REASONS``.
            note: an optional note for the moderator (at most 1,000 bytes of UTF-8).

        Returns:
            The 16-byte report id (ask its outcome with :meth:`report_status`).

        Raises:
            LocalProtocolError: a field has the wrong length or the report is too large.
            RelayRejected: ``FRANKING`` (the tag, its context or the commitment does not
                verify, or the envelope was delivered to another mailbox), ``EXPIRED`` (the
                relay's franking key is past its report window), ``DUPLICATE`` (reported
                before), ``QUOTA`` (this mailbox's daily report allowance is used up),
                ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay before
                revision 4).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        fields = report_fields(
            msg=msg,
            fk=fk,
            fc=fc,
            ft=ft,
            fx=fx,
            sender=sender,
            recipient=recipient,
            attachments=attachments,
            reason=reason,
            note=note,
        )
        accepted = await self._owner_call(cred, OP_REPORT, ReportAccepted, **fields)
        return accepted.report

    async def report_status(self, cred: MailboxCredential, report_id: bytes) -> ReportStatus:
        """The state of a report this mailbox filed: ``status`` (``open``/``resolved``),
        ``action`` (``none``/``revoke``/``suspend`` once resolved) and ``ts``.

        Raises:
            LocalProtocolError: ``report_id`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key, or no report with that id
                filed by this mailbox), ``MALFORMED`` (a relay before revision 4).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        check_report_id(report_id)
        return await self._owner_call(cred, OP_REPORT_STATUS, ReportStatus, report=report_id)

    async def boundaries(self, sid: bytes) -> Boundaries:
        """The boundaries of the contact address with send id ``sid`` (protocol.md §4.9).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address),
                ``MALFORMED`` (a relay before revision 3).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(sid, "sid")

        async def run(conn: _Connection) -> Boundaries:
            reply = await self._call(conn, lambda i: GetBoundaries(id=i, sid=sid))
            return self._expect(reply, BoundariesIssued).bnd

        return await self._with_connection(run)

    async def pow_challenge(self, sid: bytes) -> PowIssued:
        """A single-use proof-of-work nonce for a request to the contact address ``sid``.

        Solve it with :func:`clientlib.wire.solve` (``reply.bits`` leading zero bits, in a
        thread) before ``reply.exp`` and pass ``pow=(reply.nonce, counter)`` to
        :meth:`deposit`. With ``reply.bits == 0`` the address asks for no work.

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address), ``LIMIT``
                (this connection's per-minute allowance of requests), ``MALFORMED`` (a relay
                before revision 3).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(sid, "sid")

        async def run(conn: _Connection) -> PowIssued:
            reply = await self._call(conn, lambda i: GetPow(id=i, sid=sid))
            return self._expect(reply, PowIssued)

        return await self._with_connection(run)

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
                self._expect(reply, Ok)

        await self._with_connection(run)

    async def put_prekeys(
        self,
        cred: MailboxCredential,
        *,
        static: bytes | None = None,
        one_time: Sequence[bytes] = (),
        replace: bool = False,
    ) -> tuple[int, bool]:
        """Upload prekey material of ``cred``'s mailbox (protocol.md §4.7), or ask its status.

        The relay stores the blobs as they are (encrypt them first: it must learn nothing).
        ``one_time`` is sent in ``keys`` commands of at most 32 items; the first one carries
        ``static`` (replacing the stored static part) and ``replace`` (deleting every stored
        one-time item first). Each command is applied atomically; if a later one fails, the
        earlier ones stay applied. With nothing to upload this is a status query.

        Returns:
            ``(left, has_static)`` from the last reply: one-time items the relay now holds,
            and whether it holds a static part.

        Raises:
            LocalProtocolError: a blob is empty or too large, or a command exceeds the
                relay's frame limit.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``QUOTA`` (the relay would
                hold more one-time items than it allows; that command changed nothing),
                ``MALFORMED`` (a relay that predates prekey hosting).
            TransportError: the relay could not be reached in time or the socket dropped.
        """
        _check_id(cred.rid, "rid")
        result = (0, False)
        for chunk_static, otk, chunk_replace in prekey_chunks(static, one_time, replace):

            async def run(
                conn: _Connection,
                chunk_static: bytes | None = chunk_static,
                otk: tuple[bytes, ...] | None = otk,
                chunk_replace: int | None = chunk_replace,
            ) -> tuple[int, bool]:
                reply = await self._owner_command(
                    conn,
                    OP_PREKEYS,
                    cred.rid,
                    cred.sign,
                    static=chunk_static,
                    otk=otk,
                    replace=chunk_replace,
                )
                stored = self._expect(reply, PreKeysStored)
                return stored.left, bool(stored.static)

            result = await self._with_connection(run)
        return result

    async def fetch_bundle(self, sid: bytes) -> tuple[bytes, bytes | None]:
        """Fetch the prekey bundle of the mailbox with send id ``sid``.

        The relay hands out one one-time item at most once: the item returned is consumed.

        Returns:
            ``(static, one_time)``; ``one_time`` is None when the mailbox has none left or
            its hourly allowance is used up (fall back to the last-resort key).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or it has uploaded no static part),
                ``MALFORMED`` (a relay that predates prekey hosting).
            TransportError: the relay could not be reached in time or the socket dropped (a
                retry may consume another item).
        """
        _check_id(sid, "sid")

        async def run(conn: _Connection) -> tuple[bytes, bytes | None]:
            reply = await self._call(conn, lambda i: FetchBundle(id=i, sid=sid))
            issued = self._expect(reply, BundleIssued)
            return issued.static, issued.otk

        return await self._with_connection(run)

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

    async def _call(self, conn: _Connection, build: Callable[[int], ClientFrame]) -> RelayFrame:
        request_id = self._next_id(conn)
        data = build(request_id).encode(conn.version)
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

    async def _owner_call(
        self, cred: MailboxCredential, op: str, reply_type: type[_F], **fields: Any
    ) -> _F:
        """Run one owner command on ``cred``'s mailbox and expect a ``reply_type`` reply."""

        async def run(conn: _Connection) -> _F:
            reply = await self._owner_command(conn, op, cred.rid, cred.sign, **fields)
            return self._expect(reply, reply_type)

        return await self._with_connection(run)

    async def _owner_command(
        self, conn: _Connection, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        """Get a challenge, then send the signed owner command (``fields``: its other fields)."""
        chal = self._expect(
            await self._call(conn, lambda i: RequestChallenge(id=i, op=op, rid=rid)),
            ChallengeIssued,
        )
        cmd = OwnerCommand(op=op, nonce=chal.nonce, rid=rid, **fields).encode(conn.version)
        sig = sign(cmd)
        return await self._call(conn, lambda i: SignedOwnerCommand(id=i, cmd=cmd, sig=sig))

    async def _subscribe_on(self, conn: _Connection, cred: MailboxCredential) -> None:
        self._expect(await self._owner_command(conn, OP_SUBSCRIBE, cred.rid, cred.sign), Ok)

    @staticmethod
    def _expect(reply: RelayFrame, cls: type[_F]) -> _F:
        if not isinstance(reply, cls):
            raise TransportError("the relay sent an unexpected reply")
        return reply

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


def _check_id(value: bytes, name: str) -> None:
    if len(value) != MAILBOX_ID_SIZE:
        raise LocalProtocolError(f"{name} must be {MAILBOX_ID_SIZE} bytes")
