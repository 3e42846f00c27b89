"""What changes contacts: invitations, contact requests and their answers, blocking, privacy
settings, boundaries, removal, and sealing messages into the outbox (protocol.md §21-§22).

Each operation talks to the relay first (creating mailboxes, fetching bundles) and then, with
the address book's lock held, changes the records and saves them, so that a failure at the
relay leaves nothing half done locally. :class:`~clientlib.client.Client` documents them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from clientlib.client._book import AddressBook, ContactRef, RequestRef, bnd_list, credential
from clientlib.client._devices import Renewal
from clientlib.client._link import Link
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import Outbox
from clientlib.client._prekeys import Prekeys
from clientlib.client._relays import modkeys_slot
from clientlib.client.content import (
    MAX_INTRO_BYTES,
    MAX_NAME_BYTES,
    MAX_TEXT_BYTES,
    MESSAGE_ID_SIZE,
    Accept,
    ContactRequestContent,
    ConversationSettings,
    TextMessage,
)
from clientlib.client.history import HistoryStore
from clientlib.client.invite import InvalidInvitation, Invitation, open_bundle
from clientlib.client.relayurl import InvalidRelayUrl, normalize_relay_url
from clientlib.client.state import ContactRecord, OutboxRecord
from clientlib.client.types import ClientEvent, Contact, ContactAdded, StoredMessage
from clientlib.crypto.amf import PreparedFrank, prepare
from clientlib.crypto.primitives import ed25519_expand_seed, ed25519_public_from_seed, ed25519_sign
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError
from clientlib.session import Session, initiate
from clientlib.wire.frames import Boundaries
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT
from clientlib.wire.pow import attachment_capability_hash, capability_hash

__all__ = ["BoundaryViolation", "ContactOps"]

log = logging.getLogger("clientlib.client")


class BoundaryViolation(LocalProtocolError):
    """The contact address's published boundaries do not allow this request (protocol.md §4.9);
    nothing was sent."""


class ContactOps:
    """The contact operations of a client, over its book, link, outbox and prekeys."""

    def __init__(
        self,
        book: AddressBook,
        prekeys: Prekeys,
        outbox: Outbox,
        link: Link,
        *,
        history: Callable[[], HistoryStore],
        emit: Callable[[ClientEvent], None],
        now: Callable[[], int],
        modkeys: ModeratorKeyCache | None = None,
        spawn: Callable[[Coroutine[Any, Any, None]], None] | None = None,
    ) -> None:
        self._modkeys = modkeys if modkeys is not None else ModeratorKeyCache()
        self._spawn = spawn
        #: One AMF signature prepared ahead per contact (protocol.md §15.5.5), in memory
        #: only: a prepared signature is single use and never persisted or copied.
        self._prepared: dict[bytes, PreparedFrank] = {}
        self._warming: set[bytes] = set()
        self._book = book
        self._prekeys = prekeys
        self._outbox = outbox
        self._link = link
        self._history = history
        self._emit = emit
        self._now = now
        #: Linked devices (protocol.md §24.6): fan-out and copies for our own devices.
        self.devices: Renewal | None = None
        #: ``decorate(cid, now) -> (content fields, stored fields)`` of an outgoing text
        #: message (disappearing timer, piggy-backed receipts; see ``_conversation``).
        self.decorate: Callable[[bytes, int], tuple[dict[str, Any], dict[str, Any]]] | None = None

    async def create_invitation(
        self, *, new_address: bool = False, relay: str | None = None
    ) -> Invitation:
        """Return an invitation to our contact address (creating the address if needed) on
        ``relay`` (None: the home relay; protocol.md §27.1: a client may receive on several
        relays). Raises :class:`InvalidRelayUrl` for a bad ``relay``."""
        book = self._book
        key = self._link.relays.key(relay)
        link = self._link if key is None else await self._link.open_receiver(key)
        url = link.url
        on_relay = [a for a in book.addresses.values() if a.relay == key]
        if on_relay and not new_address:
            a = min(on_relay, key=lambda a: a.created)
            inv = Invitation.for_identity(url, a.sid, a.key, book.identity.public)
            return inv.pinning_relay(await link.relay_identity())
        owner = book.rng(32)
        rid, sid = await self._create_mailbox(
            owner, kind="addr", boundaries=book.boundaries, relay=key
        )
        async with book.lock:
            aid, a, static, items = self._prekeys.new_address(
                rid, sid, owner, now=self._now(), boundaries=book.boundaries
            )
            if key is not None:
                a.relay = key
                book.put_address(aid)
            await book.save()
        left, _ = await link.transport().put_prekeys(
            credential(rid, owner), static=static, one_time=items, replace=True
        )
        await self._prekeys.set_left(aid, left)
        await self._link.subscribe(rid)
        inv = Invitation.for_identity(url, sid, a.key, book.identity.public)
        # Version 3: the link pins our relay's identity too (protocol.md §27.3).
        return inv.pinning_relay(await link.relay_identity())

    async def send_request(
        self,
        invitation: Invitation | str,
        *,
        intro: str | None = None,
        name: str | None = None,
        contact_name: str = "",
    ) -> Contact:
        """Send a contact request to the address of an invitation (a link or parsed)."""
        book, rng = self._book, self._book.rng
        inv = invitation if isinstance(invitation, Invitation) else Invitation.parse(invitation)
        # protocol.md §27.1: the request goes to the relay the invitation names; our
        # mailbox for the answer is on our own relay (named in the request if they differ).
        try:
            relay = self._link.relays.key(inv.relay_url)
        except InvalidRelayUrl as exc:
            raise InvalidInvitation(str(exc)) from None
        if relay is not None and inv.relay_hash is not None:
            self._link.relays.expect_identity(relay, inv.relay_hash)
        name = book.name if name is None else name
        if len(name.encode()) > MAX_NAME_BYTES or len((intro or "").encode()) > MAX_INTRO_BYTES:
            raise LocalProtocolError("name or intro too long")
        home = None if relay is None else normalize_relay_url(book.relay_url)
        transport = self._link.transport_for(relay)
        bnd = await transport.boundaries(inv.sid)
        static, item = await transport.fetch_bundle(inv.sid)
        bundle = open_bundle(inv, static, item)
        if bundle.identity == book.identity.public:
            raise LocalProtocolError("this is our own invitation")
        now = self._now()
        # Check the published size boundary with a dry run (content sizes do not depend on
        # the ids inside), before creating anything at the relay.
        probe = ContactRequestContent(
            reply=bytes(16), cap=bytes(32), name=name or None, intro=intro or None, relay=home
        ).encode()
        await self.refresh_moderator_keys(relay)
        mod = self._link.relays.modkeys(relay).current()
        _, dry = initiate(book.identity, bundle, probe, rng=rng, now=now, moderator=mod)
        if len(dry.ct) > bnd.size:
            raise BoundaryViolation(
                f"the address accepts requests up to {bnd.size} bytes; shorten the intro"
            )
        owner = rng(32)
        cap = rng(32)
        rid, sid = await self.create_pairwise(owner, cap)
        content = ContactRequestContent(
            reply=sid, cap=cap, name=name or None, intro=intro or None, relay=home
        )
        session, sealed = initiate(
            book.identity, bundle, content.encode(), rng=rng, now=now, moderator=mod
        )
        cid = rng(16)
        async with book.lock:
            rec = ContactRecord(
                name=contact_name,
                state="pending",
                identity=bytes(bundle.identity),
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=owner,
                send=None,
                created=now,
                mycap=cap,
                relay=relay,
            )
            book.add_contact(cid, rec)
            hdl = book.handle(inv.sid)
            self._outbox.queue(
                OutboxRecord(
                    cid, rng(16), sealed.ct, sealed.fc, inv.sid, hdl=hdl, pw=bnd.pow, relay=relay
                )
            )
            self._tell_settings(cid)  # waits unsealed until the acceptance
            await book.save()
        await self._link.subscribe(rid)
        self._outbox.wake()
        return book.contact_view(cid)

    async def accept_request(self, ref: RequestRef, *, name: str | None = None) -> Contact:
        """Accept a request: create our pairwise mailbox and tell the requester about it."""
        book, rng = self._book, self._book.rng
        qid = book.resolve_request(ref)
        req = book.requests[qid]
        owner = rng(32)
        cap = rng(32)
        # Our mailbox goes on the relay of the address the request came to (§27.1 step 3).
        address = book.addresses.get(req.address)
        here = address.relay if address is not None else None
        rid, sid = await self.create_pairwise(owner, cap, relay=here)
        # The requester receives on its relay (protocol.md §27.1): franked for its moderators.
        await self.refresh_moderator_keys(req.relay)
        async with book.lock:
            if qid not in book.requests:
                raise LocalProtocolError("the request was already handled")
            session = Session.from_record(req.session, now=self._now())
            content = Accept(reply=sid, cap=cap, name=book.name or None).encode()
            sealed = session.encrypt(
                content,
                rng=rng,
                now=self._now(),
                identity=book.identity,
                moderator=self._link.relays.modkeys(req.relay).current(),
            )
            cid = rng(16)
            rec = ContactRecord(
                name=name if name is not None else (req.name or ""),
                state="accepted",
                identity=req.identity,
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=owner,
                send=req.reply,
                created=self._now(),
                mycap=cap,
                sendcap=req.cap,
                relay=req.relay,
                rr=here,
            )
            book.add_contact(cid, rec)
            book.drop_request(qid)
            self._outbox.queue(
                OutboxRecord(
                    cid, rng(16), sealed.ct, sealed.fc, req.reply, cap=req.cap, relay=req.relay
                )
            )
            self._tell_settings(cid)
            await book.save()
        await self._link.subscribe(rid)
        self._outbox.wake()
        contact = book.contact_view(cid)
        self._emit(ContactAdded(contact))
        return contact

    async def decline_request(self, ref: RequestRef) -> None:
        """See :meth:`Client.decline_request`."""
        book = self._book
        qid = book.resolve_request(ref)
        req = book.requests[qid]
        a = book.addresses.get(req.address)
        if req.hdl is not None and a is not None:
            # The ban is the decline (protocol.md §22.3 step 5): without it the same identity
            # could ask again. Not connected or unreachable: nothing changes, the caller
            # retries. AUTH (the address is gone at the relay): there is nothing to ban on.
            try:
                await self._link.own_transport(a.relay).ban(
                    credential(a.rid, a.owner), add=[req.hdl]
                )
            except RelayRejected as exc:
                if exc.code != "AUTH":
                    raise
                log.debug("ban skipped: the address is gone")
        async with book.lock:
            book.drop_request(qid)
            await book.save()

    async def remove_contact(self, ref: ContactRef) -> None:
        """Delete a contact: its mailbox at the relay, its session, its history."""
        book = self._book
        cid = book.resolve_contact(ref)
        c = book.contacts[cid]
        with contextlib.suppress(RelayRejected):
            await self._link.delete_mailbox(c.rid, c.owner)
        async with book.lock:
            book.drop_contact(cid)
            self.forget_prepared(cid)
            self._outbox.drop_contact(cid)
            self._history().forget(cid.hex())  # under the lock: it saves the keystore too
            await book.save()

    async def set_blocked(self, ref: ContactRef, blocked: bool) -> Contact:
        book = self._book
        cid = book.resolve_contact(ref)
        c = book.contacts[cid]
        h = [capability_hash(c.sid, c.mycap)]
        # The attachment capability goes with it (protocol.md §4.8): a blocked contact has
        # nothing registered; unblocking restores it if media is on for the contact.
        media = len(c.settings) < 3 or bool(c.settings[2])
        h_att = [attachment_capability_hash(c.sid, c.mycap)]
        cred = credential(c.rid, c.owner)
        t = self._link.own_transport(c.rr)
        if blocked:
            await t.set_caps(cred, remove=h + h_att)
        else:
            await t.set_caps(cred, add=h + (h_att if media else []))
        async with book.lock:
            c.blocked = blocked
            c.hatt = media and not blocked
            book.put_contact(cid)
            await book.save()
        return book.contact_view(cid)

    async def set_privacy(
        self,
        ref: ContactRef,
        *,
        receipts: bool | None = None,
        typing: bool | None = None,
        media: bool | None = None,
        delivery_receipts: bool | None = None,
    ) -> Contact:
        """Change our privacy settings for one conversation and tell the contact."""
        book = self._book
        cid = book.resolve_contact(ref)
        await self.refresh_moderator_keys(self.relay_of(cid))
        if media is not None:
            # The relay enforces it (protocol.md §4.8, revision 8): first the attachment
            # capability hash, then the setting; unreachable: nothing changes.
            await self.set_media_capability(cid, media and not book.contacts[cid].blocked)
        async with book.lock:
            c = book.contacts[cid]
            if delivery_receipts is not None and len(c.settings) < 4:
                c.settings.append(1)
            for i, v in enumerate((receipts, typing, media, delivery_receipts)):
                if v is not None:
                    c.settings[i] = int(v)
            content = ConversationSettings(*c.settings).encode()
            self.seal_and_queue(cid, content)
            await book.save()
        self._outbox.wake()
        return book.contact_view(cid)

    async def set_media_capability(self, cid: bytes, on: bool) -> None:
        """Register (``on``) or remove the contact's attachment capability hash ``h_att``
        on our mailbox for it (protocol.md §4.8, revision 8), and record that we did.

        Raises:
            TransportError: the relay could not be reached (nothing changed).
        """
        book = self._book
        c = book.contacts[cid]
        if not c.mycap:
            return
        h = [attachment_capability_hash(c.sid, c.mycap)]
        cred = credential(c.rid, c.owner)
        if on:
            await self._link.own_transport(c.rr).set_caps(cred, add=h)
        else:
            await self._link.own_transport(c.rr).set_caps(cred, remove=h)
        async with book.lock:
            now_c = book.contacts.get(cid)
            if now_c is not None:
                now_c.hatt = on
                book.put_contact(cid)
                await book.save()

    async def set_boundaries(self, boundaries: Boundaries) -> None:
        """Publish new boundaries on every contact address (and use them for new ones)."""
        book = self._book
        async with book.lock:
            book.set_boundaries(boundaries)
            await book.save()
        for aid, a in list(book.addresses.items()):
            await self._link.own_transport(a.relay).set_boundaries(
                credential(a.rid, a.owner), boundaries
            )
            async with book.lock:
                a.bnd = bnd_list(boundaries)
                book.put_address(aid)
                await book.save()

    async def send(self, ref: ContactRef, text: str) -> StoredMessage:
        """Send a text message."""
        book = self._book
        cid = book.resolve_contact(ref)
        data = text.encode("utf-8")
        if len(data) > MAX_TEXT_BYTES or "\x00" in text:
            raise LocalProtocolError(f"a message is at most {MAX_TEXT_BYTES} bytes of UTF-8")
        await self.refresh_moderator_keys(self.relay_of(cid))
        async with book.lock:
            c = book.contacts.get(cid)
            if c is None:
                raise LocalProtocolError("the contact was removed")
            if c.blocked:
                raise LocalProtocolError("the contact is blocked; unblock it first")
            now = self._now()
            mid = book.rng(MESSAGE_ID_SIZE)
            extra, stored = self.decorate(cid, now) if self.decorate else ({}, {})
            content = TextMessage(id=mid, ts=now, text=text, **extra).encode()
            msg = StoredMessage(cid.hex(), mid.hex(), "out", text, now, now, "queued", **stored)
            self.seal_and_queue(cid, content, now=now, history=msg)
            if self.devices is not None:
                self.devices.copy_sent(self.seal_and_queue, cid, mid, now, text)
            await book.save()
        self._outbox.wake()
        return msg

    def relay_of(self, cid: bytes) -> str | None:
        """The relay a contact receives on (``None``: ours, or no such contact)."""
        c = self._book.contacts.get(cid)
        return None if c is None else c.relay

    async def refresh_moderator_keys(self, relay: str | None = None) -> None:
        """Fetch the moderator keys of a relay (``None``: ours) if the cache is stale
        (offline: keep it, or the list last stored in the keystore). A message is franked
        for the moderators of the relay it is delivered on (protocol.md §15.5.3, §27.1)."""
        ks = self._book.ks
        cache = self._link.relays.modkeys(relay)
        slot = modkeys_slot(relay)
        cache.restore(ks.get("modkeys", slot))
        try:
            transport = self._link.transport_for(relay)
        except TransportError:
            return
        await cache.ensure(transport, self._now())
        raw = cache.encode()
        if raw and ks.get("modkeys", slot) != raw:
            ks.put("modkeys", slot, raw)  # saved with the book's next save

    def _tell_settings(self, cid: bytes) -> None:
        """Queue our privacy settings for a new contact (protocol.md §22.6: each side sends
        its ``set`` once the conversation exists, defaults included, so neither shows the
        other's as unknown). Call with the lock held."""
        self.seal_and_queue(cid, ConversationSettings(*self._book.contacts[cid].settings).encode())

    def seal_and_queue(
        self,
        cid: bytes,
        content: bytes,
        *,
        now: int | None = None,
        history: StoredMessage | None = None,
        attachment_hashes: Sequence[bytes] = (),
        att: Sequence[bytes] = (),
    ) -> None:
        """Encrypt ``content`` for an accepted contact and queue it (call with the lock
        held); ``history``: the outgoing message to store first; ``attachment_hashes``:
        under the franking commitment (§15.1); ``att``: the blob ids the deposit references.

        For a pending contact (request not answered yet) the content is queued unsealed,
        in the encrypted keystore, and sealed when the acceptance arrives: sealed now it
        would be a prekey message (2,048 bytes or more) that links the contact's new
        mailbox to the request by size class (protocol.md §22.2 step 4, §22.4).
        """
        book = self._book
        c = book.contacts[cid]
        t = self._now() if now is None else now
        mid = None
        if history is not None:
            self._history().add([history])
            mid = bytes.fromhex(history.id)
        rm = mid  # every envelope of the message can be recalled by an unsend (§22.13)
        if self.devices is not None:  # the contact's further devices (§24.6)
            self.devices.fan_out(
                cid,
                content,
                now=t,
                mid=mid,
                rm=rm,
                attachment_hashes=attachment_hashes,
                att=att,
            )
            if c.devs:
                mid = None  # delivery state follows the first envelope queued
        if c.off:  # the main device was removed from the contact's list (§24.7)
            return
        if c.send is None or not c.session:  # not accepted yet, or a renewal (§24.4)
            if c.me and c.send is None:
                return  # our own devices: the first device has no main session
            self._outbox.queue(
                OutboxRecord(cid, book.rng(16), b"", bytes(32), None, mid, pt=content, rm=rm)
            )
            return
        session = Session.from_record(c.session, now=self._now())
        sealed = session.encrypt(
            content,
            rng=book.rng,
            now=t,
            identity=book.identity,
            moderator=self._link.relays.modkeys(c.relay).current(),
            prepared=self._prepared.pop(cid, None),
            attachment_hashes=attachment_hashes,
        )
        self.warm(cid)  # the next message's signature, while this one is being saved
        c.session = session.to_record().to_bytes()
        book.put_contact(cid)
        eid = book.rng(16)
        self._outbox.queue(
            OutboxRecord(
                cid,
                eid,
                sealed.ct,
                sealed.fc,
                c.send,
                mid,
                c.sendcap,
                relay=c.relay,
                rm=rm,
                att=list(att) or None,
            )
        )

    def warm(self, cid: bytes) -> None:
        """Prepare the next AMF signature for an accepted contact in a worker thread, off
        the send path (protocol.md §15.5.5 "Precomputation": a send then only finishes it,
        about 24 µs instead of about 0.9 ms). Does nothing if one is ready or on its way,
        for a pending or unknown contact, or before the relay's keys are known."""
        c = self._book.contacts.get(cid)
        if (
            self._spawn is None
            or c is None
            or c.send is None
            or not c.session
            or self._book.closing
        ):
            return
        if cid in self._warming or cid in self._prepared:
            return
        try:
            mod = self._link.relays.modkeys(c.relay).current()
        except TransportError:
            return
        identity, rng, peer = self._book.identity, self._book.rng, c.identity
        self._warming.add(cid)

        async def run() -> None:
            try:
                ready = await asyncio.to_thread(
                    prepare, identity, identity.public, peer, mod.public, mod.kid, rng=rng
                )
                if cid in self._book.contacts:
                    self._prepared[cid] = ready
            finally:
                self._warming.discard(cid)

        self._spawn(run())

    def forget_prepared(self, cid: bytes) -> None:
        """Drop a contact's prepared signature (the contact went)."""
        self._prepared.pop(cid, None)

    async def _create_mailbox(
        self,
        owner: bytes,
        *,
        kind: str,
        boundaries: Boundaries | None = None,
        relay: str | None = None,
    ) -> tuple[bytes, bytes]:
        sk = ed25519_expand_seed(owner)
        return await self._link.own_transport(relay).create_mailbox(
            ed25519_public_from_seed(owner),
            lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd),
            kind=kind,
            boundaries=boundaries,
        )

    async def create_pairwise(
        self, owner: bytes, cap: bytes, *, relay: str | None = None
    ) -> tuple[bytes, bytes]:
        """A pairwise mailbox that accepts deposits carrying ``cap`` only (protocol.md §4.8),
        on one of our receive relays (None: home)."""
        rid, sid = await self._create_mailbox(owner, kind="pair", relay=relay)
        # Media is on for a new contact (the default settings): the attachment capability
        # hash goes in with the capability (protocol.md §4.8, revision 8).
        await self._link.own_transport(relay).set_caps(
            credential(rid, owner),
            add=[capability_hash(sid, cap), attachment_capability_hash(sid, cap)],
        )
        return rid, sid
