"""Recovery: backups of the client state and the renewal of sessions after a restore
(protocol.md §24.3-§24.4).

A restored client holds every contact and both pairwise mailboxes but no session. For each
contact it queues a *session offer* (:mod:`clientlib.session.offer`): a bundle of a fresh
signed X25519 prekey and ML-KEM last-resort key, under our identity key. The contact's
client checks that the offer comes from the identity it knows, starts a new session on the
bundle and answers with an ordinary prekey message, which we accept with the offered
prekeys. Both sides then show :class:`~clientlib.client.types.SessionRenewed` (safety
number unchanged). What we write before the answer waits in the outbox unsealed (in the
encrypted keystore) and is sealed when the session exists, as for a pending contact request.

The inbox calls :meth:`Renewal.on_offer` when an envelope does not open with the contact's
session, and :meth:`Renewal.on_answer` for every envelope of a contact that has no session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from clientlib.client._book import AddressBook
from clientlib.client._group_records import GroupRecord
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import Outbox
from clientlib.client._prekeys import Prekeys
from clientlib.client.backup import BackupContact, BackupContents, BackupGroup
from clientlib.client.content import (
    Content,
    ConversationSettings,
    DeviceListContent,
    EditMessage,
    OwnAction,
    Reaction,
    Receipt,
    SentCopy,
    Unsend,
    decode_content,
)
from clientlib.client.devicelist import (
    DeviceList,
    InvalidDeviceList,
    decode_device_part,
    encode_device_part,
    first_device,
)
from clientlib.client.state import ContactRecord, OutboxRecord
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    Device,
    DeviceLinked,
    DeviceRemoved,
    DevicesChanged,
    SessionRenewed,
    StoredMessage,
)
from clientlib.crypto.keys import IdentityPublicKey
from clientlib.crypto.prekeys import PreKeyKind
from clientlib.crypto.primitives import (
    ct_eq,
)
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    SessionError,
    TransportError,
    WireError,
)
from clientlib.keystore import Keystore
from clientlib.session import Session, accept, initiate, open_envelope
from clientlib.session.events import MessageReceived as SessionMessage
from clientlib.session.handshake import PreKeyBundle
from clientlib.session.offer import SessionOffer, open_offer, seal_offer
from clientlib.session.session import ModeratorKey
from clientlib.wire.frames import Boundaries, StoredEnvelope

if TYPE_CHECKING:
    pass

__all__ = ["Answered", "Renewal", "backup_contents", "backup_groups", "restore_into"]


def backup_groups(book: AddressBook) -> list[BackupGroup]:
    """The active groups of ``book``'s keystore as a backup keeps them (protocol.md §24.3):
    not our sender chain (a restored one would reuse its keys), not the messages, not a
    group we are still joining (it has no epoch secret yet) or have left."""
    out = []
    for gid, raw in sorted(book.ks.items("groups")):
        g = GroupRecord.from_bytes(raw)
        if g.status != "active" or g.es is None or not g.log:
            continue
        out.append(
            BackupGroup(
                gid=gid,
                name=g.name,
                seed=g.seed,
                dh=g.dh,
                rid=g.rid,
                sid=g.sid,
                owner=g.owner,
                log=list(g.log),
                es=g.es,
                ese=g.es_epoch,
                ngen=(g.chain[1] + 1) if g.chain else max(g.resume, 0),
                peers={
                    k: [*v[:4], sorted([i, m] for i, m in dict(v[4]).items())]
                    for k, v in sorted(g.peers.items())
                },
                typ=g.typing,
            )
        )
    return out


def backup_contents(book: AddressBook, *, now: int, groups: bool = True) -> BackupContents:
    """What a backup of ``book`` holds (accepted contacts only: a pending request needs the
    session that a backup does not keep; ``groups``: the active groups too, body version
    2 -- a linked device's transfer carries none, protocol.md §24.6)."""
    contacts = [
        BackupContact(
            cid=cid,
            name=c.name,
            identity=c.identity,
            rid=c.rid,
            sid=c.sid,
            owner=c.owner,
            mycap=c.mycap,
            send=c.send,
            sendcap=c.sendcap,
            verified=c.verified,
            blocked=c.blocked,
            created=c.created,
            settings=list(c.settings),
            peer=list(c.peer) if c.peer is not None else None,
            dis=c.dis,
            disv=c.disv,
        )
        for cid, c in sorted(book.contacts.items())
        if c.state == "accepted" and c.send is not None and not c.me
    ]
    b = book.boundaries
    return BackupContents(
        seed=book.identity.private_bytes(),
        relay=book.relay_url,
        name=book.name,
        created=now,
        boundaries=[b.size, b.att, b.day, b.pow],
        contacts=contacts,
        groups=backup_groups(book) if groups else [],
    )


def restore_into(ks: Keystore, contents: BackupContents) -> None:
    """Write a backup's contacts and settings into a keystore just created with its identity
    seed (before the book loads it). Every contact starts without a session."""
    if contents.boundaries is not None:
        s, a, d, p = contents.boundaries[:4]
        ks.put("meta", b"boundaries", Boundaries(size=s, att=a, day=d, pow=p).encode())
    for x in contents.contacts:
        rec = ContactRecord(
            name=x.name,
            state="accepted",
            identity=x.identity,
            session=b"",
            rid=x.rid,
            sid=x.sid,
            owner=x.owner,
            send=x.send,
            verified=x.verified,
            created=x.created,
            mycap=x.mycap,
            sendcap=x.sendcap,
            blocked=x.blocked,
            settings=list(x.settings),
            peer=list(x.peer) if x.peer is not None else None,
            dis=x.dis,
            disv=x.disv,
        )
        ks.put("contacts", x.cid, rec.to_bytes())
    for g in contents.groups:
        grec = GroupRecord(
            gid=g.gid,
            seed=g.seed,
            dh=g.dh,
            rid=g.rid,
            sid=g.sid,
            owner=g.owner,
            name=g.name,
            status="active",
            log=list(g.log),
            es=g.es,
            es_epoch=g.ese,
            peers={k: [*v[:4], {i: m for i, m in v[4]}] for k, v in g.peers.items()},
            typing=g.typ,
            resume=g.ngen,
        )
        ks.put("groups", g.gid, grec.to_bytes())


class Answered(NamedTuple):
    """A contact answered our offer: the new session and the first message's content."""

    session: Session
    message: SessionMessage


class Renewal:
    """Session offers out and their answers in, device lists, fan-out to every device of a
    contact and copies of sent messages for our own devices (call with the lock held)."""

    def __init__(
        self,
        book: AddressBook,
        prekeys: Prekeys,
        outbox: Outbox,
        modkeys: ModeratorKeyCache,
        *,
        emit: Callable[[ClientEvent], None],
    ) -> None:
        self._book = book
        self._prekeys = prekeys
        self._outbox = outbox
        self._modkeys = modkeys
        #: The moderator keys of the relay a contact receives on (``None``: ours); the
        #: client sets its relay pool's (protocol.md §27.1: franked for the recipient's relay).
        self.modkeys_for: Callable[[str | None], ModeratorKeyCache] = lambda r: modkeys
        self._emit = emit
        #: Set for a device that joined by linking: its offers carry the device part.
        self.linked = False
        #: Set when an incoming envelope made us queue something (an answer to an offer):
        #: the receive loop wakes the outbox and clears it.
        self.queued = False

    # --- our own device identity -------------------------------------------------------------

    def ensure_device(self) -> None:
        """Give this keystore a device id and a one-device list if it has none (a keystore
        from before revision 10, or a new one)."""
        ks, book = self._book.ks, self._book
        if ks.get("meta", b"device") is None:
            did, raw = first_device(book.identity, book.rng)
            ks.put("meta", b"device", did)
            ks.put("meta", b"devlist", raw)

    @property
    def did(self) -> bytes:
        raw = self._book.ks.get("meta", b"device")
        if raw is None:
            raise LocalProtocolError("the client is not started")
        return raw

    def my_list(self) -> DeviceList:
        raw = self._book.ks.get("meta", b"devlist")
        if raw is None:
            raise LocalProtocolError("the client is not started")
        return DeviceList.parse(raw, self._book.identity.public)

    def devices(self) -> list[Device]:
        me = self.did
        return [Device(d.hex(), n, d == me) for d, n in self.my_list().devices]

    def self_contact(self) -> tuple[bytes, ContactRecord] | None:
        for cid, c in self._book.contacts.items():
            if c.me:
                return cid, c
        return None

    # --- offers ------------------------------------------------------------------------------

    def offer_all(self, now: int) -> int:
        """Queue an offer to every contact without a session; returns how many."""
        n = 0
        for cid, c in self._book.contacts.items():
            if not c.session and c.send is not None and c.ofr is None:
                self.offer(cid, now)
                n += 1
        return n

    def offer(self, cid: bytes, now: int) -> None:
        """Queue one offer (fresh prekeys, their ids remembered in the contact record)."""
        book = self._book
        c = book.contacts[cid]
        spk = self._prekeys.new(PreKeyKind.X25519_SIGNED)
        lr = self._prekeys.new(PreKeyKind.MLKEM_LAST_RESORT)
        bundle = PreKeyBundle.build(book.identity.public, spk.public_record, lr.public_record)
        ts = max(now, c.rst + 1)
        ext = b""
        if self.linked:
            ext = encode_device_part(self.did, c.sid, c.mycap, self.my_list().raw)
        ct = seal_offer(
            book.identity,
            IdentityPublicKey.from_bytes(c.identity),
            bundle,
            ts=ts,
            rng=book.rng,
            ext=ext,
        )
        c.ofr = [spk.key_id, lr.key_id]
        c.rst = ts
        book.put_contact(cid)
        assert c.send is not None
        # Not franked (no fc): an offer carries no content a user could report.
        self._outbox.queue(
            OutboxRecord(cid, book.rng(16), ct, bytes(32), c.send, cap=c.sendcap, relay=c.relay)
        )

    def on_offer(
        self, cid: bytes, env: StoredEnvelope, now: int, events: list[ClientEvent]
    ) -> bool:
        """A contact's envelope that no session of it opens: is it an offer? A restore offer
        (newer than the last one) replaces the main session; a device offer adds a session
        with that device. Either queues our prekey-message answer. Returns False if it is no
        offer from this contact."""
        book = self._book
        c = book.contacts[cid]
        ik = IdentityPublicKey.from_bytes(c.identity)
        try:
            offer = open_offer(book.identity, env.ct, expected=ik)
        except (DecryptionError, KeyValidationError):
            return False
        try:
            mod = self.modkeys_for(c.relay).current()
        except TransportError:
            return False
        if offer.ext:
            return self._on_device_offer(cid, c, offer, ik, mod, now, events)
        if offer.ts <= c.rst:
            events.append(ClientWarning("duplicate_request", "a replayed session offer", cid.hex()))
            return True
        content = ConversationSettings(*c.settings).encode()
        session, sealed = initiate(
            book.identity, offer.bundle, content, rng=book.rng, now=now, moderator=mod
        )
        c.session = session.to_record().to_bytes()
        c.rst = offer.ts
        c.ofr = None
        book.put_contact(cid)
        if c.send is not None:
            self._outbox.queue(
                OutboxRecord(
                    cid, book.rng(16), sealed.ct, sealed.fc, c.send, cap=c.sendcap, relay=c.relay
                )
            )
            self.queued = True
        events.append(SessionRenewed(book.contact_view(cid)))
        return True

    def _on_device_offer(
        self,
        cid: bytes,
        c: ContactRecord,
        offer: SessionOffer,
        ik: IdentityPublicKey,
        mod: ModeratorKey,
        now: int,
        events: list[ClientEvent],
    ) -> bool:
        book = self._book
        try:
            did, sid, cap, dl = decode_device_part(offer.ext, ik)
        except InvalidDeviceList:
            events.append(
                ClientWarning("undecryptable", "a device offer did not verify", cid.hex())
            )
            return True
        if c.me and did == self.did:
            return True
        old = next((d for d in c.devs if d[0] == did), None)
        if old is not None and offer.ts <= old[4]:
            events.append(ClientWarning("duplicate_request", "a replayed device offer", cid.hex()))
            return True
        if not self._adopt_list(cid, c, dl, None, events):
            return True  # an older list: the device may have been removed since
        content = ConversationSettings(*c.settings).encode()
        session, sealed = initiate(
            book.identity, offer.bundle, content, rng=book.rng, now=now, moderator=mod
        )
        c.devs = [d for d in c.devs if d[0] != did]
        c.devs.append([did, sid, cap, session.to_record().to_bytes(), offer.ts])
        book.put_contact(cid)
        self._outbox.queue(
            OutboxRecord(cid, book.rng(16), sealed.ct, sealed.fc, sid, cap=cap, relay=c.relay)
        )
        self.queued = True
        return True

    def on_answer(
        self, cid: bytes, env: StoredEnvelope, now: int, events: list[ClientEvent]
    ) -> Answered | None:
        """An envelope of a contact we hold no session with: the prekey message that answers
        our offer, or None (undecryptable: dropped by the caller)."""
        book = self._book
        c = book.contacts[cid]
        if c.ofr is None:
            return None
        try:
            moderator = self.modkeys_for(c.relay).current()
        except TransportError:  # never before the receive loop fetched the keys
            return None
        try:
            opened = open_envelope(book.identity, env.ct)
            header = opened.prekey_header
            if header is None or not ct_eq(bytes(opened.sender), c.identity):
                return None
            if header.signed_prekey_id != c.ofr[0] or header.kem_prekey_id != c.ofr[1]:
                return None
            if header.kem_kind is not PreKeyKind.MLKEM_LAST_RESORT:
                return None
            if header.one_time_prekey_id is not None:
                return None
            spk = self._prekeys.load(PreKeyKind.X25519_SIGNED, c.ofr[0])
            kem = self._prekeys.load(PreKeyKind.MLKEM_LAST_RESORT, c.ofr[1])
            if spk is None or kem is None:
                return None
            accepted = accept(
                book.identity,
                opened,
                env.fc,
                signed_prekey=spk,
                kem_prekey=kem,
                one_time_prekey=None,
                now=now,
                relay_tag=env.ft,
                moderator_keys=self._modkeys.lookup,
            )
        except (DecryptionError, LocalProtocolError, KeyValidationError, SessionError):
            return None
        self._prekeys.delete(PreKeyKind.X25519_SIGNED, c.ofr[0])
        self._prekeys.delete(PreKeyKind.MLKEM_LAST_RESORT, c.ofr[1])
        c.ofr = None
        session = accepted.session

        def seal(pending: bytes) -> tuple[bytes, bytes]:
            sealed = session.encrypt(
                pending, rng=book.rng, now=now, identity=book.identity, moderator=moderator
            )
            return sealed.ct, sealed.fc

        assert c.send is not None
        self._outbox.set_destination(cid, c.send, c.sendcap, seal, relay=c.relay)
        self.queued = True
        c.session = session.to_record().to_bytes()
        book.put_contact(cid)
        if c.me:
            pass  # our own devices: the link already said so (DeviceLinked)
        elif not self.linked:
            events.append(SessionRenewed(book.contact_view(cid)))
        return Answered(session, accepted.message)

    # --- receiving from further devices of a contact ------------------------------------------

    def receive_other(self, cid: bytes, env: StoredEnvelope, now: int) -> Answered | None:
        """Open an envelope with the sessions of the contact's further devices (the main
        session failed). The session that opened it is saved into the record."""
        book = self._book
        c = book.contacts[cid]
        for d in c.devs:
            session = Session.from_record(d[3], now=now)
            try:
                got = session.receive(
                    env.ct,
                    env.fc,
                    identity=book.identity,
                    now=now,
                    relay_tag=env.ft,
                    moderator_keys=self._modkeys.lookup,
                )
            except DecryptionError:
                continue
            d[3] = session.to_record().to_bytes()
            book.put_contact(cid)
            return Answered(session, got)
        return None

    # --- fan-out -----------------------------------------------------------------------------

    def fan_out(
        self,
        cid: bytes,
        content: bytes,
        *,
        now: int,
        mid: bytes | None = None,
        rm: bytes | None = None,
        attachment_hashes: Sequence[bytes] = (),
        att: Sequence[bytes] = (),
    ) -> None:
        """Seal ``content`` for every further device of a contact and queue it (``mid``: the
        message id whose delivery state the first envelope carries; ``rm``: the message id
        every envelope carries for a recall, protocol.md §22.13; ``attachment_hashes`` and
        ``att``: a file's, as for the main session)."""
        book = self._book
        c = book.contacts[cid]
        if not c.devs:
            return
        mod = self.modkeys_for(c.relay).current()
        for d in c.devs:
            session = Session.from_record(d[3], now=now)
            sealed = session.encrypt(
                content,
                rng=book.rng,
                now=now,
                identity=book.identity,
                moderator=mod,
                attachment_hashes=attachment_hashes,
            )
            d[3] = session.to_record().to_bytes()
            self._outbox.queue(
                OutboxRecord(
                    cid,
                    book.rng(16),
                    sealed.ct,
                    sealed.fc,
                    d[1],
                    mid,
                    cap=d[2],
                    relay=c.relay,
                    rm=rm,
                    att=list(att) or None,
                )
            )
            mid = None
        book.put_contact(cid)

    def copy_sent(
        self, seal: Callable[[bytes, bytes], None], to: bytes, mid: bytes, ts: int, text: str
    ) -> None:
        """Queue a copy of a text we sent for our own other devices (``seal(cid, content)``
        is the contact operations' sealer)."""
        mine = self.self_contact()
        if mine is None:
            return
        seal(mine[0], SentCopy(to=to, id=mid, ts=ts, text=text).encode())

    def on_sent_copy(
        self, c: ContactRecord, content: SentCopy, now: int, events: list[ClientEvent]
    ) -> StoredMessage | None:
        """A copy of a message sent from another device of ours: the history entry."""
        if not c.me or content.to not in self._book.contacts or self._book.contacts[content.to].me:
            events.append(
                ClientWarning("malformed_content", "a sent copy not from our own devices")
            )
            return None
        return StoredMessage(
            content.to.hex(), content.id.hex(), "out", content.text, content.ts, now, "sent"
        )

    def copy_action(
        self, seal: Callable[[bytes, bytes], None], to: bytes, content: Content
    ) -> None:
        """Queue, for our own other devices, an unsend, edit, reaction or read receipt
        (``rcp`` with ``rd``) we made in the conversation with ``to`` (protocol.md §24.7)."""
        mine = self.self_contact()
        if mine is None:
            return
        seal(mine[0], OwnAction(to=to, c=content.encode()).encode())

    def on_own_action(
        self, c: ContactRecord, content: OwnAction, events: list[ClientEvent]
    ) -> Unsend | EditMessage | Reaction | Receipt | None:
        """An action made on another device of ours: the inner content to apply as ours,
        or ``None`` (a warning) if it is not from our own devices or not one of the four."""
        book = self._book
        inner: Content | None
        try:
            inner = decode_content(content.c)
        except WireError:
            inner = None
        ok = (
            c.me
            and content.to in book.contacts
            and not book.contacts[content.to].me
            and (
                isinstance(inner, Unsend | EditMessage | Reaction)
                or (isinstance(inner, Receipt) and inner.rd and not inner.dlv)
            )
        )
        if not ok:
            events.append(
                ClientWarning("malformed_content", "an own-device action not from our devices")
            )
            return None
        assert isinstance(inner, Unsend | EditMessage | Reaction | Receipt)
        return inner

    # --- device lists ------------------------------------------------------------------------

    def on_device_list(
        self, cid: bytes, content: DeviceListContent, main: bool, events: list[ClientEvent]
    ) -> None:
        book = self._book
        c = book.contacts[cid]
        try:
            dl = DeviceList.parse(content.l, IdentityPublicKey.from_bytes(c.identity))
        except InvalidDeviceList:
            events.append(
                ClientWarning("malformed_content", "a device list did not verify", cid.hex())
            )
            return
        if content.me not in dl.ids:
            events.append(
                ClientWarning("malformed_content", "a device list without its sender", cid.hex())
            )
            return
        self._adopt_list(cid, c, dl, content.me if main else None, events)
        book.put_contact(cid)

    def _adopt_list(
        self,
        cid: bytes,
        c: ContactRecord,
        dl: DeviceList,
        main_did: bytes | None,
        events: list[ClientEvent],
    ) -> bool:
        """Take a verified list (of the contact, or ours for our own devices): False if it
        is older than the one we hold."""
        book = self._book
        ik = IdentityPublicKey.from_bytes(c.identity)
        current = DeviceList.parse(c.dl, ik) if c.dl is not None else None
        if c.me:
            current = self.my_list()
        if current is not None and dl.version < current.version:
            return False
        if main_did is not None and c.mdid is None:
            c.mdid = main_did
        if current is not None and dl.version == current.version:
            if dl.raw != current.raw:
                events.append(
                    ClientWarning("malformed_content", "two device lists of one version", cid.hex())
                )
                return False
            return True
        c.dl = dl.raw
        ids = set(dl.ids)
        gone = [d[0] for d in c.devs if d[0] not in ids]
        c.devs = [d for d in c.devs if d[0] in ids]
        if c.mdid is not None and c.mdid not in ids:
            c.off = True
            gone.append(c.mdid)
        if c.me:
            mine = self.did
            old_ids = set(current.ids) if current is not None else set()
            book.ks.put("meta", b"devlist", dl.raw)
            for d, n in dl.devices:
                if d not in old_ids:
                    events.append(DeviceLinked(Device(d.hex(), n, d == mine)))
            if current is not None:
                for d, n in current.devices:
                    if d not in ids:
                        events.append(DeviceRemoved(Device(d.hex(), n, d == mine)))
            return True
        if current is not None or len(dl.ids) > 1:
            c.verified = False
            book.put_contact(cid)
            events.append(DevicesChanged(book.contact_view(cid), len(dl.ids)))
        return True

    def list_content(self) -> bytes:
        return DeviceListContent(l=self.my_list().raw, me=self.did).encode()
