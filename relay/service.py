"""Mailbox logic: owner commands, deposit, fetch, ack, prekey hosting, consent, relay
franking tags and reports (protocol.md §4-§5).

No aiohttp here: handlers parse and authenticate, this module decides, the store keeps the
data. Time and randomness are injected so tests can drive expiry deterministically.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence

from clientlib.errors import WireError
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import (
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_INFO,
    OP_PREKEYS,
    OP_REPORT,
    OP_REPORT_STATUS,
    BoundariesIssued,
    BundleIssued,
    Deposit,
    EnvelopesFetched,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    MailboxCreated,
    MailboxInfo,
    ModerationKeys,
    ModeratorKeyEntry,
    Ok,
    OwnerCommand,
    PowIssued,
    PreKeysStored,
    RelayFrame,
    ReportAccepted,
    SignedOwnerCommand,
    StoredEnvelope,
    decode_owner_command,
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
from clientlib.wire.pow import capability_hash, leading_zero_bits, pow_digest
from relay.auth import bytes_eq, validate_owner_key, verify_owner_command
from relay.config import RelayConfig
from relay.errors import RelayError, from_wire_error, storage_errors
from relay.franking import FrankingKeyring, build_context, relay_tag, source_for
from relay.metrics import Metrics, timed
from relay.moderation import ModerationService
from relay.storage.base import (
    SECONDS_PER_DAY,
    IdCollision,
    MailboxRecord,
    RelayStamp,
    StampMismatch,
    WakeEvent,
    Wakeups,
)
from relay.storage.base import EnvelopeStore as Store

__all__ = [
    "DEFAULT_FETCH",
    "ChallengeTaker",
    "MailboxService",
    "challenge_binding",
    "pow_binding",
    "size_bucket",
]

DEFAULT_FETCH = 64
_BUCKETS = frozenset(ENVELOPE_BUCKETS)

#: Consumes a challenge nonce; returns its binding if it was issued, unused and unexpired.
ChallengeTaker = Callable[[bytes, int], Awaitable[bytes | None]]


def challenge_binding(op: str, rid: bytes | None) -> bytes:
    """The value a challenge is bound to: ``op || 0x00 || SHA-256(rid)`` (empty for create).

    Hashed so that pending challenges (HTTP challenges are kept in storage for up to
    ``challenge_ttl_s``) never hold a mailbox id: a deleted mailbox leaves no trace there.
    """
    return op.encode() + b"\x00" + (hashlib.sha256(rid).digest() if rid else b"")


def check_challenge_request(op: str, rid: bytes | None) -> None:
    """``chal`` names a mailbox exactly when ``op`` is not ``create`` (protocol.md §3.1).

    Raises:
        RelayError: ``MALFORMED`` (checked at ``chal``, not left to fail at ``own``).
    """
    if (rid is None) != (op == OP_CREATE):
        raise RelayError(ErrorCode.MALFORMED)


def pow_binding(sid: bytes) -> bytes:
    """The value a proof-of-work nonce is bound to: ``"pow" || 0x00 || SHA-256(sid)``.

    No owner operation is named ``pow``, so no owner challenge has this binding.
    """
    return b"pow\x00" + hashlib.sha256(sid).digest()


def size_bucket(length: int) -> int:
    """The envelope bucket of a length (for logs: never log an exact size)."""
    for bucket in ENVELOPE_BUCKETS:
        if length <= bucket:
            return bucket
    return ENVELOPE_BUCKETS[-1]


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
    ) -> None:
        self.store = store
        self.wakeups = wakeups
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._rng = rng
        self.keyring = FrankingKeyring(store, config.store_limits(), rng=rng)
        # The moderation service reads this service's clock (tests replace ``_clock``).
        self.moderation = ModerationService(
            store, config, clock=self.now, keyring=self.keyring, metrics=metrics
        )

    def now(self) -> int:
        """Current time in whole seconds (the coarsest the protocol needs)."""
        return int(self._clock())

    def new_nonce(self) -> bytes:
        return self._rng(CHALLENGE_SIZE)

    async def issue_http_challenge(self, op: str, rid: bytes | None) -> bytes:
        """Issue a challenge for an HTTP owner command, remembered by the store.

        Raises:
            RelayError: ``MALFORMED`` (:func:`check_challenge_request`), ``UNAVAILABLE``.
        """
        check_challenge_request(op, rid)
        nonce = self.new_nonce()
        with storage_errors():
            await self.store.put_challenge(
                nonce, challenge_binding(op, rid), self.now() + self.config.challenge_ttl_s
            )
        return nonce

    async def take_http_challenge(self, nonce: bytes, now: int) -> bytes | None:
        with storage_errors():
            return await self.store.take_challenge(nonce, now)

    async def authenticate_owner(
        self, signed: SignedOwnerCommand, take_challenge: ChallengeTaker
    ) -> tuple[OwnerCommand, MailboxRecord | None]:
        """Check an owner command (protocol.md §4.3, steps 1-4).

        Returns:
            The decoded command and, except for ``create``, the mailbox record.

        Raises:
            RelayError: ``MALFORMED`` (undecodable body, bad key), ``AUTH`` (challenge
                unknown, used, expired or bound elsewhere; unknown mailbox; bad signature).
        """
        try:
            cmd = decode_owner_command(signed.cmd)  # step 1
        except WireError as exc:
            raise from_wire_error(exc) from None
        now = self.now()
        binding = await take_challenge(cmd.nonce, now)  # step 2: consumed whatever follows
        expected = challenge_binding(cmd.op, cmd.rid)
        bound = binding is not None and bytes_eq(binding, expected)
        if cmd.op == OP_CREATE:
            assert cmd.key is not None
            validate_owner_key(cmd.key)  # step 3
            verify_owner_command(cmd.key, signed.cmd, signed.sig)  # step 4
            record = None
        else:
            assert cmd.rid is not None
            with storage_errors():
                record = await self.store.get_mailbox(cmd.rid, now)
            verify_owner_command(
                record.owner_key if record is not None else None, signed.cmd, signed.sig
            )
        if not bound:
            raise RelayError(ErrorCode.AUTH)
        return cmd, record

    async def create_mailbox(
        self, request_id: int, key: bytes, cmd: OwnerCommand | None = None
    ) -> MailboxCreated:
        """Create a mailbox of ``cmd.kind`` (default open) with ``cmd.bnd`` (addr only)."""
        now = self.now()
        kind = (cmd.kind if cmd is not None else None) or KIND_OPEN
        bnd = cmd.bnd if cmd is not None else None
        for _ in range(4):
            rid, sid = self._rng(MAILBOX_ID_SIZE), self._rng(MAILBOX_ID_SIZE)
            record = MailboxRecord(
                rid=rid,
                sid=sid,
                owner_key=key,
                created_day=now // SECONDS_PER_DAY,
                kind=kind,
                boundaries=bnd,
            )
            try:
                with storage_errors():
                    await self.store.create_mailbox(record, now)
            except IdCollision:
                continue
            self.metrics.inc("mailboxes_created")
            return MailboxCreated(id=request_id, rid=rid, sid=sid)
        raise RelayError(ErrorCode.INTERNAL)  # four 128-bit collisions: the rng is broken

    async def delete_mailbox(self, rid: bytes) -> None:
        with storage_errors():
            await self.store.delete_mailbox(rid)
        self.metrics.inc("mailboxes_deleted")
        await self.wakeups.publish(WakeEvent(kind="deleted", rid=rid))

    async def touch(self, rid: bytes) -> None:
        with storage_errors():
            await self.store.touch_mailbox(rid, self.now())

    async def fetch(self, request_id: int, cmd: OwnerCommand) -> EnvelopesFetched:
        """HTTP pull: delete ``cmd.ack`` first, then return the oldest envelopes."""
        assert cmd.rid is not None
        with storage_errors():
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
            await self.store.touch_mailbox(cmd.rid, self.now())
        return EnvelopesFetched(id=request_id, envs=tuple(envs), more=more)

    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        with storage_errors():
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
        if frame.flags & FLAG_ONLINE_ONLY:
            with storage_errors():
                found = await self.store.resolve_online(frame.sid, cap_hash, now)
            if found is None:
                raise RelayError(ErrorCode.AUTH)
            rid, kind = found
            if kind == KIND_ADDRESS:
                raise RelayError(ErrorCode.MALFORMED)  # contact requests are always stored
            stamp = await self._stamp(frame, kind, cap_hash, None, now)
            env = StoredEnvelope(
                seq=0,
                eid=frame.eid,
                ts=now,
                flags=frame.flags,
                ct=frame.ct,
                fc=frame.fc,
                ft=stamp.tag if stamp is not None else None,
                fx=stamp.ctx if stamp is not None else None,
            )
            await self.wakeups.publish(WakeEvent(kind="online", rid=rid, env=env))
            self.metrics.inc("deposits", "online")
            return
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
                with storage_errors():
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
                        pow_bits=max(pow_bits, 0),
                        stamp=stamp,
                    )
                break
            except StampMismatch as exc:
                # A capability sent to an open mailbox (which ignores it): stamp it as open.
                stamp = await self._stamp(frame, exc.kind, cap_hash, handle, now)
        else:  # pragma: no cover - a mailbox's kind never changes
            raise RelayError(ErrorCode.INTERNAL)
        if outcome.duplicate:
            self.metrics.inc("deposits", "duplicate")
            return
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
        await self.wakeups.publish(
            WakeEvent(kind="stored", rid=outcome.rid, seq=outcome.seq, env=env)
        )

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
        with storage_errors():
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
        with storage_errors():
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
        with storage_errors():
            binding = await self.store.take_challenge(frame.pow, now)
        if binding is None or not bytes_eq(binding, pow_binding(frame.sid)):
            self.metrics.inc("requests_refused", "pow")
            raise RelayError(ErrorCode.POW)
        return bnd.pow

    async def issue_pow(self, frame: GetPow) -> PowIssued:
        """A single-use proof-of-work nonce for the contact address ``frame.sid``.

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or not a contact address),
                ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now = self.now()
        with storage_errors():
            found = await self.store.get_boundaries(frame.sid, now)
        if found is None or found[1] is None:
            raise RelayError(ErrorCode.AUTH)
        nonce = self._rng(POW_NONCE_SIZE)
        expires = now + self.config.pow_ttl_s
        if found[1].pow > 0:
            # Only remembered when work is asked for: an unused nonce would otherwise keep
            # the address's send id in storage after the address is deleted.
            with storage_errors():
                await self.store.put_challenge(nonce, pow_binding(frame.sid), expires)
        self.metrics.inc("pow_issued")
        return PowIssued(id=frame.id, nonce=nonce, bits=found[1].pow, exp=expires)

    async def boundaries(self, frame: GetBoundaries) -> BoundariesIssued:
        """The boundaries of the contact address ``frame.sid``.

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or not a contact address),
                ``UNAVAILABLE``.
        """
        with storage_errors():
            found = await self.store.get_boundaries(frame.sid, self.now())
        if found is None or found[1] is None:
            raise RelayError(ErrorCode.AUTH)
        return BoundariesIssued(id=frame.id, bnd=found[1])

    async def owner_operation(self, request_id: int, cmd: OwnerCommand) -> RelayFrame:
        """Execute an authenticated ``keys``, ``caps``, ``bnd``, ``ban``, ``info``, ``report``
        or ``rstat`` command (the same on every transport). Each is owner activity (refreshes
        the idle timer).

        Raises:
            RelayError: ``MALFORMED`` (another operation, or one the mailbox's kind does not
                have), ``AUTH`` (the mailbox vanished), ``QUOTA``, ``UNAVAILABLE``,
                ``STORAGE_FULL``.
        """
        assert cmd.rid is not None
        rid, now, cfg = cmd.rid, self.now(), self.config
        if cmd.op == OP_PREKEYS:
            return await self.put_prekeys(request_id, cmd)
        if cmd.op in (OP_REPORT, OP_REPORT_STATUS):
            return await self._report_operation(request_id, cmd, now)
        with storage_errors():
            if cmd.op == OP_CAPS:
                await self.store.set_caps(rid, cmd.add or (), cmd.remove or (), cfg.max_caps, now)
                self.metrics.inc("owner_consent", "caps")
            elif cmd.op == OP_BAN:
                await self.store.set_bans(rid, cmd.hdl or (), cmd.unban or (), cfg.max_bans, now)
                self.metrics.inc("owner_consent", "ban")
            elif cmd.op == OP_BOUNDARIES:
                assert cmd.bnd is not None
                await self.store.set_boundaries(rid, cmd.bnd, now)
                self.metrics.inc("owner_consent", "bnd")
            elif cmd.op == OP_INFO:
                await self.store.touch_mailbox(rid, now)
                return await self._info(request_id, rid, now)
            else:
                raise RelayError(ErrorCode.MALFORMED)
            await self.store.touch_mailbox(rid, now)
        return Ok(id=request_id)

    async def _report_operation(self, request_id: int, cmd: OwnerCommand, now: int) -> RelayFrame:
        """``report`` (verify, then store; protocol.md §4.11) or ``rstat``."""
        assert cmd.rid is not None
        with storage_errors():
            record = await self.store.get_mailbox(cmd.rid, now)
        if record is None:
            raise RelayError(ErrorCode.AUTH)
        if cmd.op == OP_REPORT:
            report = await self.moderation.file_report(cmd, record)
            reply: RelayFrame = ReportAccepted(id=request_id, report=report)
        else:
            reply = await self.moderation.report_status(request_id, cmd, record)
        with storage_errors():
            await self.store.touch_mailbox(cmd.rid, now)
        return reply

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

    async def put_prekeys(self, request_id: int, cmd: OwnerCommand) -> PreKeysStored:
        """Apply an authenticated ``keys`` command (protocol.md §4.7), or answer its status.

        Raises:
            RelayError: ``AUTH`` (the mailbox vanished), ``QUOTA`` (too many one-time items;
                nothing changed), ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        assert cmd.rid is not None
        now = self.now()
        with storage_errors():
            if cmd.is_prekey_query:
                left, has_static = await self.store.prekey_count(cmd.rid, now)
            else:
                left, has_static = await self.store.put_prekeys(
                    cmd.rid,
                    cmd.static,
                    cmd.otk or (),
                    bool(cmd.replace),
                    self.config.prekey_max_items,
                    now,
                )
                self.metrics.inc("prekey_uploads")
            await self.store.touch_mailbox(cmd.rid, now)
        return PreKeysStored(id=request_id, left=left, static=int(has_static))

    async def moderation_keys(self, frame: GetModerationKeys) -> ModerationKeys:
        """The relay's moderator keys ``(kid, M_kid)``: current first, then each retired key
        inside its report window (protocol.md §4.11, §15.5.3; revision 5). Public.

        Raises:
            RelayError: ``UNAVAILABLE``, ``STORAGE_FULL`` (reading or rotating keys).
        """
        with storage_errors():
            keys = await self.keyring.moderator_keys(self.now())
        entries = tuple(ModeratorKeyEntry(kid=kid, key=key) for kid, key in keys)
        return ModerationKeys(id=frame.id, keys=entries)

    async def fetch_bundle(self, frame: FetchBundle) -> BundleIssued:
        """Hand out the prekey bundle of send id ``frame.sid``, consuming one one-time item
        if any is left and the mailbox's hourly allowance is not used up (protocol.md §4.7).

        Raises:
            RelayError: ``AUTH`` (no such mailbox, or it holds no static part),
                ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now = self.now()
        with storage_errors():
            bundle = await self.store.take_prekeys(
                frame.sid, now, self.config.prekey_fetches_per_hour
            )
            if bundle is None:
                raise RelayError(ErrorCode.AUTH)
            found = await self.store.get_boundaries(frame.sid, now)
        static, item = bundle
        self.metrics.inc("bundles_issued", "static_only" if item is None else "one_time")
        return BundleIssued(
            id=frame.id, static=static, otk=item, bnd=found[1] if found is not None else None
        )

    async def purge_expired(self) -> int:
        with storage_errors():
            return await self.store.purge_expired(self.now())
