"""Mailbox logic: owner commands, deposit, fetch, ack, prekey hosting, consent, relay
franking tags and reports (protocol.md §4-§5).

No aiohttp here: handlers parse and authenticate, this module decides, the store keeps the
data. Time and randomness are injected so tests can drive expiry deterministically.

Owner commands go through one entry point, :meth:`MailboxService.execute`, on every transport:
it authenticates the command (protocol.md §4.3), decodes it into its operation's type, and runs
the handler :data:`OWNER_OPERATIONS` names for that type, after checking that the transport the
command arrived on may carry it (``sub`` needs a socket, ``fetch`` is HTTP-only) and
refreshing the mailbox's idle timer where the table says so. The transport only supplies an
:class:`OwnerChannel` (where its challenges live, and, for a socket, its subscriptions).

Storage errors are mapped to wire errors once, at this service's public coroutines
(:func:`relay.errors.storage_boundary`), not around each store call; that boundary also
bounds how long they wait for storage (``storage_timeout_s``). While storage fails or fills,
see :mod:`relay.degraded`.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from clientlib.errors import WireError
from clientlib.wire.client_frames import Fanout
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import (
    AnyOwnerOp,
    BoundariesIssued,
    BundleIssued,
    CreateMailbox,
    DeleteMailbox,
    Deposit,
    EnvelopesFetched,
    FetchBundle,
    FetchEnvelopes,
    FileReport,
    GetBoundaries,
    GetInfo,
    GetModerationKeys,
    GetPow,
    GetReportStatus,
    MailboxCreated,
    MailboxInfo,
    ModerationKeys,
    ModeratorKeyEntry,
    Ok,
    OwnerOp,
    PowIssued,
    PreKeysStored,
    PutPreKeys,
    Recall,
    RelayFrame,
    ReportAccepted,
    SetBans,
    SetBoundaries,
    SetCapabilities,
    SignedOwnerCommand,
    StoredEnvelope,
    Subscribe,
    decode_owner_op,
)
from clientlib.wire.limits import (
    CHALLENGE_SIZE,
    ENVELOPE_BUCKETS,
    FLAG_ONLINE_ONLY,
    KIND_ADDRESS,
    KIND_OPEN,
    KIND_PAIRWISE,
    KNOWN_FLAGS,
    MAILBOX_ID_SIZE,
    MAX_FETCH_BYTES,
    POW_NONCE_SIZE,
)
from clientlib.wire.owner import DelegatedCapabilities, RegisterPush, UnregisterPush
from clientlib.wire.pow import (
    attachment_capability_hash,
    capability_hash,
    leading_zero_bits,
    pow_digest,
    recall_hash,
)
from clientlib.wire.relay_frames import FanoutDone
from relay.auth import (
    bytes_eq,
    challenge_binding,
    check_challenge_request,
    pow_binding,
    validate_owner_key,
    verify_owner_command,
)
from relay.blobs import BlobService, BlobStore, FilesystemBlobStore
from relay.config import RelayConfig
from relay.degraded import (
    FREEING_OPS,
    WHILE_FULL,
    bounded,
    publish_after_storing,
    refuse_when_full,
)
from relay.errors import RelayError, from_wire_error, storage_boundary
from relay.fanout import delegated_caps, fan_out
from relay.franking import FrankingKeyring, build_context, relay_tag, source_for
from relay.metrics import Metrics, timed
from relay.moderation import ModerationService
from relay.push import PushDispatcher, check_push_url
from relay.storage.base import (
    SECONDS_PER_DAY,
    IdCollision,
    MailboxRecord,
    RelayStamp,
    StampMismatch,
    WakeCallback,
    WakeEvent,
    Wakeups,
)
from relay.storage.base import EnvelopeStore as Store
from relay.storage.records import online_wake

__all__ = [
    "BOTH",
    "DEFAULT_FETCH",
    "HTTP_ONLY",
    "OWNER_OPERATIONS",
    "SOCKET_ONLY",
    "ChallengeTaker",
    "MailboxService",
    "OpRule",
    "OwnerChannel",
    "PublicRequest",
    "Touch",
    "Transport",
    "WakeCallback",
    "WakeEvent",
    "size_bucket",
]

DEFAULT_FETCH = 64
_BUCKETS = frozenset(ENVELOPE_BUCKETS)

#: Consumes a challenge nonce; returns its binding if it was issued, unused and unexpired.
ChallengeTaker = Callable[[bytes, int], Awaitable[bytes | None]]

#: The requests anyone may send (no owner signature): answered by :meth:`MailboxService.answer`.
PublicRequest = FetchBundle | GetBoundaries | GetPow | GetModerationKeys


def size_bucket(length: int) -> int:
    """The envelope bucket of a length (for logs: never log an exact size)."""
    for bucket in ENVELOPE_BUCKETS:
        if length <= bucket:
            return bucket
    return ENVELOPE_BUCKETS[-1]


class Transport(enum.Enum):
    """What an owner command arrived on."""

    SOCKET = "ws"
    HTTP = "http"


SOCKET_ONLY = frozenset({Transport.SOCKET})
HTTP_ONLY = frozenset({Transport.HTTP})
BOTH = frozenset(Transport)


class Touch(enum.Enum):
    """When an owner operation refreshes its mailbox's idle timer (owner activity)."""

    NEVER = "never"
    BEFORE = "before"  # so the operation sees today's activity (info) or starts from it (sub)
    AFTER = "after"  # once the operation succeeded


class OwnerChannel(Protocol):
    """What :meth:`MailboxService.execute` needs from the transport a command arrived on."""

    @property
    def kind(self) -> Transport: ...

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Consume a challenge this transport issued (its binding, or None)."""

    def can_subscribe(self, rid: bytes) -> bool:
        """Whether a subscription to ``rid`` fits (sockets only)."""

    def subscribe(self, rid: bytes) -> None:
        """Start pushing ``rid`` on this socket (sockets only)."""

    def unsubscribe(self, rid: bytes) -> None:
        """Stop pushing ``rid`` here, if it was (before the mailbox is deleted)."""


_Op = TypeVar("_Op", bound=OwnerOp)
_Handler = Callable[["MailboxService", int, _Op, OwnerChannel], Awaitable[RelayFrame]]


@dataclass(frozen=True, slots=True)
class OpRule:
    """One row of :data:`OWNER_OPERATIONS`: the handler of an owner operation, the transports
    that may carry it (anything else is ``MALFORMED``, after authentication) and when it
    refreshes the mailbox's idle timer."""

    handler: _Handler[Any]
    transports: frozenset[Transport]
    touch: Touch


class _HttpChannel:
    """The :class:`OwnerChannel` of HTTP: challenges kept by the store, no subscriptions."""

    __slots__ = ("_service",)

    def __init__(self, service: MailboxService) -> None:
        self._service = service

    @property
    def kind(self) -> Transport:
        return Transport.HTTP

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        return await self._service.take_http_challenge(nonce, now)

    def can_subscribe(self, rid: bytes) -> bool:
        return False

    def subscribe(self, rid: bytes) -> None:  # pragma: no cover - sub is SOCKET_ONLY
        raise RelayError(ErrorCode.MALFORMED)

    def unsubscribe(self, rid: bytes) -> None:
        return None


class MailboxService:
    """Everything the relay does with mailboxes, independent of the transport."""

    def __init__(
        self,
        store: Store,
        wakeups: Wakeups,
        config: RelayConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        blob_store: BlobStore | None = None,
    ) -> None:
        self.store = store
        self.wakeups = wakeups
        self.config = config
        self.metrics = metrics
        #: The bound of :func:`~relay.errors.storage_boundary` (None: the store bounds its
        #: own waits, and its coroutines may run without a Task).
        self.storage_bound: float | None = (
            None if getattr(store, "task_free", False) is True else config.storage_timeout_s
        )
        self._clock = clock
        self._rng = rng
        self.keyring = FrankingKeyring(store, config.store_limits(), rng=rng)
        #: Attachment blobs (protocol.md §5.9): files under ``blob_dir`` on every backend;
        #: with them, the attachments revealed for reports filed by hash.
        self.blobs = BlobService(
            blob_store or FilesystemBlobStore(config.resolved_blob_dir()),
            store,
            config,
            metrics,
            now=self.now,
            rng=lambda n: self._rng(n),  # noqa: PLW0108 - tests replace _rng later
        )
        # The moderation service reads this service's clock (tests replace ``_clock``).
        self.moderation = ModerationService(
            store,
            config,
            clock=self.now,
            keyring=self.keyring,
            metrics=metrics,
            reveals=self.blobs.reveals,
        )
        #: The owner channel of every HTTP request.
        self.http: OwnerChannel = _HttpChannel(self)
        #: Subscriptions of this process per mailbox (an owner is connected: no push).
        self._listening: dict[bytes, int] = {}
        #: Push wake-ups (protocol.md §28); started and closed with the app.
        self.push = PushDispatcher(
            config,
            metrics,
            endpoint_of=self._endpoint_of,
            connected=self._listening.__contains__,
            clock=time.monotonic,
        )

    def now(self) -> int:
        """Current time in whole seconds (the coarsest the protocol needs)."""
        return int(self._clock())

    def new_nonce(self) -> bytes:
        return self._rng(CHALLENGE_SIZE)

    @property
    def backend(self) -> str:
        """The storage backend's name (for metrics)."""
        return self.store.backend

    def storage_full(self) -> bool:
        """Whether storage is out of space (``/readyz``, the ``storage_full`` gauge)."""
        return self.store.space_exhausted()

    @storage_boundary
    async def ping(self) -> None:
        """Raises: RelayError ``UNAVAILABLE`` unless storage answers."""
        await self.store.ping()

    @storage_boundary
    async def count_envelopes(self) -> int:
        """Envelopes stored, all mailboxes (for metrics). Raises: RelayError ``UNAVAILABLE``."""
        return await self.store.count_envelopes()

    # --- owner commands -------------------------------------------------------------------

    def accepts(self, op: str, transport: Transport) -> bool:
        """Whether ``transport`` may carry owner operation ``op`` (e.g. to issue a challenge)."""
        rule = _BY_NAME.get(op)
        return rule is not None and transport in rule.transports

    @storage_boundary
    async def issue_http_challenge(self, op: str, rid: bytes | None) -> bytes:
        """Issue a challenge for an HTTP owner command, remembered by the store.

        Raises:
            RelayError: ``MALFORMED`` (an operation HTTP does not carry, or
                :func:`~relay.auth.check_challenge_request`), ``UNAVAILABLE``,
                ``STORAGE_FULL``.
        """
        if not self.accepts(op, Transport.HTTP):
            raise RelayError(ErrorCode.MALFORMED)
        check_challenge_request(op, rid)
        if op not in WHILE_FULL:
            refuse_when_full(self.store)
        nonce = self.new_nonce()
        await self.store.put_challenge(
            nonce,
            challenge_binding(op, rid),
            self.now() + self.config.challenge_ttl_s,
            frees=op in FREEING_OPS,
        )
        return nonce

    @storage_boundary
    async def take_http_challenge(self, nonce: bytes, now: int) -> bytes | None:
        return await self.store.take_challenge(nonce, now)

    @storage_boundary
    async def execute(self, signed: SignedOwnerCommand, *, transport: OwnerChannel) -> RelayFrame:
        """Authenticate and run one owner command (protocol.md §4.3-§4.11).

        Raises:
            RelayError: ``MALFORMED`` (undecodable body, bad key, an operation this transport
                does not carry, or one the mailbox's kind does not have), ``AUTH`` (see
                :meth:`authenticate_owner`; or the mailbox vanished), ``LIMIT``, ``QUOTA``,
                ``FRANKING``, ``EXPIRED``, ``DUPLICATE``, ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        cmd, _ = await self.authenticate_owner(signed, transport.take_challenge)
        rule = OWNER_OPERATIONS[type(cmd)]
        if transport.kind not in rule.transports:
            raise RelayError(ErrorCode.MALFORMED)
        if cmd.OP not in WHILE_FULL:
            refuse_when_full(self.store)
        rid = cmd.target
        if rule.touch is Touch.BEFORE and rid is not None:
            await self.store.touch_mailbox(rid, self.now())
        reply = await rule.handler(self, signed.id, cmd, transport)
        if rule.touch is Touch.AFTER and rid is not None:
            await self.store.touch_mailbox(rid, self.now())
        return reply

    async def authenticate_owner(
        self, signed: SignedOwnerCommand, take_challenge: ChallengeTaker
    ) -> tuple[AnyOwnerOp, MailboxRecord | None]:
        """Check an owner command (protocol.md §4.3, steps 1-4).

        Returns:
            The decoded command and, except for ``create``, the mailbox record.

        Raises:
            RelayError: ``MALFORMED`` (undecodable body, bad key), ``AUTH`` (challenge
                unknown, used, expired or bound elsewhere; unknown mailbox; bad signature).
        """
        try:
            cmd = decode_owner_op(signed.cmd)  # step 1
        except WireError as exc:
            raise from_wire_error(exc) from None
        now = self.now()
        binding = await take_challenge(cmd.nonce, now)  # step 2: consumed whatever follows
        expected = challenge_binding(cmd.OP, cmd.target)
        bound = binding is not None and bytes_eq(binding, expected)
        record: MailboxRecord | None = None
        match cmd:
            case CreateMailbox(key=key) | DelegatedCapabilities(key=key):
                # dcaps is signed by a delegate; its delegation is checked by its handler.
                validate_owner_key(key)  # step 3
                verify_owner_command(key, signed.cmd, signed.sig)  # step 4
            case _:
                record = await self.store.get_mailbox(cmd.rid, now)
                verify_owner_command(
                    record.owner_key if record is not None else None, signed.cmd, signed.sig
                )
        if not bound:
            raise RelayError(ErrorCode.AUTH)
        return cmd, record

    async def _create(
        self, request_id: int, cmd: CreateMailbox, transport: OwnerChannel
    ) -> MailboxCreated:
        """Create a mailbox of ``cmd.kind`` (default open) with ``cmd.bnd`` (addr only)."""
        now = self.now()
        kind = cmd.kind or KIND_OPEN
        for _ in range(4):
            rid, sid = self._rng(MAILBOX_ID_SIZE), self._rng(MAILBOX_ID_SIZE)
            record = MailboxRecord(
                rid=rid,
                sid=sid,
                owner_key=cmd.key,
                created_day=now // SECONDS_PER_DAY,
                kind=kind,
                boundaries=cmd.bnd,
            )
            try:
                await self.store.create_mailbox(record, now)
            except IdCollision:
                continue
            self.metrics.inc("mailboxes_created")
            return MailboxCreated(id=request_id, rid=rid, sid=sid)
        raise RelayError(ErrorCode.INTERNAL)  # four 128-bit collisions: the rng is broken

    async def _subscribe(self, request_id: int, cmd: Subscribe, transport: OwnerChannel) -> Ok:
        """Push the mailbox on this socket (protocol.md §5.3).

        Raises:
            RelayError: ``LIMIT`` (this connection holds its most subscriptions).
        """
        if not transport.can_subscribe(cmd.rid):
            raise RelayError(ErrorCode.LIMIT)
        transport.subscribe(cmd.rid)
        self.metrics.inc("subscriptions")
        return Ok(id=request_id)

    async def _delete(self, request_id: int, cmd: DeleteMailbox, transport: OwnerChannel) -> Ok:
        transport.unsubscribe(cmd.rid)
        await self.store.delete_mailbox(cmd.rid)
        self.metrics.inc("mailboxes_deleted")
        # Deleted whatever the wake-up does (a retry would be AUTH): other processes'
        # subscriptions to it then just find nothing more to push.
        await publish_after_storing(
            self.wakeups, self.metrics, WakeEvent(kind="deleted", rid=cmd.rid)
        )
        return Ok(id=request_id)

    async def _fetch(
        self, request_id: int, cmd: FetchEnvelopes, transport: OwnerChannel
    ) -> EnvelopesFetched:
        """HTTP pull: delete ``cmd.ack`` first, then return the oldest envelopes."""
        if cmd.ack:
            await self.store.ack(cmd.rid, cmd.ack)
            self.metrics.inc("acked", amount=len(cmd.ack))
        limit = DEFAULT_FETCH if cmd.max is None else cmd.max
        envs: list[StoredEnvelope] = []
        more = 0
        if limit:
            envs = await self.store.fetch(cmd.rid, 0, limit + 1, MAX_FETCH_BYTES, self.now())
            if len(envs) > limit:
                envs, more = envs[:limit], 1
            elif sum(len(e.ct) for e in envs) >= MAX_FETCH_BYTES // 2:
                more = 1
        return EnvelopesFetched(id=request_id, envs=tuple(envs), more=more)

    # --- the socket's side of a subscription ----------------------------------------------

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` (on the event loop) for every wake-up of mailbox ``rid``."""
        self.wakeups.listen(rid, callback)
        self._listening[rid] = self._listening.get(rid, 0) + 1

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None:
        self.wakeups.unlisten(rid, callback)
        left = self._listening.get(rid, 0) - 1
        if left > 0:
            self._listening[rid] = left
        else:
            self._listening.pop(rid, None)

    async def _endpoint_of(self, rid: bytes) -> tuple[str, bytes] | None:
        return await self.store.get_push(rid, self.now())

    async def _set_push(
        self, request_id: int, cmd: RegisterPush | UnregisterPush, transport: OwnerChannel
    ) -> Ok:
        """``push`` / ``unpush`` (protocol.md §28.1).

        Raises:
            RelayError: ``MALFORMED`` (an endpoint the relay will not POST to; nothing
                changed), ``AUTH`` (the mailbox vanished), ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        match cmd:
            case RegisterPush(rid=rid, url=url, tok=tok):
                check_push_url(url, allow_private=self.config.push_allow_private)
                await self.store.set_push(rid, (url, tok), self.now())
            case UnregisterPush(rid=rid):
                await self.store.set_push(rid, None, self.now())
        self.metrics.inc("push_endpoints", cmd.OP)
        return Ok(id=request_id)

    def pending(self, rid: bytes, after: int, limit: int) -> Awaitable[list[StoredEnvelope]]:
        """The oldest stored envelopes of ``rid`` after sequence number ``after`` (at most
        ``limit``, and at most ``MAX_FETCH_BYTES`` of them), for a subscription to push.

        The store's own coroutine, with no wrapper of its own (this is the push path), but
        bounded by ``storage_timeout_s`` where the store does not bound itself
        (:func:`relay.degraded.bounded`).

        Raises:
            StorageError: unmapped: the pump tells a storage outage (an error that
                :func:`relay.errors.wire_code` knows) from a bug.
        """
        fetch = self.store.fetch(rid, after, limit, MAX_FETCH_BYTES, self.now())
        return fetch if self.storage_bound is None else bounded(fetch, self.storage_bound)

    @storage_boundary
    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        n = await self.store.ack(rid, seqs)
        self.metrics.inc("acked", amount=n)
        return n

    def check_deposit(self, frame: Deposit) -> None:
        """Checks that need no storage (protocol.md §5.1).

        Raises:
            RelayError: ``TOO_LARGE`` or ``MALFORMED``.
        """
        if len(frame.ct) > self.config.max_envelope_bytes:
            raise RelayError(ErrorCode.TOO_LARGE)
        if len(frame.ct) not in _BUCKETS or frame.flags & ~KNOWN_FLAGS:
            raise RelayError(ErrorCode.MALFORMED)
        if (frame.pow is None) != (frame.pwc is None):
            raise RelayError(ErrorCode.MALFORMED)

    @timed("deposit")
    async def deposit(self, frame: Deposit) -> None:
        """Store (or, if online-only, push) one envelope; returns once durably stored.

        See :meth:`store_deposit`; the wake-up of a stored envelope is then published by
        :meth:`announce`, which never fails the deposit.
        """
        event = await self.store_deposit(frame)
        if event is not None:
            await self.announce(event)

    async def announce(self, event: WakeEvent) -> None:
        """Publish the wake-up of a stored envelope and start its push wake-up; never
        raises a storage failure (:func:`relay.degraded.publish_after_storing`)."""
        await publish_after_storing(self.wakeups, self.metrics, event)
        self.push.wake(event.rid)

    @storage_boundary
    async def store_deposit(self, frame: Deposit) -> WakeEvent | None:
        """Store (or, if online-only, push) one envelope; returns once durably stored, with
        the wake-up to publish (None: online-only, or a duplicate).

        Open and pairwise mailboxes take one storage step (the capability, hashed here, is
        checked inside it). A deposit carrying a handle reads the mailbox's boundaries first:
        to a contact address it is checked against them (size, attachments, then proof of
        work, whose nonce is consumed) before the storing step re-checks them atomically
        with bans and the daily allowance (protocol.md §4.9).

        Raises:
            RelayError: ``TOO_LARGE``, ``MALFORMED``, ``AUTH``, ``BOUNDARY``, ``POW``,
                ``QUOTA``, ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        self.check_deposit(frame)
        now = self.now()
        # Hashed whatever the mailbox: an unknown mailbox costs the same hash (no oracle).
        cap_hash = capability_hash(frame.sid, frame.cap) if frame.cap is not None else None
        att_hash = (
            attachment_capability_hash(frame.sid, frame.cap)
            if frame.cap is not None and frame.att
            else None
        )
        if frame.flags & FLAG_ONLINE_ONLY:
            found = await self.store.resolve_online(frame.sid, cap_hash, now)
            if found is None:
                raise RelayError(ErrorCode.AUTH)
            rid, kind = found
            if kind == KIND_ADDRESS:
                raise RelayError(ErrorCode.MALFORMED)  # contact requests are always stored
            if (
                kind == KIND_PAIRWISE
                and frame.att
                and await self.store.resolve_online(frame.sid, att_hash, now) is None
            ):
                raise RelayError(ErrorCode.BOUNDARY)  # media off for this contact (rev. 8)
            stamp = await self._stamp(frame, kind, cap_hash, None, now)
            await self.wakeups.publish(online_wake(rid, frame, stamp, now))
            self.metrics.inc("deposits", "online")
            return None
        refuse_when_full(self.store)
        handle: bytes | None = None
        pow_bits = 0
        if frame.hdl is not None:
            pow_bits = await self._check_request(frame, now)
            handle = frame.hdl if pow_bits >= 0 else None
        # The kind the stamp is computed for: known for a contact request, else guessed from
        # the capability (a pair mailbox needs one); the store refuses a wrong guess.
        guess = KIND_ADDRESS if handle is not None else KIND_PAIRWISE if cap_hash else KIND_OPEN
        stamp = await self._stamp(frame, guess, cap_hash, handle, now)
        for _ in range(2):
            try:
                outcome = await self.store.deposit(
                    frame.sid,
                    frame.eid,
                    frame.flags,
                    frame.ct,
                    frame.fc,
                    now,
                    cap_hash=cap_hash,
                    handle=handle,
                    attachments=len(frame.att or ()),
                    att_cap_hash=att_hash,
                    pow_bits=max(pow_bits, 0),
                    stamp=stamp,
                    ttl=frame.ttl,
                    rc=frame.rc,
                )
                break
            except StampMismatch as exc:
                # A capability sent to an open mailbox (which ignores it): stamp it as open.
                stamp = await self._stamp(frame, exc.kind, cap_hash, handle, now)
        else:  # pragma: no cover - a mailbox's kind never changes
            raise RelayError(ErrorCode.INTERNAL)
        if outcome.duplicate:
            self.metrics.inc("deposits", "duplicate")
            return None
        self.metrics.inc("deposits", "stored" if handle is None else "request")
        env = StoredEnvelope(
            seq=outcome.seq,
            eid=frame.eid,
            ts=outcome.ts,
            flags=frame.flags,
            ct=frame.ct,
            fc=frame.fc,
            hdl=handle,
            ft=stamp.tag if stamp is not None else None,
            fx=stamp.ctx if stamp is not None else None,
        )
        return WakeEvent(kind="stored", rid=outcome.rid, seq=outcome.seq, env=env, at=time.time())

    @storage_boundary
    async def recall(self, frame: Recall) -> None:
        """Delete an undelivered envelope whose deposit carried ``rc = recall_hash(rs)``
        (protocol.md §5.10, revision 15).

        The caller answers ``ok`` whatever happened: the reply says neither whether the
        mailbox or the envelope exists nor whether it was still undelivered (no delivery
        oracle for the sender, no existence oracle for anyone else). The hash is computed
        for every request, found or not.

        Raises:
            RelayError: ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        rc = recall_hash(frame.rs)
        await self.store.recall(frame.sid, frame.eid, rc, self.now())
        self.metrics.inc("recalls")

    async def fanout(self, frame: Fanout) -> FanoutDone:
        """One envelope to many group mailboxes (protocol.md §26.1; :func:`relay.fanout.fan_out`);
        the wake-ups of the stored entries are published after (:meth:`announce`).

        Raises:
            RelayError: ``TOO_LARGE``, ``MALFORMED``, ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        done, events = await self._fanout(frame)
        for event in events:
            await self.announce(event)
        return done

    @storage_boundary
    async def _fanout(self, frame: Fanout) -> tuple[FanoutDone, list[WakeEvent]]:
        return await fan_out(self, frame)

    async def _delegated_caps(
        self, request_id: int, cmd: DelegatedCapabilities, transport: OwnerChannel
    ) -> Ok:
        return await delegated_caps(self, request_id, cmd)

    async def _stamp(
        self, frame: Deposit, kind: str, cap_hash: bytes | None, handle: bytes | None, now: int
    ) -> RelayStamp | None:
        """The relay franking stamp of a deposit carrying ``fc`` to a mailbox of ``kind``:
        one HMAC under the current franking key (protocol.md §4.11); None without ``fc``.

        Raises:
            RelayError: ``UNAVAILABLE``, ``STORAGE_FULL`` (reading or rotating keys).
        """
        if frame.fc is None:
            return None
        key = await self.keyring.current(now)
        src_kind, src = source_for(kind, cap_hash, handle)
        ctx = build_context(key.kid, now // SECONDS_PER_DAY, frame.sid, src_kind, src)
        return RelayStamp(tag=relay_tag(key.secret, frame.fc, ctx), ctx=ctx, kind=kind)

    async def _check_request(self, frame: Deposit, now: int) -> int:
        """Check a deposit carrying a handle against the boundaries of its mailbox.

        Cheapest first, before anything is stored: size, attachments, then the proof of
        work (hash first, then the nonce is consumed).

        Returns:
            The proof-of-work difficulty verified (0 if none is asked), or -1 if the mailbox
            is not a contact address (the request fields are then ignored).

        Raises:
            RelayError: ``AUTH`` (no such mailbox), ``BOUNDARY``, ``POW``, ``UNAVAILABLE``.
        """
        found = await self.store.get_boundaries(frame.sid, now)
        if found is None:
            raise RelayError(ErrorCode.AUTH)
        kind, bnd = found
        if kind != KIND_ADDRESS or bnd is None:
            return -1
        if len(frame.ct) > bnd.size or (frame.att and not bnd.att):
            self.metrics.inc("requests_refused", "boundary")
            raise RelayError(ErrorCode.BOUNDARY)
        if bnd.pow == 0:
            return 0
        if (
            frame.pow is None
            or frame.pwc is None
            or leading_zero_bits(pow_digest(frame.sid, frame.pow, frame.eid, frame.pwc)) < bnd.pow
        ):
            self.metrics.inc("requests_refused", "pow")
            raise RelayError(ErrorCode.POW)
        binding = await self.store.take_challenge(frame.pow, now)
        if binding is None or not bytes_eq(binding, pow_binding(frame.sid)):
            self.metrics.inc("requests_refused", "pow")
            raise RelayError(ErrorCode.POW)
        return bnd.pow

    @storage_boundary
    async def issue_pow(self, frame: GetPow) -> PowIssued:
        """A single-use proof-of-work nonce for the contact address ``frame.sid``.

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or not a contact address),
                ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        refuse_when_full(self.store)
        now = self.now()
        found = await self.store.get_boundaries(frame.sid, now)
        if found is None or found[1] is None:
            raise RelayError(ErrorCode.AUTH)
        nonce = self._rng(POW_NONCE_SIZE)
        expires = now + self.config.pow_ttl_s
        if found[1].pow > 0:
            # Only remembered when work is asked for: an unused nonce would otherwise keep
            # the address's send id in storage after the address is deleted.
            await self.store.put_challenge(nonce, pow_binding(frame.sid), expires)
        self.metrics.inc("pow_issued")
        return PowIssued(id=frame.id, nonce=nonce, bits=found[1].pow, exp=expires)

    @storage_boundary
    async def boundaries(self, frame: GetBoundaries) -> BoundariesIssued:
        """The boundaries of the contact address ``frame.sid``.

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or not a contact address),
                ``UNAVAILABLE``.
        """
        found = await self.store.get_boundaries(frame.sid, self.now())
        if found is None or found[1] is None:
            raise RelayError(ErrorCode.AUTH)
        return BoundariesIssued(id=frame.id, bnd=found[1])

    async def _consent(
        self,
        request_id: int,
        cmd: SetCapabilities | SetBans | SetBoundaries,
        transport: OwnerChannel,
    ) -> Ok:
        """``caps``, ``ban`` or ``bnd`` (protocol.md §4.8, §4.9).

        Raises:
            RelayError: ``MALFORMED`` (an operation the mailbox's kind does not have),
                ``AUTH`` (the mailbox vanished), ``QUOTA``, ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now, cfg = self.now(), self.config
        match cmd:
            case SetCapabilities(rid=rid, add=add, remove=remove):
                await self.store.set_caps(rid, add or (), remove or (), cfg.max_caps, now)
            case SetBans(rid=rid, hdl=hdl, unban=unban):
                await self.store.set_bans(rid, hdl or (), unban or (), cfg.max_bans, now)
            case SetBoundaries(rid=rid, bnd=bnd):
                await self.store.set_boundaries(rid, bnd, now)
        self.metrics.inc("owner_consent", cmd.OP)
        return Ok(id=request_id)

    async def _report(
        self, request_id: int, cmd: FileReport | GetReportStatus, transport: OwnerChannel
    ) -> RelayFrame:
        """``report`` (verify, then store; protocol.md §4.11) or ``rstat``."""
        record = await self.store.get_mailbox(cmd.rid, self.now())
        if record is None:
            raise RelayError(ErrorCode.AUTH)
        match cmd:
            case FileReport():
                report = await self.moderation.file_report(cmd, record)
                return ReportAccepted(id=request_id, report=report)
            case GetReportStatus():
                return await self.moderation.report_status(request_id, cmd, record)

    async def _get_info(
        self, request_id: int, cmd: GetInfo, transport: OwnerChannel
    ) -> MailboxInfo:
        return await self._info(request_id, cmd.rid, self.now())

    async def _info(self, request_id: int, rid: bytes, now: int) -> MailboxInfo:
        snap = await self.store.mailbox_info(rid, now)
        if snap is None:
            raise RelayError(ErrorCode.AUTH)
        rec = snap.record
        today = now // SECONDS_PER_DAY
        oldest = snap.oldest_ts
        if oldest is not None:
            oldest -= oldest % SECONDS_PER_DAY  # day-coarse, like every other time of §8
        return MailboxInfo(
            id=request_id,
            kind=rec.kind,
            sid=rec.sid,
            owner_key=rec.owner_key,
            created_day=rec.created_day,
            active_day=snap.active_day,
            last_seq=snap.last_seq,
            envelopes=snap.envelopes,
            stored_bytes=snap.stored_bytes,
            oldest_ts=oldest,
            dedupe_records=snap.dedupe_records,
            prekeys_left=snap.prekeys_left,
            prekey_static=int(snap.prekey_static),
            prekey_hour=snap.prekey_hour,
            prekeys_handed=snap.prekeys_handed,
            caps=snap.caps,
            bnd=rec.boundaries,
            bans=snap.bans,
            requests_day=snap.requests_day,
            requests=snap.requests,
            requests_today=snap.requests if snap.requests_day == today else 0,
            suspended=1 if snap.suspended else None,
        )

    async def _put_prekeys(
        self, request_id: int, cmd: PutPreKeys, transport: OwnerChannel
    ) -> PreKeysStored:
        """Apply an authenticated ``keys`` command (protocol.md §4.7), or answer its status.

        Raises:
            RelayError: ``AUTH`` (the mailbox vanished), ``QUOTA`` (too many one-time items;
                nothing changed), ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now = self.now()
        if cmd.is_query:
            left, has_static = await self.store.prekey_count(cmd.rid, now)
        else:
            refuse_when_full(self.store)
            left, has_static = await self.store.put_prekeys(
                cmd.rid,
                cmd.static,
                cmd.otk or (),
                bool(cmd.replace),
                self.config.prekey_max_items,
                now,
            )
            self.metrics.inc("prekey_uploads")
        return PreKeysStored(id=request_id, left=left, static=int(has_static))

    # --- public requests (no owner signature) ---------------------------------------------

    async def answer(self, frame: PublicRequest) -> RelayFrame:
        """Answer a bundle, boundaries, proof-of-work or moderator-keys request.

        Raises:
            RelayError: see :meth:`fetch_bundle`, :meth:`boundaries`, :meth:`issue_pow`,
                :meth:`moderation_keys`.
        """
        match frame:
            case FetchBundle():
                return await self.fetch_bundle(frame)
            case GetBoundaries():
                return await self.boundaries(frame)
            case GetPow():
                return await self.issue_pow(frame)
            case GetModerationKeys():
                return await self.moderation_keys(frame)

    @storage_boundary
    async def moderation_keys(self, frame: GetModerationKeys) -> ModerationKeys:
        """The relay's moderator keys ``(kid, M_kid)``: current first, then each retired key
        inside its report window (protocol.md §4.11, §15.5.3; revision 5). Public.

        Raises:
            RelayError: ``UNAVAILABLE``, ``STORAGE_FULL`` (reading or rotating keys).
        """
        keys = await self.keyring.moderator_keys(self.now())
        entries = tuple(ModeratorKeyEntry(kid=kid, key=key) for kid, key in keys)
        return ModerationKeys(id=frame.id, keys=entries)

    @storage_boundary
    async def fetch_bundle(self, frame: FetchBundle) -> BundleIssued:
        """Hand out the prekey bundle of send id ``frame.sid``, consuming one one-time item
        if any is left and the mailbox's hourly allowance is not used up (protocol.md §4.7).

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or it holds no static part),
                ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now = self.now()
        bundle = await self.store.take_prekeys(frame.sid, now, self.config.prekey_fetches_per_hour)
        if bundle is None:
            raise RelayError(ErrorCode.AUTH)
        found = await self.store.get_boundaries(frame.sid, now)
        static, item = bundle
        self.metrics.inc("bundles_issued", "static_only" if item is None else "one_time")
        return BundleIssued(
            id=frame.id, static=static, otk=item, bnd=found[1] if found is not None else None
        )

    async def purge_expired(self) -> int:
        """Delete what expired; returns how many envelopes went.

        Raises:
            StorageError: unmapped (not a request boundary: the purge loop logs an outage
                and carries on, and logs anything else as the bug it is).
        """
        return await self.store.purge_expired(self.now())


def _rule(
    cls: type[_Op], handler: _Handler[_Op], transports: frozenset[Transport], touch: Touch
) -> tuple[type[OwnerOp], OpRule]:
    return cls, OpRule(handler, transports, touch)


#: Every owner operation: its handler, the transports that carry it, when it is owner
#: activity. The one dispatch of owner commands (protocol.md §4.3-§4.11).
OWNER_OPERATIONS: Mapping[type[OwnerOp], OpRule] = dict(
    (
        _rule(CreateMailbox, MailboxService._create, BOTH, Touch.NEVER),
        _rule(Subscribe, MailboxService._subscribe, SOCKET_ONLY, Touch.BEFORE),
        _rule(DeleteMailbox, MailboxService._delete, BOTH, Touch.NEVER),
        _rule(FetchEnvelopes, MailboxService._fetch, HTTP_ONLY, Touch.AFTER),
        _rule(PutPreKeys, MailboxService._put_prekeys, BOTH, Touch.AFTER),
        _rule(SetCapabilities, MailboxService._consent, BOTH, Touch.AFTER),
        _rule(SetBans, MailboxService._consent, BOTH, Touch.AFTER),
        _rule(SetBoundaries, MailboxService._consent, BOTH, Touch.AFTER),
        _rule(GetInfo, MailboxService._get_info, BOTH, Touch.BEFORE),
        _rule(FileReport, MailboxService._report, BOTH, Touch.AFTER),
        _rule(GetReportStatus, MailboxService._report, BOTH, Touch.AFTER),
        _rule(DelegatedCapabilities, MailboxService._delegated_caps, BOTH, Touch.NEVER),
        _rule(RegisterPush, MailboxService._set_push, BOTH, Touch.AFTER),
        _rule(UnregisterPush, MailboxService._set_push, BOTH, Touch.AFTER),
    )
)
_BY_NAME: Mapping[str, OpRule] = {cls.OP: rule for cls, rule in OWNER_OPERATIONS.items()}
