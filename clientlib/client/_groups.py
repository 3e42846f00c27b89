"""Group conversations (protocol.md §26): create, invite with consent, accept or decline,
send, receive, members, remove, leave, roles and settings.

Each group has its own record in the keystore namespace ``groups`` (group id -> msgpack
map) and each pending invitation one in ``ginvites``; a group's mailbox is in the book's
``by_rid`` as ``("group", gid)``, so the link subscribes it and the inbox hands its envelopes
to :meth:`Groups.on_envelope`. Invitations, joins and declines travel inside the pairwise
sessions as one content type (:class:`~clientlib.client.content.GroupPairwise`), handed to
:meth:`Groups.on_pairwise`.

The inbox calls in with the book's lock held and must not wait on the network: what the
processing decides to send (a welcome, our sender key, a rekey) is queued with ``spawn`` and
runs afterwards, taking the lock for its own changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from clientlib.client._book import AddressBook, credential
from clientlib.client._group_consent import GroupConsent
from clientlib.client._group_extras import GroupExtras, file_content, group_attachment
from clientlib.client._group_records import GroupRecord, _Live, _pack, _unpack
from clientlib.client._group_reports import franked_evidence, moderator_key
from clientlib.client._link import Link
from clientlib.client._receipts import DEFAULT_RECEIPT_DELAY, ReceiptDelay
from clientlib.client._reports import ReportEvidence
from clientlib.client.content import MAX_NAME_BYTES, MAX_TEXT_BYTES
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    GroupEvent,
    GroupInfo,
    GroupMember,
)
from clientlib.crypto.group import (
    GroupError,
    GroupKeys,
    GroupSettings,
    GroupState,
    LogEntry,
    Member,
    ReceiverChain,
    SenderChain,
    epoch_capability,
    message_sender,
    open_control,
    open_direct,
    open_message,
    parse_header,
    seal_control,
    seal_direct,
    seal_message,
)
from clientlib.crypto.group_frank import (
    frank_group_text,
    group_content,
    open_group_content,
)
from clientlib.crypto.padding import pad, unpad
from clientlib.crypto.primitives import ed25519_public_from_seed
from clientlib.errors import DecryptionError, LocalProtocolError, RelayRejected, TransportError
from clientlib.wire import attachment_capability_hash, capability_hash, delegate_hash
from clientlib.wire.frames import StoredEnvelope
from clientlib.wire.limits import ENVELOPE_BUCKETS, MAX_FANOUT, MAX_FANOUT_CT

__all__ = ["Groups"]

log = logging.getLogger("clientlib.client.groups")

NS = "groups"
INVITES = "ginvites"
#: Buckets a group envelope may use (a ``fan`` carries at most 32 KiB).
BUCKETS = tuple(b for b in ENVELOPE_BUCKETS if b <= MAX_FANOUT_CT)
#: Fixed bytes around the padded plaintext, per envelope type (§26.5).
OVERHEAD = {1: 62 + 16 + 64, 2: 78 + 16 + 64, 3: 114 + 16 + 64}
#: Messages a group record keeps for ``group messages`` (oldest dropped).
KEEP_MESSAGES = 200
#: Uploads retried (same eid, so nothing is stored twice) after a storage or transport error.
RETRIES = 3
TRANSIENT = frozenset({"UNAVAILABLE", "STORAGE_FULL", "LIMIT"})
#: Sender keys kept from keys the log does not name yet.
EARLY_KEYS = 64
#: Log entries per welcome message (the log is sent in parts; §26.6): 80 entries of at most
#: about 370 bytes each fit the 32 KiB bucket of a fan.
WELCOME_PART = 80
_EIDS = 512
#: A typing indicator whose timestamp is further than this from our clock is ignored (a
#: replay by the relay of an old one, or a skewed clock).
TYPING_FRESH = 30

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Groups:
    """The groups of one client (see the module docstring)."""

    def __init__(
        self,
        book: AddressBook,
        link: Link,
        *,
        seal_pairwise: Callable[[bytes, bytes], None],
        emit: Callable[[ClientEvent], None],
        now: Callable[[], int],
        spawn: Spawn,
        wake_outbox: Callable[[], None],
        receipt_delay: ReceiptDelay = DEFAULT_RECEIPT_DELAY,
        rng: random.Random | None = None,
    ) -> None:
        self._book = book
        self._link = link
        self._seal_pairwise = seal_pairwise
        self._emit = emit
        self._now = now
        self._spawn = spawn
        self._wake = wake_outbox
        self._busy = 0
        self._flushing: dict[bytes, asyncio.Lock] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.live: dict[bytes, _Live] = {}
        #: Files, typing and receipts (§26.8).
        self.extras = GroupExtras(self, receipt_delay, rng or random.SystemRandom())
        #: Invitations, joins and declines (§26.6).
        self.consent = GroupConsent(self)
        self.invites: dict[bytes, list[Any]] = {}  # invite id -> [cid, gid, name, gpk, from]

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a follow-up (a welcome, a sender key, a rekey) in the background, counted so
        that :meth:`settle` can wait for it."""
        self._busy += 1
        self._idle.clear()

        async def wrapped() -> None:
            try:
                await coro
            except (TransportError, RelayRejected, LocalProtocolError, GroupError) as exc:
                log.info("group follow-up failed: %s", type(exc).__name__)
            finally:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

        self._spawn(wrapped())

    def close(self) -> None:
        self.extras.close()

    async def settle(self) -> bool:
        """Wait for the follow-ups started so far; True if there were any."""
        if self._idle.is_set():
            return False
        await self._idle.wait()
        return True

    # --- loading and saving ------------------------------------------------------------

    def load(self) -> None:
        """Read every group and invitation from the keystore (at start)."""
        ks = self._book.ks
        for gid, raw in ks.items(NS):
            rec = GroupRecord.from_bytes(raw)
            entries = [LogEntry.decode(e) for e in rec.log]
            state = GroupState.from_log(gid, entries) if entries else GroupState(gid=gid)
            self.live[gid] = _Live(rec, state)
            if rec.status in ("joining", "active", "removed"):
                self._book.add_group_mailbox(rec.rid, gid, rec.owner)
        self.invites = {k: list(_unpack(v)) for k, v in ks.items(INVITES)}

    def _put(self, g: _Live) -> None:
        self._book.ks.put(NS, g.rec.gid, g.rec.to_bytes())

    # --- views -------------------------------------------------------------------------

    def resolve(self, ref: str) -> bytes:
        """A group by id (hex, or a prefix of 4+ characters) or by its name.

        Raises:
            LocalProtocolError: no such group, or ambiguous.
        """
        k = ref.strip().lower()
        for gid in self.live:
            if gid.hex() == k:
                return gid
        named = [gid for gid, g in self.live.items() if g.state.name == ref.strip()]
        prefix = [gid for gid in self.live if len(k) >= 4 and gid.hex().startswith(k)]
        for found in (named, prefix):
            if len(found) == 1:
                return found[0]
        if named or prefix:
            raise LocalProtocolError("ambiguous group: use more of its id")
        raise LocalProtocolError("no such group")

    def info(self, gid: bytes) -> GroupInfo:
        g = self.live[gid]
        s = g.state
        return GroupInfo(
            id=gid.hex(),
            name=s.name,
            status=g.rec.status,
            epoch=s.epoch,
            members=len(s.members),
            role=s.role_of(g.me) or "none",
            post=s.settings.post,
            media=bool(s.settings.media),
            ttl=s.settings.ttl,
        )

    def all(self) -> list[GroupInfo]:
        return [self.info(gid) for gid in self.live]

    def members(self, gid: bytes) -> list[GroupMember]:
        g = self.live[gid]
        me = g.me
        known = {c.identity: cid for cid, c in self._book.contacts.items()}
        out = []
        for m in g.state.members.values():
            cid = known.get(m.ik)
            out.append(
                GroupMember(
                    id=m.gpk.hex(),
                    name=m.name,
                    role=m.role,
                    me=m.gpk == me,
                    contact_id=cid.hex() if cid is not None else None,
                )
            )
        return out

    def messages(self, gid: bytes) -> list[GroupEvent]:
        g = self.live[gid]
        return [self._message_event(g, m[1], m[2], m[0], m[3], m[4:]) for m in g.rec.msgs]

    def invitations(self) -> list[tuple[str, str, str]]:
        """``(invite id, group name, inviter name)`` of every pending invitation."""
        return [(k.hex(), v[2], v[4]) for k, v in self.invites.items()]

    def _message_event(
        self,
        g: _Live,
        gpk: bytes,
        text: str,
        mid: bytes,
        ts: int,
        file: Sequence[Any] = (),
    ) -> GroupEvent:
        m = g.state.members.get(gpk)
        name = m.name if m is not None else gpk.hex()[:8]
        return GroupEvent(
            group_id=g.rec.gid.hex(),
            kind="message",
            member=name,
            text=text,
            message_id=mid.hex(),
            ts=ts,
            mine=gpk == g.me,
            attachment=group_attachment(g.rec.gid, mid, file) if len(file) == 2 else None,
        )

    # --- relay helpers -----------------------------------------------------------------

    def _cap(self, g: _Live, sid: bytes, es: bytes | None = None) -> bytes:
        secret = es if es is not None else g.rec.es
        if secret is None:
            raise LocalProtocolError("the group's epoch key has not arrived yet")
        return epoch_capability(secret, sid)

    async def _fan(
        self,
        entries: Sequence[tuple[bytes, bytes]],
        ct: bytes,
        eid: bytes | None = None,
        *,
        fc: bytes | None = None,
    ) -> dict[int, str]:
        """One upload to ``entries`` (in parts of 1,000); the refused entries by index.
        With ``fc`` the relay tags every copy for its mailbox (§26.1).

        Raises:
            TransportError: the relay could not be reached after the retries, or at once
                while the client works offline (``connect=False`` before
                :meth:`Client.connect`: nothing to wait for, what is queued goes out on
                connect).
        """
        if not self._link.connected:
            raise TransportError("the client is not connected")
        bad: dict[int, str] = {}
        eid = eid if eid is not None else self._book.rng(16)
        for start in range(0, len(entries), MAX_FANOUT):
            part = list(entries[start : start + MAX_FANOUT])
            index = list(range(start, start + len(part)))
            for attempt in range(RETRIES + 1):
                try:
                    _, refused = await self._link.depositor().fanout(part, ct, eid=eid, fc=fc)
                except TransportError as exc:  # RelayRejected included
                    transient = not isinstance(exc, RelayRejected) or exc.code in TRANSIENT
                    if not transient or attempt == RETRIES:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)
                    continue
                # Retried with the same eid: copies stored before are not stored twice.
                again = [i for i, code in refused.items() if code in TRANSIENT]
                bad.update({index[i]: c for i, c in refused.items() if c not in TRANSIENT})
                if not again or attempt == RETRIES:
                    bad.update({index[i]: refused[i] for i in again})
                    break
                part, index = [part[i] for i in again], [index[i] for i in again]
                await asyncio.sleep(0.5 * 2**attempt)
        return bad

    async def _direct(self, g: _Live, m: Member, plaintext: bytes) -> None:
        body = pad(plaintext, overhead=OVERHEAD[3], buckets=BUCKETS)
        ct = seal_direct(g.rec.keys, g.rec.gid, m.xpk, body, self._book.rng)
        bad = await self._fan([(m.sid, self._cap(g, m.sid))], ct)
        if bad:
            log.info("a direct group message was refused")

    async def _control(self, g: _Live, plaintext: bytes, to: Sequence[Member]) -> None:
        rec = g.rec
        if rec.es is None or not to:
            return
        body = pad(plaintext, overhead=OVERHEAD[2], buckets=BUCKETS)
        ct = seal_control(rec.keys, rec.gid, rec.es_epoch, rec.es, body, self._book.rng)
        await self._fan([(m.sid, self._cap(g, m.sid)) for m in to], ct)

    def _others(self, g: _Live) -> list[Member]:
        return [m for m in g.state.members.values() if m.gpk != g.me]

    async def _own_caps(
        self, g: _Live, *, add: Sequence[bytes] = (), remove: Sequence[bytes] = ()
    ) -> None:
        cred = credential(g.rec.rid, g.rec.owner)
        await self._link.transport().set_caps(cred, add=add, remove=remove)

    def _delegate_sign(self, g: _Live) -> Callable[[bytes], bytes]:
        from clientlib.wire.limits import OWNER_COMMAND_CONTEXT

        keys = g.rec.keys
        return lambda cmd: keys.sign(OWNER_COMMAND_CONTEXT, cmd)

    # --- create, invite, accept, decline -------------------------------------------------

    async def create(self, name: str) -> GroupInfo:
        """A new group with us as its owner (one mailbox, one log entry, epoch 0)."""
        _check_name(name)
        book = self._book
        gid, keys = book.rng(16), GroupKeys.generate(book.rng)
        owner = book.rng(32)
        rid, sid = await self._create_mailbox(owner)
        es = book.rng(32)
        cred = credential(rid, owner)
        await self._link.transport().set_caps(
            cred, add=[capability_hash(sid, epoch_capability(es, sid))]
        )
        me = Member(bytes(book.identity.public), keys.gpk, keys.xpk, sid, "owner", book.name)
        state = GroupState(gid=gid)
        entry = state.next_entry("create", [name, GroupSettings().encode(), me.encode()], keys)
        state.apply(entry)
        rec = GroupRecord(
            gid, keys.sign_seed, keys.dh_private, rid, sid, owner, book.name, "active"
        )
        rec.log, rec.es, rec.es_epoch = [entry.encode()], es, 0
        rec.chain = SenderChain.new(0, 0, book.rng).distribution()
        g = _Live(rec, state)
        async with book.lock:
            self.live[gid] = g
            book.add_group_mailbox(rid, gid, owner)
            self._put(g)
            await book.save()
        await self._link.subscribe(rid)
        return self.info(gid)

    async def _create_mailbox(self, owner: bytes) -> tuple[bytes, bytes]:
        cred_key = ed25519_public_from_seed(owner)
        sign = credential(bytes(16), owner).sign
        return await self._link.transport().create_mailbox(cred_key, sign, kind="pair")

    # --- sending -------------------------------------------------------------------------

    async def send(self, gid: bytes, text: str) -> GroupEvent:
        """Encrypt once under our sender key, upload once to every other member's mailbox.

        Raises:
            LocalProtocolError: too long, not allowed to post, not a member, or the epoch key
                of a new epoch has not arrived yet.
            RelayRejected: ``AUTH``: the relay refused every copy (we were removed).
        """
        if len(text.encode()) > MAX_TEXT_BYTES or "\x00" in text:
            raise LocalProtocolError(f"a message is at most {MAX_TEXT_BYTES} bytes of UTF-8")
        self.check_can_post(gid)
        mid = self._book.rng(16)
        return await self._send_plain(gid, mid, text, lambda now: [], (), frank=True)

    def check_can_post(self, gid: bytes, *, media: bool = False) -> None:
        """Raises LocalProtocolError if we may not post now (``media``: a file, which the
        group's ``media`` setting must allow: ``MediaRefused``)."""
        g = self.live[gid]
        rec, state = g.rec, g.state
        admin = state.role_of(g.me) in ("owner", "admin")
        if rec.status == "active" and state.settings.post == "admins" and not admin:
            raise LocalProtocolError("only admins may post in this group")
        if rec.status not in ("active", "removed") or rec.chain is None or rec.es is None:
            raise LocalProtocolError("not an active member of this group")
        if rec.status == "active" and rec.es_epoch != state.epoch:
            raise LocalProtocolError("the group's new epoch key has not arrived yet")
        if rec.resume >= 0:  # restored (protocol.md §24.3): our new sender key goes first
            raise LocalProtocolError("our new sender key is not sent to the group yet; connect")
        if media and (rec.status != "active" or not state.settings.media):
            from clientlib.client._media import MediaRefused

            raise MediaRefused("media is off in this group (its settings say media=0)")

    async def _send_plain(
        self,
        gid: bytes,
        mid: bytes,
        text: str,
        build: Callable[[int], list[Any]],
        file: Sequence[Any],
        *,
        frank: bool = False,
    ) -> GroupEvent:
        """Seal, keep and upload one type-1 message: ``build(now)`` (a file), or with
        ``frank`` the franked text ``text`` (§26.9)."""
        book = self._book
        g = self.live[gid]
        rec = g.rec
        now = self._now()
        # A text is franked for our relay's moderators, which every member's mailbox is on
        # (§26.9); a file is not (yet).
        mod = await moderator_key(self._book, self._link, self._now()) if frank else None
        async with book.lock:
            chain = SenderChain(*rec.chain)  # type: ignore[misc]  # checked by check_can_post
            fc: bytes | None = None
            if mod is not None:
                franked = frank_group_text(
                    rec.seed,
                    g.me,
                    gid,
                    group_content(mid, now, text),
                    mod.kid,
                    mod.public,
                    book.rng,
                )
                plain, fc = franked.plain, franked.fc
            else:
                plain = _pack(build(now))
            body = pad(plain, overhead=OVERHEAD[1], buckets=BUCKETS)
            ct = seal_message(rec.keys, gid, chain, body)
            rec.chain = chain.distribution()
            if rec.status == "active":
                rec.msgs = [*rec.msgs, [mid, g.me, text, now, *file]][-KEEP_MESSAGES:]
                # Durable before the upload: a crash or an outage sends it later (same eid).
                rec.out = [*rec.out, [book.rng(16), ct, rec.es_epoch, fc]]
            self._put(g)
            await book.save()
        event = self._message_event(g, g.me, text, mid, now, file)
        self.extras.throttle.sent_message(gid)
        if rec.status == "removed":
            entries = [(m.sid, self._cap(g, m.sid)) for m in self._others(g)]
            bad = await self._fan(entries, ct, fc=fc) if entries else {}
            if entries and len(bad) == len(entries) and set(bad.values()) == {"AUTH"}:
                raise RelayRejected("AUTH")
            return event
        try:
            await self.flush(gid)
        except TransportError as exc:
            if isinstance(exc, RelayRejected):
                raise
            return replace(event, state="queued")
        return replace(event, state="sent")

    async def flush(self, gid: bytes) -> None:
        """Upload the group's queued messages, oldest first (each with its own eid, so a
        retry stores nothing twice). A message sealed in an epoch that has ended is dropped:
        the members no longer hold that sender key (§26.5).

        Raises:
            TransportError: the relay could not be reached (the rest stays queued).
        """
        g = self.live.get(gid)
        if g is None:
            return
        rec = g.rec
        async with self._flushing.setdefault(gid, asyncio.Lock()):  # one flusher per group
            while rec.out and rec.status == "active":
                eid, ct, epoch, *rest = rec.out[0]
                if epoch == rec.es_epoch == g.state.epoch:
                    entries = [(m.sid, self._cap(g, m.sid)) for m in self._others(g)]
                    if entries:
                        await self._fan(entries, ct, eid, fc=rest[0] if rest else None)
                else:
                    self._emit(ClientWarning("group_dropped", "queued in an ended epoch", None))
                async with self._book.lock:
                    rec.out = [o for o in rec.out if o[0] != eid]
                    self._put(g)
                    self._book.save_soon()

    async def flush_all(self) -> None:
        """Upload what every group queued (on connect and in ``sync``); errors keep it."""
        for gid in list(self.live):
            if self.live[gid].rec.out:
                with contextlib.suppress(TransportError, LocalProtocolError):
                    await self.flush(gid)

    async def resume_all(self) -> None:
        """Groups restored from a backup (protocol.md §24.3): start a new sender chain, of
        the generation the backup names, and send it to every member (on connect). The
        chain is drawn and saved first, so a restart resends the same one."""
        for gid in list(self.live):
            g = self.live[gid]
            if g.rec.resume < 0 or g.rec.status != "active":
                continue
            async with self._book.lock:
                if g.rec.chain is None:
                    chain = SenderChain.new(g.state.epoch, g.rec.resume, self._book.rng)
                    g.rec.chain = chain.distribution()
                    self._put(g)
                    await self._book.save()
            await self._send_sender_key(gid)
            async with self._book.lock:
                g.rec.resume = -1
                self._put(g)
                await self._book.save()

    async def _send_sender_key(self, gid: bytes, to: Sequence[Member] | None = None) -> None:
        """Our current chain (from its current index) to ``to`` (default: every member)."""
        g = self.live[gid]
        rec = g.rec
        if rec.chain is None:
            return
        plain = _pack(["sk", *rec.chain])
        for m in self._others(g) if to is None else to:
            try:
                await self._direct(g, m, plain)
            except (TransportError, RelayRejected, LocalProtocolError) as exc:
                log.info("sender key not delivered: %s", type(exc).__name__)

    # --- membership changes (admins) ---------------------------------------------------

    async def _commit(self, g: _Live, kind: str, body: Sequence[Any]) -> LogEntry:
        """Sign, apply and store one log entry (lock held by the caller)."""
        entry = g.state.next_entry(kind, body, g.rec.keys)
        g.state.apply(entry)
        g.rec.log.append(entry.encode())
        return entry

    async def _add(self, gid: bytes, cid: bytes, member: Member) -> None:
        """A contact we invited sent its member record: add it, welcome it (§26.6)."""
        book = self._book
        g = self.live[gid]
        rec = g.rec
        if rec.es is None:
            return
        try:
            await self._link.transport().delegated_caps(
                member.sid,
                g.me,
                self._delegate_sign(g),
                add=[capability_hash(member.sid, self._cap(g, member.sid))],
            )
        except (RelayRejected, TransportError) as exc:
            log.info("could not open the newcomer's mailbox: %s", type(exc).__name__)
            return
        async with book.lock:
            existing = self._others(g)
            entry = await self._commit(g, "add", [member.encode()])
            rec.invited.pop(cid, None)
            self._put(g)
            await book.save()
        last = len(rec.log) - 1
        for start in range(0, len(rec.log), WELCOME_PART):
            part = rec.log[start : start + WELCOME_PART]
            await self._direct(g, member, _pack(["wel", rec.es_epoch, rec.es, last, part]))
        await self._control(g, _pack(["log", [entry.encode()]]), existing)
        await self._send_sender_key(gid, [member])
        self._emit(GroupEvent(gid.hex(), "member_added", member=member.name))

    async def remove(self, gid: bytes, gpk: bytes) -> None:
        """Remove a member: a new epoch, every remaining mailbox's capability swapped by us
        as delegate (the removed member's deposits are refused at once), the epoch secret
        sent to each remaining member (§26.6)."""
        book = self._book
        g = self.live[gid]
        if g.state.role_of(g.me) not in ("owner", "admin"):
            raise LocalProtocolError("only admins remove members")
        target = g.state.members.get(gpk)
        if target is None:
            raise LocalProtocolError("not a member")
        everyone = self._others(g)
        async with book.lock:
            try:
                entry = await self._commit(g, "remove", [gpk])
            except GroupError as exc:
                raise LocalProtocolError(f"cannot remove: {exc.reason}") from None
            self._put(g)
            await book.save()
        # Everyone (the removed member too) learns of it under the epoch it still has.
        await self._control(g, _pack(["log", [entry.encode()]]), everyone)
        await self._rekey(gid, entry)

    async def _rekey(self, gid: bytes, entry: LogEntry | None) -> None:
        """Start the epoch the state is in: new secret, capabilities swapped, secret sent."""
        book = self._book
        g = self.live[gid]
        rec = g.rec
        old = rec.es
        es = book.rng(32)
        remaining = self._others(g)
        for m in remaining:
            drop = [capability_hash(m.sid, epoch_capability(old, m.sid))] if old else []
            try:
                await self._link.transport().delegated_caps(
                    m.sid,
                    g.me,
                    self._delegate_sign(g),
                    add=[capability_hash(m.sid, epoch_capability(es, m.sid))],
                    remove=drop,
                )
            except (RelayRejected, TransportError) as exc:
                log.info("capability swap failed: %s", type(exc).__name__)
        own_old = [capability_hash(rec.sid, epoch_capability(old, rec.sid))] if old else []
        await self._own_caps(
            g, add=[capability_hash(rec.sid, epoch_capability(es, rec.sid))], remove=own_old
        )
        async with book.lock:
            rec.es, rec.es_epoch = es, g.state.epoch
            gen = rec.chain[1] + 1 if rec.chain else 0
            rec.chain = SenderChain.new(g.state.epoch, gen, book.rng).distribution()
            self._put(g)
            await book.save()
        raw = entry.encode() if entry is not None else None
        for m in remaining:
            await self._direct(g, m, _pack(["rekey", g.state.epoch, es, raw]))
        await self._send_sender_key(gid)

    async def leave(self, gid: bytes) -> None:
        """Leave: a ``leave`` entry signed by us, to everyone; our mailbox deleted."""
        book = self._book
        g = self.live[gid]
        if g.state.role_of(g.me) == "owner":
            raise LocalProtocolError("the owner cannot leave; remove the others or hand over")
        everyone = self._others(g)
        if g.rec.status == "active":
            async with book.lock:
                entry = await self._commit(g, "leave", [g.me])
                self._put(g)
                await book.save()
            await self._control_with(g, entry, everyone)
        await self._drop(gid, "left")

    async def _control_with(self, g: _Live, entry: LogEntry, to: Sequence[Member]) -> None:
        rec = g.rec
        if rec.es is None:
            return
        body = pad(_pack(["log", [entry.encode()]]), overhead=OVERHEAD[2], buckets=BUCKETS)
        ct = seal_control(rec.keys, rec.gid, rec.es_epoch, rec.es, body, self._book.rng)
        await self._fan([(m.sid, self._cap(g, m.sid)) for m in to], ct)

    async def _drop(self, gid: bytes, status: str) -> None:
        book = self._book
        g = self.live[gid]
        rec = g.rec
        with contextlib.suppress(RelayRejected, TransportError):
            await self._link.delete_mailbox(rec.rid, rec.owner)
        async with book.lock:
            rec.status = status
            rec.es, rec.chain, rec.peers = None, None, {}
            book.drop_group_mailbox(rec.rid)
            self._put(g)
            await book.save()

    async def set_role(self, gid: bytes, gpk: bytes, role: str) -> None:
        await self._change(gid, "role", [gpk, role])

    async def set_settings(
        self,
        gid: bytes,
        *,
        post: str | None = None,
        media: bool | None = None,
        ttl: int | None = None,
    ) -> None:
        s = self.live[gid].state.settings
        new = GroupSettings(
            post=post if post is not None else s.post,
            media=int(media) if media is not None else s.media,
            ttl=ttl if ttl is not None else s.ttl,
        )
        await self._change(gid, "set", [new.encode()])

    async def _change(self, gid: bytes, kind: str, body: list[Any]) -> None:
        book = self._book
        g = self.live[gid]
        async with book.lock:
            try:
                entry = await self._commit(g, kind, body)
            except GroupError as exc:
                raise LocalProtocolError(f"refused: {exc.reason}") from None
            self._put(g)
            await book.save()
        await self._control_with(g, entry, self._others(g))
        self._after_entry(g, entry, [])

    # --- receiving (called by the inbox, lock held) ------------------------------------

    def on_pairwise(self, cid: bytes, body: bytes, events: list[ClientEvent]) -> None:
        """An invitation, join or decline inside a pairwise session (the inbox, lock held)."""
        self.consent.on_pairwise(cid, body, events)

    def on_envelope(self, gid: bytes, env: StoredEnvelope, events: list[ClientEvent]) -> None:
        """An envelope of one of our group mailboxes; anything wrong is dropped with a
        ``group_dropped`` warning and changes nothing."""
        g = self.live.get(gid)
        if g is None or env.eid in g.rec.eids:
            return
        g.rec.eids = [*g.rec.eids, env.eid][-_EIDS:]
        try:
            kind, got_gid = parse_header(env.ct)
            if got_gid != gid:
                raise GroupError("another group")
            if kind == 1:
                self._on_message(g, env, events)
            elif kind == 2:
                self._on_control(g, env.ct, events)
            else:
                self._on_direct(g, env.ct, events)
        except GroupError as exc:
            events.append(ClientWarning("group_dropped", exc.reason, None))
        except DecryptionError:
            events.append(ClientWarning("group_dropped", "bad padding", None))
        self._put(g)

    def _on_message(self, g: _Live, env: StoredEnvelope, events: list[ClientEvent]) -> None:
        ct = env.ct
        epoch, gpk, gen, _ = message_sender(ct)
        sender = g.state.members.get(gpk)
        if sender is None:
            raise GroupError("not a member")
        if g.state.settings.post == "admins" and sender.role == "member":
            raise GroupError("only admins may post")
        held = g.rec.peers.get(gpk)
        if held is None or held[0] != epoch or held[1] != gen:
            raise GroupError("unknown sender key")
        chain = ReceiverChain(held[0], held[1], held[2], held[3], dict(held[4]))
        plain, after = open_message(ct, chain)
        msg = _unpack(unpad(plain))
        # A text is franked (revision 16, §26.9): an unfranked ``text`` could not be reported.
        if not isinstance(msg, list) or not msg or msg[0] not in ("ftext", "file"):
            raise GroupError("bad content")
        file: tuple[Any, ...] = ()
        ev: ReportEvidence | None = None
        if msg[0] == "file":
            text, file = file_content(msg)
            _, mid, ts = msg[:3]
        else:
            ev = franked_evidence(self._link.relays.modkeys(None), g.rec.gid, gpk, env, msg)
            mid, ts, text = open_group_content(ev.msg)
        if not isinstance(mid, bytes) or len(mid) != 16 or not isinstance(ts, int):
            raise GroupError("bad content")
        g.rec.peers[gpk] = [after.epoch, after.gen, after.index, after.ck, after.skipped]
        if file and not g.state.settings.media:
            # Media is off in the group: dropped, never fetched (the chain moved on).
            events.append(ClientWarning("content_refused", "media is off in the group", None))
            return
        g.rec.msgs = [*g.rec.msgs, [mid, gpk, text, ts, *file]][-KEEP_MESSAGES:]
        self.extras.throttle.heard_from(g.rec.gid)
        self.extras.owe(g, gpk, "dlv", mid)
        if self.extras.watch.message(g.rec.gid + gpk) is False:
            events.append(GroupEvent(g.rec.gid.hex(), "stopped_typing", member=sender.name))
        if ev is not None:
            kept = {m[0] for m in g.rec.msgs}
            g.rec.ev = {k: v for k, v in g.rec.ev.items() if k in kept} | {mid: ev.encode()}
        events.append(self._message_event(g, gpk, text, mid, ts, file))

    def _on_control(self, g: _Live, ct: bytes, events: list[ClientEvent]) -> None:
        if g.rec.es is None:
            raise GroupError("no epoch key yet")
        gpk, plain = open_control(ct, g.rec.es)
        if gpk not in g.state.members:
            raise GroupError("not a member")
        msg = _unpack(unpad(plain))
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == "typ":
            self.extras.on_typing(g, gpk, msg, events)
            return
        if not isinstance(msg, list) or len(msg) != 2 or msg[0] != "log":
            raise GroupError("bad control")
        for raw in msg[1]:
            self._apply(g, raw, events)

    def _apply(self, g: _Live, raw: bytes, events: list[ClientEvent]) -> None:
        entry = LogEntry.decode(raw)
        if entry.seq <= g.state.seq:
            return  # already applied (a rekey repeats its entry)
        before = dict(g.state.members)
        g.state.apply(entry)  # GroupError: forged, out of order, unauthorised
        g.rec.log.append(raw)
        self._after_entry(g, entry, events, before)

    def _after_entry(
        self,
        g: _Live,
        entry: LogEntry,
        events: list[ClientEvent],
        before: dict[bytes, Member] | None = None,
    ) -> None:
        gid, me, s = g.rec.gid, g.me, g.state
        prior = before if before is not None else s.members
        match entry.kind:
            case "add":
                new = Member.decode(entry.body[0])
                self._adopt_early(g)
                events.append(GroupEvent(gid.hex(), "member_added", member=new.name))
                if g.rec.status == "active" and new.gpk != me:
                    self._run(self._send_sender_key(gid, [new]))
            case "remove" | "leave":
                gone = prior.get(entry.body[0])
                who = gone.name if gone is not None else "?"
                if entry.body[0] == me:
                    g.rec.status = "removed"
                    events.append(GroupEvent(gid.hex(), "removed", member=who))
                    return
                g.rec.peers.pop(entry.body[0], None)
                events.append(
                    GroupEvent(
                        gid.hex(),
                        "member_removed" if entry.kind == "remove" else "member_left",
                        member=who,
                    )
                )
                if gone is not None and gone.role == "admin":
                    self._run(self._own_caps(g, remove=[delegate_hash(g.rec.sid, gone.gpk)]))
                if entry.kind == "leave" and s.role_of(me) == "owner":
                    self._run(self._rekey(gid, None))
            case "role":
                m = s.members[entry.body[0]]
                events.append(GroupEvent(gid.hex(), "role", member=m.name, text=m.role))
                h = [delegate_hash(g.rec.sid, m.gpk)]
                if m.gpk != me:
                    if m.role == "admin":
                        self._run(self._own_caps(g, add=h))
                    else:
                        self._run(self._own_caps(g, remove=h))
            case "set":
                st = s.settings
                text = f"post={st.post} media={st.media} ttl={st.ttl}"
                events.append(GroupEvent(gid.hex(), "settings", text=text))
            case _:
                pass

    def _on_direct(self, g: _Live, ct: bytes, events: list[ClientEvent]) -> None:
        gpk, plain = open_direct(ct, g.rec.keys)
        msg = _unpack(unpad(plain))
        if not isinstance(msg, list) or not msg:
            raise GroupError("bad direct message")
        rec, gid = g.rec, g.rec.gid
        if msg[0] == "wel" and len(msg) == 5:
            if rec.status != "joining" or (gpk != rec.inviter and gpk not in g.state.members):
                raise GroupError("unexpected welcome")
            _, epoch, es, last, part = msg
            for raw in part:
                self._apply_welcome(g, raw)
            rec.es, rec.es_epoch, rec.head = es, epoch, last
            if g.state.seq == last:
                if g.me not in g.state.members:
                    raise GroupError("the welcome does not add us")
                rec.status = "active"
                rec.chain = SenderChain.new(g.state.epoch, 0, self._book.rng).distribution()
                events.append(GroupEvent(gid.hex(), "joined", text=g.state.name))
                self._run(self._activate(gid))
        elif msg[0] == "rekey" and len(msg) == 4:
            admin = g.state.members.get(gpk)
            if msg[3] is not None:
                entry = LogEntry.decode(msg[3])
                if entry.seq > g.state.seq:
                    self._apply(g, msg[3], events)
                admin = g.state.members.get(gpk)
            if admin is None or admin.role not in ("owner", "admin"):
                raise GroupError("rekey not from an admin")
            if msg[1] != g.state.epoch or msg[1] <= rec.es_epoch:
                raise GroupError("stale rekey")
            old = rec.es
            rec.es, rec.es_epoch = msg[2], msg[1]
            gen = rec.chain[1] + 1 if rec.chain else 0
            rec.chain = SenderChain.new(msg[1], gen, self._book.rng).distribution()
            self._run(self._after_rekey(gid, old))
        elif msg[0] == "rcp" and len(msg) == 3:
            self.extras.on_receipt(g, gpk, msg, events)
        elif msg[0] == "sk" and len(msg) == 5:
            chain = ReceiverChain.from_distribution(msg[1:])
            if gpk not in g.state.members:
                # Its ``add`` may still be on its way (another sender's mailbox order): kept,
                # bounded, and used only once the log names this key (§26.6).
                if len(rec.early) >= EARLY_KEYS:
                    raise GroupError("sender key from a non-member")
                rec.early[gpk] = [chain.epoch, chain.gen, chain.index, chain.ck, {}]
                return
            held = rec.peers.get(gpk)
            if held is not None and (held[0], held[1]) >= (chain.epoch, chain.gen):
                return  # not newer than what we hold
            rec.peers[gpk] = [chain.epoch, chain.gen, chain.index, chain.ck, {}]
        else:
            raise GroupError("bad direct message")

    def _apply_welcome(self, g: _Live, raw: bytes) -> None:
        entry = LogEntry.decode(raw)
        if entry.seq <= g.state.seq:
            return
        g.state.apply(entry)
        g.rec.log.append(raw)
        self._adopt_early(g)

    def _adopt_early(self, g: _Live) -> None:
        """Sender keys that arrived before the log named their key, now that it does."""
        for gpk in [k for k in g.rec.early if k in g.state.members]:
            held = g.rec.peers.get(gpk)
            early = g.rec.early.pop(gpk)
            if held is None or (held[0], held[1]) < (early[0], early[1]):
                g.rec.peers[gpk] = early

    async def _activate(self, gid: bytes) -> None:
        """Joined: our capability and the admins' delegations on our mailbox; our key out."""
        g = self.live[gid]
        rec = g.rec
        add = [capability_hash(rec.sid, self._cap(g, rec.sid))]
        add += [delegate_hash(rec.sid, a.gpk) for a in g.state.admins() if a.gpk != g.me]
        try:
            await self._own_caps(g, add=add)
        except (RelayRejected, TransportError) as exc:
            log.info("group mailbox set-up failed: %s", type(exc).__name__)
        await self._send_sender_key(gid)

    async def _after_rekey(self, gid: bytes, old: bytes | None) -> None:
        g = self.live[gid]
        rec = g.rec
        if rec.es is None:
            return
        drop = []
        if old:
            cap_old = epoch_capability(old, rec.sid)
            # The attachment hash of the ended epoch goes too (§25.5: added per file sent).
            drop = [
                capability_hash(rec.sid, cap_old),
                attachment_capability_hash(rec.sid, cap_old),
            ]
        try:
            await self._own_caps(
                g, add=[capability_hash(rec.sid, self._cap(g, rec.sid))], remove=drop
            )
        except (RelayRejected, TransportError) as exc:
            log.info("capability swap failed: %s", type(exc).__name__)
        async with self._book.lock:
            self._put(g)
            await self._book.save()
        await self._send_sender_key(gid)

    def member_gpk(self, gid: bytes, ref: str) -> bytes:
        """A member by contact name, display name or id (hex prefix)."""
        g = self.live[gid]
        book = self._book
        k = ref.strip()
        for cid, c in book.contacts.items():
            if c.name == k or cid.hex() == k.lower():
                for m in g.state.members.values():
                    if m.ik == c.identity:
                        return m.gpk
        named = [m.gpk for m in g.state.members.values() if m.name == k]
        prefix = [
            m.gpk
            for m in g.state.members.values()
            if len(k) >= 4 and m.gpk.hex().startswith(k.lower())
        ]
        for found in (named, prefix):
            if len(found) == 1:
                return found[0]
        raise LocalProtocolError("no such member")


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_NAME_BYTES or "\x00" in name:
        raise LocalProtocolError(f"a group name is 1 to {MAX_NAME_BYTES} bytes")
